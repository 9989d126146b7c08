"""The one module that imports numba.cuda: the real numba-cuda on a GPU, or Numba's CPU simulator.

numba 0.68 still ships a deprecated built-in numba.cuda; NVIDIA's numba-cuda package replaces it
(and numba-cuda-mlir may replace that), so the import lives here alone. Under the simulator
(NUMBA_ENABLE_CUDASIM=1, set before numba is imported) kernels run as Python on NumPy arrays.

Every kernel is `@cuda.jit(cache=True)`: compiled once per argument types and GPU architecture,
then loaded from Numba's on-disk cache by later runs, as the cpu kernels are. Compiling the 11
signatures a run launches takes about 2 s (typing, LLVM, NVVM, nvJitLink for sm_90, timed through
the real-compiler tier on this project's CPU machine): more than the cpu backend's whole run.

NumPy 2.5 removed `np.row_stack`, and numba-cuda 0.30.0-0.30.4 (0.30.4 is the newest release;
upstream is in maintenance mode and closed the issue without a fix) overload it unconditionally
in numba/cuda/np/arrayobj.py, which loads at the first kernel compile: every compile fails with
"module 'numpy' has no attribute 'row_stack'". Where NumPy lacks it and numba-cuda is one of those
versions, that one module is imported here with a private stand-in for `np.row_stack` present for
the import only (`_load_array_overloads`): numba-cuda registers its overload for the stand-in,
which no code can reach, and NumPy is left as it was. Remove it once numba-cuda guards the overload
as numba 0.68 does (docs/design.md, "Libraries, and why").
"""
import contextlib
import importlib
import re
from importlib import metadata

import numba
import numpy as np
from numba import cuda, float32, int32

SIMULATED = bool(numba.config.ENABLE_CUDASIM)

if not SIMULATED and getattr(cuda, "implementation", None) != "NVIDIA":
    raise ImportError(
        "numba.cuda is numba's deprecated built-in CUDA target, not NVIDIA's numba-cuda; "
        "install it with: pip install 'numba-cuda[cu13]' (or [cu12])"
    )

# numba-cuda releases whose arrayobj.py overloads np.row_stack whatever NumPy's version (read in 0.30.0 and 0.30.4).
ROW_STACK_OVERLOADED_BY = ((0, 30, 0), (0, 30, 4))
ARRAY_OVERLOADS = "numba.cuda.np.arrayobj"


def _version(text):
    """(major, minor, patch) of a version string such as "0.30.4" or "0.31.0rc1"; None if it has none."""
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(part or 0) for part in found.groups()) if found else None


def row_stack_stand_in_needed(numpy_has_row_stack, numba_cuda_version):
    """Whether numba-cuda's array overloads need a stand-in for np.row_stack to load: only where NumPy has none
    (2.5 and newer) and the numba-cuda is a release known to overload it unconditionally."""
    version = _version(numba_cuda_version)
    first, last = ROW_STACK_OVERLOADED_BY
    return not numpy_has_row_stack and version is not None and first <= version <= last


def _row_stack_stand_in(tup):
    """What numba-cuda registers its np.row_stack overload for: reachable by no kernel (it is not NumPy's)."""
    return np.vstack(tup)


@contextlib.contextmanager
def _row_stack_present():
    """np.row_stack is the stand-in for the block only; afterwards NumPy has no row_stack again."""
    np.row_stack = _row_stack_stand_in
    try:
        yield
    finally:
        del np.row_stack


def _load_array_overloads():
    """Load numba-cuda's array overloads now, with the stand-in where they need it; True if it was needed."""
    try:
        installed = metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        installed = None
    if not row_stack_stand_in_needed(hasattr(np, "row_stack"), installed):
        return False
    with _row_stack_present():
        importlib.import_module(ARRAY_OVERLOADS)
    return True


# The simulator runs kernels as Python on NumPy: it never loads numba-cuda's overloads.
ROW_STACK_STAND_IN = False if SIMULATED else _load_array_overloads()

THREADS_PER_BLOCK = 256  # a multiple of the 32-thread warp; enough threads to hide memory latency


def blocks_for(count, threads=THREADS_PER_BLOCK):
    """Blocks needed so that one thread covers each of `count` items."""
    return max(1, (count + threads - 1) // threads)


# The simulator runs each simulated thread as a Python thread (about 0.5 ms each, started and joined): the
# grid-stride kernels (the gathers, SGD) are launched there with at most this many blocks, each thread looping.
SIMULATED_BLOCKS = 2


def nvvm():
    """(version, library path, how numba-cuda found it) of the libNVVM that compiles our kernels; raises where none
    is found (cuda-pathfinder looks in site-packages, then CUDA_HOME / CUDA_PATH)."""
    from numba.cuda.cuda_paths import get_cuda_paths
    from numba.cuda.cudadrv import nvvm as nvvm_library

    version = ".".join(map(str, nvvm_library.NVVM().get_version()))
    found = get_cuda_paths()["nvvm"]
    return version, found.info, found.by


__all__ = ["SIMULATED", "SIMULATED_BLOCKS", "THREADS_PER_BLOCK", "blocks_for", "cuda", "float32", "int32", "nvvm"]
