"""Backends: one module each behind one small interface, `Backend` below; numpy_backend.py is its spec.

Shapes: B batch, D=784 pixels, H hidden units (H1 or H2), C=10 classes. Every op writes into
`out=` buffers the caller allocated once, so a training step allocates nothing.
"""
import contextlib
import importlib.util
from typing import Protocol, runtime_checkable


class BackendUnavailable(Exception):
    """The asked-for backend cannot run here; the message says what is missing and how to get it."""


INSTALL_HINT = ("install the GPU extras: in the mnist_gpu checkout, pip install '.[cuda13]' (CUDA 13 driver) "
                "or '.[cuda12]'")  # how to get the cuda backend's packages


@contextlib.contextmanager
def loading(what):
    """Whatever goes wrong while the cuda backend loads `what` becomes one BackendUnavailable line naming it.

    Libraries raise their own types while they load, not only ImportError: numba-cuda's
    CudaSupportError without a driver, nvmath-python's NotSupportedError from cublas.create(),
    CuPy's CUDARuntimeError, cuda-pathfinder's DynamicLibNotFoundError, a RuntimeError for a
    version that does not fit. `mnist-gpu check` prints the line as "cuda: not usable: ...",
    training as "mnist-gpu: error: ...".
    """
    try:
        yield
    except BackendUnavailable:
        raise
    except ModuleNotFoundError as error:  # not other ImportErrors: numba-cuda's CudaSupportError is one
        raise BackendUnavailable(f"--backend cuda needs {what}, which is not installed ({error}); "
                                 f"{INSTALL_HINT}") from error
    except Exception as error:  # see above: any library's error, reported in one line
        raise BackendUnavailable(f"--backend cuda could not load {what}: {type(error).__name__}: "
                                 f"{_one_line(error)}") from error


def _one_line(error):
    """An error's message on one line (numba-cuda's driver errors, for one, span several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


class CudaGraphError(RuntimeError):
    """--cuda_graph on, and the training step cannot run as a CUDA graph (or it disagrees with the eager step)."""


BACKEND_NAMES = ("auto", "numpy", "cpu", "cuda")
CUDA_GRAPH_MODES = ("auto", "on", "off")  # --cuda_graph: see backends/cuda_program.py


@runtime_checkable
class Backend(Protocol):
    """What the model needs from a backend: arrays it owns, and one method per kernel.

    Arrays are the backend's own (NumPy on the host, CuPy on a GPU); `to_host` copies one back.
    Scalars that ops return (the loss, a count) may still be on the device: `float()` / `int()`
    of them waits for the work that produces them, and only that is a host synchronisation.
    """

    name: str

    def asarray(self, array, dtype=None):
        """`array` as the backend's contiguous array (a copy, unless it is one already): floats become
        float32, integers keep their type."""

    def to_host(self, array):
        """A NumPy copy of a backend array, after everything queued that writes it has finished."""

    def empty(self, shape, dtype=None):
        """An uninitialised float32 (or `dtype`) array."""

    def zeros(self, shape, dtype=None):
        """A zeroed float32 (or `dtype`) array."""

    def synchronize(self):
        """Wait until everything queued so far has finished."""

    def free_memory(self):
        """Bytes this backend's arrays can still take (host RAM, or the GPU's free memory)."""

    def gather_rows(self, table, indices, out):
        """out[b] = table[indices[b]]; `indices` [B] are host integers."""

    def gather_images(self, pixels, indices, out):
        """out[b] = pixels[indices[b]] * PIXEL_SCALE: uint8 [N, D] rows to float32 [B, D] in one pass."""

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out = op(a) @ op(b), op transposing when asked (a view, never a copy)."""

    def matmul_sgd(self, a, b, parameter, learning_rate, trans_a=False, trans_b=False):
        """parameter -= learning_rate * op(a) @ op(b): a weight gradient and its SGD step, never stored."""

    def bias_relu(self, x, bias, out):
        """out[B, H] = max(x + bias, 0); out may be x."""

    def bias_add(self, x, bias, out):
        """out[B, C] = x + bias; out may be x."""

    def bias_grad(self, grad, out):
        """out[H] = the column sums of grad[B, H]."""

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        """out = grad where activation > 0 else 0 (out may be grad), and bias_grad[H] = its column sums."""

    def softmax_xent(self, logits, labels, grad_out):
        """Mean softmax cross-entropy of logits [B, C] against integer labels [B] (a backend scalar).

        Writes d(mean loss)/d(logits) = (softmax - onehot) / B into grad_out. A label outside
        0..C-1 makes the loss NaN, never an out-of-bounds access.
        """

    def sgd_update(self, parameter, grad, learning_rate):
        """parameter -= learning_rate * grad, in place."""

    def in_top_k(self, logits, labels, k=1):
        """How many rows have their integer label among the top k (TF's rules; a backend scalar)."""


def check_labels(labels):
    """Labels index the classes: refuse a float (or other non-integer) array in one line."""
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array (int32), got {labels.dtype}")


GPU_PACKAGES = (("numba_cuda", "numba-cuda"), ("nvmath", "nvmath-python"))  # besides CuPy: module, package


def why_no_cuda_device():
    """None when CuPy sees a usable CUDA device (the simulator does not count), else why not."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        return None if cupy.is_available() else "CuPy sees no CUDA device"
    except Exception as error:  # noqa: BLE001 - a broken driver means no usable GPU
        return f"CUDA failed: {error}"


def why_no_gpu():
    """None when the cuda backend can run here, else why not.

    That is: a usable CUDA device, and the cuda backend's other packages installed (looked up, not
    imported: `auto` must not pay their import to choose cpu).
    """
    reason = why_no_cuda_device()
    if reason is not None:
        return reason
    missing = [package for module, package in GPU_PACKAGES if importlib.util.find_spec(module) is None]
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"
    return None


def gpu_available():
    return why_no_gpu() is None


def resolve_backend_name(name):
    """(backend name, why) for a --backend value: "auto" becomes cuda or cpu, saying why."""
    if name != "auto":
        return name, "asked for"
    reason = why_no_gpu()
    return ("cpu", f"auto: no usable GPU, {reason}") if reason else ("cuda", "auto: a usable GPU")


def get_backend(name="auto"):
    """The backend called `name`.

    "numpy": the readable reference; "cpu": the same with fused Numba CPU kernels (fastest on a
    CPU); "cuda": our CUDA kernels and cuBLAS; "auto": cuda when a GPU is usable, else cpu.
    """
    name, _ = resolve_backend_name(name)
    if name == "numpy":
        from .numpy_backend import NumpyBackend

        return NumpyBackend()
    if name == "cpu":
        from .cpu_backend import CpuBackend

        return CpuBackend()
    if name == "cuda":
        from .cuda_backend import CudaBackend

        return CudaBackend()
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")
