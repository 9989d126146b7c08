"""The one module that imports numba.cuda: the real numba-cuda on a GPU, or Numba's CPU simulator.

numba 0.68 still ships a deprecated built-in numba.cuda; NVIDIA's numba-cuda package replaces it
(and numba-cuda-mlir may replace that), so the import lives here alone. Under the simulator
(NUMBA_ENABLE_CUDASIM=1, set before numba is imported) kernels run as Python on NumPy arrays.

Every kernel is `@cuda.jit(cache=True)`: compiled once per argument types and GPU architecture,
then loaded from Numba's on-disk cache by later runs, as the cpu kernels are. Compiling the 11
signatures a run launches takes about 2 s (typing, LLVM, NVVM, nvJitLink for sm_90, timed through
the real-compiler tier on this project's CPU machine): more than the cpu backend's whole run.
"""
import os

# Our kernels run on CuPy's stream, in order with everything else, so Numba need not
# synchronise the host each time it is handed a CuPy array.
os.environ.setdefault("NUMBA_CUDA_ARRAY_INTERFACE_SYNC", "0")
# The tutorial's shapes are small: grids of a few blocks are intended, not a mistake to warn of.
os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")

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


__all__ = ["SIMULATED", "THREADS_PER_BLOCK", "blocks_for", "cuda", "float32", "int32"]
