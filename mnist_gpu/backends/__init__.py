"""Backends: one module each behind one small interface (see numpy_backend.py, the spec)."""


class BackendUnavailable(Exception):
    """The asked-for backend cannot run here; the message says what is missing and how to get it."""


BACKEND_NAMES = ("auto", "numpy", "cpu", "cuda")


def gpu_available():
    """True when CuPy can see a CUDA device (the simulator does not count)."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.is_available()
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU
        return False


def get_backend(name="auto"):
    """The backend called `name`.

    "numpy": the readable reference; "cpu": the same with fused Numba CPU kernels (fastest on a
    CPU); "cuda": our CUDA kernels and cuBLAS; "auto": cuda when a GPU is usable, else cpu.
    """
    if name == "auto":
        name = "cuda" if gpu_available() else "cpu"
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
