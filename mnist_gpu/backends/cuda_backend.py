"""The CUDA backend: our Numba kernels (mnist_gpu.kernels), cuBLAS GEMMs (cuda_gemm.py), CuPy arrays.

Everything is queued on ONE CuPy stream per backend: copies and allocations (each made inside
`with self.on_stream`, because CuPy's "current stream" is per thread and another backend may have
made its own current), cuBLAS (its handle is bound to the stream) and every Numba launch (handed
that stream), so nothing inside a training step waits for the host. The host waits only where it
reads a number: the loss when it is printed, the counts once per evaluation.

Every kernel launch and GEMM is made as data first (KernelLaunch, GemmCall) and issued by
`_issue`: run at once, or, inside `recording()`, kept: that is how the training step becomes
a program of prepared operations and a CUDA graph (cuda_program.py).

Under Numba's simulator (NUMBA_ENABLE_CUDASIM=1) the very same kernels run on the CPU, NumPy
arrays stand in for CuPy arrays and OpenBLAS takes cuBLAS's calls: that is how CI tests this file.
Shapes: K members, B batch, D=784, H1, H2, C=10.
"""
import contextlib

import numpy as np

from ..errors import BackendUnavailable
from ..model import PIXEL_SCALE
from .cuda_gemm import Cublas, GemmCall, SimulatedCublas
from .cuda_launch import KernelLaunch
from .cuda_loading import loading
from .interface import check_labels
from .numpy_backend import NumpyBackend


def _import_cupy():
    import cupy

    try:
        usable = cupy.is_available()
    except Exception as error:  # noqa: BLE001 - a broken driver is reported, not raised
        usable, reason = False, str(error)
    else:
        reason = "CuPy sees no CUDA device (no NVIDIA GPU or driver)"
    if not usable:
        raise BackendUnavailable(f"--backend cuda needs a usable NVIDIA GPU: {reason}; use --backend cpu instead")
    return cupy


class CudaBackend:
    """Hand-written Numba CUDA kernels for the element-wise and reduction ops, cuBLAS for GEMMs."""

    name = "cuda"
    dtype = np.dtype(np.float32)
    graph_modes = ("off", "on")  # its step program runs eagerly or as one CUDA graph (cuda_program.py)

    def __init__(self):
        """Loads numba-cuda and our kernels, and on a GPU CuPy, a stream and cuBLAS; a failure is BackendUnavailable."""
        with loading("numba-cuda"):
            from mnist_gpu.kernels import (
                backward,
                bias_activation,
                gather,
                in_top_k,
                numba_cuda,
                sgd_update,
                softmax_xent,
            )

        self.kernels_module = numba_cuda
        self.bias_activation, self.backward, self.gather = bias_activation, backward, gather
        self.softmax, self.sgd, self.top_k = softmax_xent, sgd_update, in_top_k
        self.simulated = numba_cuda.SIMULATED
        if self.simulated:
            self.xp = np
            self.reference = NumpyBackend()  # the host's free memory
            self.stream = None
            self.on_stream = contextlib.nullcontext()
            self.launch_stream = numba_cuda.cuda.default_stream()
            self.gemms = SimulatedCublas()
        else:
            with loading("CuPy"):
                cupy = _import_cupy()
                self.xp = cupy
                self.stream = cupy.cuda.Stream(non_blocking=True)
                self.on_stream = self.stream  # `with self.on_stream:` makes it CuPy's current stream, then restores
            with loading("numba-cuda on CuPy's stream"):
                self.launch_stream = numba_cuda.cuda.external_stream(self.stream.ptr)
            with loading("cuBLAS through nvmath-python"):
                self.gemms = Cublas(cupy, self.stream)
        self.recorded = None  # a list while recording()
        self.index_buffer = self.empty(0, dtype=np.int32)
        self.device_rates = {}  # the members' learning rates (bytes) -> their device array
        self.scratch_buffers = {}  # shape -> a gradient buffer (matmul_sgd)

    # -- arrays ---------------------------------------------------------------
    def asarray(self, array, dtype=None):
        """A new device array (in the simulator a new, writable host array, as an upload would make)."""
        kind = (array if hasattr(array, "dtype") else np.asarray(array)).dtype.kind
        if dtype is None:
            dtype = self.dtype if kind == "f" else None  # floats become float32, integers keep their type
        with self.on_stream:
            return self.xp.array(array, dtype=dtype, order="C", copy=True)

    def to_host(self, array):
        if self.stream is None:
            return np.array(array)
        return array.get(stream=self.stream)  # waits for everything queued before it on our stream

    def empty(self, shape, dtype=None):
        with self.on_stream:
            return self.xp.empty(shape, dtype=dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        with self.on_stream:  # the zeroing is a kernel: on our stream, in order with the rest
            return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def upload(self, host, out):
        """Copy the host array into the device array `out`, queued on our stream (asynchronous from pinned memory).

        The one host-to-device copy of this backend's ops and of the step program's window refills.
        """
        if self.stream is None:
            out[...] = host
        else:
            out.set(host, stream=self.stream)

    def synchronize(self):
        """Wait for everything queued so far (timing, and before reading results on the host)."""
        if self.stream is not None:
            self.stream.synchronize()

    def free_memory(self):
        """The GPU's free memory, plus what CuPy's pool holds unused (the simulator: the host's)."""
        if self.stream is None:
            return self.reference.free_memory()
        free, _ = self.xp.cuda.Device().mem_info
        return free + self.xp.get_default_memory_pool().free_bytes()

    @contextlib.contextmanager
    def recording(self):
        """Inside it, launches and GEMMs are kept in the yielded list instead of run (buffers may be allocated)."""
        self.recorded = []
        try:
            yield self.recorded
        finally:
            self.recorded = None

    def _issue(self, operation):
        if self.recorded is not None:
            self.recorded.append(operation)
        else:
            operation.run()

    def launch(self, kernel, blocks, threads, *arguments):
        """kernel[blocks, threads] on our stream, like CUDA's kernel<<<blocks, threads, 0, stream>>>."""
        self._issue(KernelLaunch(kernel, blocks, threads, arguments, self.launch_stream, self.on_stream))

    def _gemm(self, a, b, out, alpha, beta, trans_a, trans_b):
        self._issue(GemmCall(self.gemms, a, b, out, alpha, beta, trans_a, trans_b))

    def grid(self, count):
        """(blocks, threads) for one thread per item."""
        threads = self.kernels_module.THREADS_PER_BLOCK
        return self.kernels_module.blocks_for(count, threads), threads

    def stride_grid(self, count):
        """(blocks, threads) for a grid-stride kernel: one thread per item on a GPU; in the simulator, which starts a
        Python thread per simulated thread, at most SIMULATED_BLOCKS blocks whose threads loop over the items."""
        blocks, threads = self.grid(count)
        return (min(blocks, self.kernels_module.SIMULATED_BLOCKS) if self.simulated else blocks), threads

    def step_program(self, model, split, orders, last_step, graph="auto", note=print):
        """The training step as a program of prepared operations, eager or one CUDA graph (cuda_program.py)."""
        from .cuda_program import StepProgram

        return StepProgram(model, split, orders, last_step, graph, note)

    def rates_on_device(self, learning_rates):
        """The members' learning rates as a device array, made once per set of rates (the step program keeps using
        the same array, so a CUDA graph can be replayed)."""
        key = np.asarray(learning_rates, np.float32).tobytes()
        if key not in self.device_rates:
            self.device_rates[key] = self.asarray(np.frombuffer(key, np.float32))
        return self.device_rates[key]

    # -- ops ------------------------------------------------------------------
    def _device_indices(self, indices):
        """Copy host row indices (any shape, flattened) into a reused device buffer: the one upload of an op-by-op
        step."""
        count = indices.size
        if self.index_buffer.shape[0] < count:
            self.index_buffer = self.empty(count, dtype=np.int32)
        device_indices = self.index_buffer[:count]
        self.upload(np.asarray(indices, dtype=np.int32).reshape(-1), device_indices)  # queued in order with the step
        return device_indices

    def gather_rows(self, table, indices, out):
        """out[...] = table[indices]; `indices` are host integers ([K, B] or [R]), flattened for the kernel."""
        out_2d = out.reshape(indices.size, -1)
        self.launch(self.gather.gather_rows_kernel, *self.stride_grid(out_2d.size),
                    table.reshape(len(table), -1), self._device_indices(indices), out_2d)

    def gather_images(self, pixels, indices, out):
        """out[...] = pixels[indices] * PIXEL_SCALE, uint8 to float32 in the same pass (rows flattened)."""
        out_2d = out.reshape(indices.size, -1)
        self.launch(self.gather.gather_images_kernel, *self.stride_grid(out_2d.size),
                    pixels, self._device_indices(indices), PIXEL_SCALE, out_2d)

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out[k] = op(a[k]) @ op(b[k]) by one strided-batched cuBLAS call; a transpose is a flag, never a copy."""
        self._gemm(a, b, out, 1.0, 0.0, trans_a, trans_b)

    def matmul_sgd(self, a, b, parameter, learning_rates, active, trans_a=False, trans_b=False):
        """parameter[k] -= learning_rates[k] * op(a[k]) @ op(b[k]) where active[k]: every member's gradient by one
        strided-batched GEMM into a scratch buffer, then the SGD kernel (each member's rate; a stopped member left
        as it is). cuBLAS takes one alpha per call, so folding the rates into the GEMM would need a call per
        learning rate and could not skip a member the device has just stopped."""
        gradient = self.scratch(parameter.shape)
        self._gemm(a, b, gradient, 1.0, 0.0, trans_a, trans_b)
        self.sgd_update(parameter.reshape(len(parameter), -1), gradient.reshape(len(parameter), -1), learning_rates,
                        active)

    def scratch(self, shape):
        """A buffer of `shape` for a gradient used at once (the stream orders its uses), made once per shape."""
        if shape not in self.scratch_buffers:
            self.scratch_buffers[shape] = self.empty(shape)
        return self.scratch_buffers[shape]

    def bias_relu(self, x, bias, out):
        self.launch(self.bias_activation.bias_relu_kernel, *self.grid(x.size), x, bias, out)

    def bias_add(self, x, bias, out):
        self.launch(self.bias_activation.bias_add_kernel, *self.grid(x.size), x, bias, out)

    def _column_grid(self, members, columns):
        backward = self.backward
        return (-(-columns // backward.COLUMN_TILE), members), (backward.COLUMN_TILE, backward.ROW_LANES)

    def bias_grad(self, grad, out):
        self.launch(self.backward.bias_grad_kernel, *self._column_grid(grad.shape[0], grad.shape[2]), grad, out)

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        self.launch(self.backward.relu_backward_bias_grad_kernel, *self._column_grid(grad.shape[0], grad.shape[2]),
                    grad, activation, out, bias_grad)

    def softmax_xent(self, logits, labels, grad_out, active):
        """Returns the members' mean losses [K] on the device (to_host reads them, waiting for the GPU)."""
        check_labels(labels)
        losses = self.empty(logits.shape[0])  # fresh each call: never overwritten later
        self.launch(self.softmax.softmax_xent_kernel, logits.shape[0], self.softmax.SOFTMAX_THREADS,
                    logits, labels, grad_out, active, losses)
        return losses

    def sgd_update(self, parameter, grad, learning_rates, active):
        self.launch(self.sgd.sgd_update_kernel, *self.stride_grid(parameter.size),
                    parameter, grad, self.rates_on_device(learning_rates), active)

    def in_top_k(self, logits, labels, k=1):
        """Returns the members' counts [K] on the device (to_host reads them, waiting for the GPU)."""
        check_labels(labels)
        counts = self.zeros(logits.shape[0], dtype=np.int32)
        self.launch(self.top_k.in_top_k_kernel, *self.grid(logits.shape[0] * logits.shape[1]), logits, labels,
                    np.int32(k), counts)
        return counts
