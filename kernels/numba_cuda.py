"""The one module that imports numba.cuda: the real numba-cuda on a GPU, or Numba's CPU simulator.

numba 0.68 still ships a deprecated built-in numba.cuda; NVIDIA's numba-cuda package replaces it
(and numba-cuda-mlir may replace that), so the import lives here alone. Under the simulator
(NUMBA_ENABLE_CUDASIM=1, set before numba is imported) kernels run as Python on NumPy arrays.

Every kernel is `@cuda.jit(cache=True)`: compiled once per argument types and GPU architecture,
then loaded from Numba's on-disk cache by later runs, as the cpu kernels are. Compiling the 11
signatures a run launches takes about 2 s (typing, LLVM, NVVM, nvJitLink for sm_90, timed through
the real-compiler tier on this project's CPU machine): more than the cpu backend's whole run.
Numba's environment settings are set before this (mnist_gpu/numba_environment.py).
"""
import numba
from numba import cuda, float32, int32

SIMULATED = bool(numba.config.ENABLE_CUDASIM)

if not SIMULATED and getattr(cuda, "implementation", None) != "NVIDIA":
    raise ImportError(
        "numba.cuda is numba's deprecated built-in CUDA target, not NVIDIA's numba-cuda; "
        "install it with: pip install 'numba-cuda[cu13]' (or [cu12])"
    )

THREADS_PER_BLOCK = 256  # a multiple of the 32-thread warp; enough threads to hide memory latency


def blocks_for(count, threads=THREADS_PER_BLOCK):
    """Blocks needed so that one thread covers each of `count` items."""
    return max(1, (count + threads - 1) // threads)


def nvvm():
    """(version, library path, how numba-cuda found it) of the libNVVM that compiles our kernels; raises where none
    is found (cuda-pathfinder looks in site-packages, then CUDA_HOME / CUDA_PATH)."""
    from numba.cuda.cuda_paths import get_cuda_paths
    from numba.cuda.cudadrv import nvvm as nvvm_library

    version = ".".join(map(str, nvvm_library.NVVM().get_version()))
    found = get_cuda_paths()["nvvm"]
    return version, found.info, found.by


__all__ = ["SIMULATED", "THREADS_PER_BLOCK", "blocks_for", "cuda", "float32", "int32", "nvvm"]
