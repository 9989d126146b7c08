"""NumPy's own OpenBLAS `cblas_sgemm`, for the one GEMM form NumPy does not expose: C = alpha*A@B + beta*C.

The cpu backend uses it to fold SGD into the weight-gradient GEMM (W = W - lr * X^T G: beta = 1,
alpha = -lr), which saves writing, re-reading and updating a separate gradient the size of W.
NumPy >= 2 wheels bundle OpenBLAS as `scipy_openblas64_` (64-bit integers); loading that same
file shares NumPy's library and thread pool. Where it is not found (another BLAS, another
platform), `find_sgemm` returns None and the caller falls back to NumPy.

The call is made from Numba-compiled code: from Python, ctypes spends ~14 us converting the
arguments of one call, more than a small GEMM takes.
"""
import ctypes
import glob
import os

import numpy as np
from numba import njit

ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112


def _load_cblas_sgemm():
    numpy_folder = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(numpy_folder, os.pardir, "numpy.libs", "libscipy_openblas64_*")) + \
        glob.glob(os.path.join(numpy_folder, ".dylibs", "libscipy_openblas64_*"))
    for path in sorted(candidates):
        try:
            cblas_sgemm = ctypes.CDLL(path).scipy_cblas_sgemm64_
        except (OSError, AttributeError):
            continue
        index, scalar, address = ctypes.c_int64, ctypes.c_float, ctypes.c_size_t
        cblas_sgemm.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, index, index, index, scalar,
                                address, index, address, index, scalar, address, index]
        cblas_sgemm.restype = None
        return cblas_sgemm
    return None


def find_sgemm():
    """A compiled sgemm(a, b, c, alpha, beta, trans_a, trans_b) for C-contiguous float32 arrays, or None.

    c = alpha * op(a) @ op(b) + beta * c, in place; shapes are checked before BLAS sees them.
    """
    cblas_sgemm = _load_cblas_sgemm()
    if cblas_sgemm is None:
        return None

    # C-contiguous float32 only ([:, ::1]): anything else is a TypeError, never a wrong read.
    # Not cache=True: the library's address differs from one process to the next.
    @njit("void(float32[:, ::1], float32[:, ::1], float32[:, ::1], float32, float32, boolean, boolean)")
    def sgemm(a, b, c, alpha, beta, trans_a, trans_b):
        rows, inner = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
        inner_b, columns = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
        if inner != inner_b or c.shape[0] != rows or c.shape[1] != columns:
            raise ValueError("sgemm: the shapes of op(a), op(b) and c do not fit")
        cblas_sgemm(ROW_MAJOR, TRANSPOSE if trans_a else NO_TRANSPOSE, TRANSPOSE if trans_b else NO_TRANSPOSE,
                    rows, columns, inner, alpha, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1],
                    beta, c.ctypes.data, c.shape[1])

    return sgemm
