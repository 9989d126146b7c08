"""NumPy's own OpenBLAS library: where it is, its cblas_sgemm's address, and its thread count.

NumPy >= 2 wheels bundle OpenBLAS as `scipy_openblas64_` (64-bit integers); loading that same file
shares NumPy's library and thread pool. Where it is not found (another BLAS, another platform), these
return None or False. ctypes only: the trainer sets the thread count without loading Numba (a run on
the numpy backend never needs it, and a small address-space limit could not map it).

The thread count can be set at any time (`set_threads`, what the tests use), not only through
OPENBLAS_NUM_THREADS before NumPy loads.
"""
import contextlib
import ctypes
import functools
import glob
import os

import numpy as np

SYMBOL = "scipy_cblas_sgemm64_"
THREADS_SYMBOL = "scipy_openblas_get_num_threads64_"


@functools.cache
def find_library():
    """NumPy's bundled OpenBLAS (the very library NumPy has loaded, so its thread pool too), or None."""
    numpy_folder = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(numpy_folder, os.pardir, "numpy.libs", "libscipy_openblas64_*")) + \
        glob.glob(os.path.join(numpy_folder, ".dylibs", "libscipy_openblas64_*"))
    for path in sorted(candidates):
        try:
            library = ctypes.CDLL(path)
            getattr(library, SYMBOL)
        except (OSError, AttributeError):
            continue
        return library
    return None


def address_of(symbol):
    """Where NumPy's bundled OpenBLAS has the function `symbol`, or None."""
    library = find_library()
    return None if library is None else ctypes.cast(getattr(library, symbol), ctypes.c_void_p).value


def set_threads(count):
    """Run NumPy's OpenBLAS on `count` threads from now on, whenever NumPy was loaded; False where it is not found.

    OPENBLAS_NUM_THREADS is read once, when the library loads: this works after that too (the tests pin
    one thread even where a pytest plugin imported NumPy before any conftest could set the variable).
    """
    library = find_library()
    if library is None:
        return False
    library.scipy_openblas_set_num_threads64_(ctypes.c_int(count))
    return True


@contextlib.contextmanager
def threads_for(count):
    """Run NumPy's OpenBLAS on `count` threads inside the block, and as before after it."""
    before = threads()
    set_threads(count)
    try:
        yield
    finally:
        if before is not None:
            set_threads(before)


def threads():
    """How many threads NumPy's OpenBLAS runs on now, or None where it is not found."""
    library = find_library()
    return None if library is None else getattr(library, THREADS_SYMBOL)()
