"""Backends: one module each behind one small interface (interface.py's `Backend`); numpy_backend.py is its spec.

    numpy   numpy_backend.py   the readable reference, plain NumPy on the host
    cpu     cpu_backend.py     the same ops as fused Numba kernels (kernels/cpu.py) and OpenBLAS
    cuda    cuda_backend.py    our Numba CUDA kernels (kernels/) and cuBLAS; cuda_program.py runs its step
    auto    cuda where a usable GPU and the GPU packages are (gpu_probe.py), else cpu

This module only chooses and makes one; importing it imports no backend.
"""
from .gpu_probe import why_no_gpu

BACKEND_NAMES = ("auto", "numpy", "cpu", "cuda")
CUDA_GRAPH_MODES = ("auto", "on", "off")  # --cuda_graph: see cuda_program.py


def resolve_backend_name(name):
    """(backend name, why) for a --backend value: "auto" becomes cuda or cpu, saying why."""
    if name != "auto":
        return name, "asked for"
    reason = why_no_gpu()
    return ("cpu", f"auto: no usable GPU, {reason}") if reason else ("cuda", "auto: a usable GPU")


def get_backend(name="auto"):
    """The backend called `name`: "numpy", "cpu", "cuda", or "auto" (cuda when a GPU is usable, else cpu)."""
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
