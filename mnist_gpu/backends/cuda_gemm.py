"""The CUDA backend's GEMMs: cuBLAS's strided-batched sgemm, called directly, with its arguments worked out once per
call site. A population's members are the batch: member k's matrices lie a fixed stride after member k-1's (or,
shared by every member, at stride 0: evaluation's images).

Why not CuPy's GEMMs: CuPy refuses every cuBLAS call while a stream is being captured into a
CUDA graph, and a training step is 8 GEMMs. NVIDIA's nvmath-python exposes cuBLAS itself
(`nvmath.bindings.cublas`), which captures like any other work on the stream. One GEMM path
serves the eager ops, the eager step program and the captured graph, so they compute alike.

cuBLAS is column-major; our arrays are row-major (C order). A row-major matrix's memory, read
column-major, is its transpose. So row-major out[M, N] = op(a) @ op(b) is computed as the
column-major out^T[N, M] = op(b)^T @ op(a)^T: cuBLAS gets b first, then a, each with its own
transpose flag unchanged, m = N, n = M, k = K, and each leading dimension is the row stride.

Under Numba's CUDA simulator the very same argument list goes to a real column-major BLAS
(NumPy's bundled OpenBLAS, `cblas_sgemm` with CblasColMajor), so CI checks the mapping above
against the NumPy spec with an independent implementation of the same BLAS contract.
"""
import ctypes
import weakref

import numpy as np

from ..errors import BackendUnavailable

NO_TRANSPOSE, TRANSPOSE = 0, 1  # cublasOperation_t: CUBLAS_OP_N, CUBLAS_OP_T
CUBLAS_WORKSPACE_BYTES = 32 * 2 ** 20  # NVIDIA's advice for Hopper; a fixed workspace lets cuBLAS be captured


def _operand(array, pointer):
    """(address, leading dimension, member stride) of a float32 operand: each member's matrix [K, M, N], or one
    matrix [M, N] that every member shares (member stride 0); rows contiguous, rows and members strided."""
    if array.ndim not in (2, 3) or array.dtype != np.float32:
        raise TypeError(f"sgemm needs float32 matrices [M, N] or [K, M, N], got {array.dtype} with shape "
                        f"{array.shape}")
    if array.strides[-1] != 4 or array.strides[-2] % 4 or array.strides[-2] < 4 * array.shape[-1] or \
            array.strides[0] % 4:
        raise ValueError(f"sgemm needs rows of contiguous elements, got strides {array.strides}")
    return pointer(array), array.strides[-2] // 4, array.strides[0] // 4 if array.ndim == 3 else 0


class GemmCall:
    """out[k] = alpha * op(a[k]) @ op(b[k]) + beta * out[k] for every member k, bound to its buffers: run() issues it
    again and again, one strided-batched cuBLAS call for all the members."""

    def __init__(self, library, a, b, out, alpha, beta, trans_a=False, trans_b=False):
        rows, inner = (a.shape[-1], a.shape[-2]) if trans_a else a.shape[-2:]
        inner_b, columns = (b.shape[-1], b.shape[-2]) if trans_b else b.shape[-2:]
        members = out.shape[0]
        if inner != inner_b or out.shape[1:] != (rows, columns) or b.shape[0] != members or \
                (a.ndim == 3 and a.shape[0] != members):
            raise ValueError(f"sgemm: op(a) {rows}x{inner}, op(b) {inner_b}x{columns} and out {out.shape} do not fit")
        (a_address, a_leading, a_stride), (b_address, b_leading, b_stride), (out_address, out_leading, out_stride) = (
            _operand(array, library.pointer) for array in (a, b, out))
        self.library = library
        self.scalars = np.array([alpha, beta], np.float32)  # cuBLAS reads alpha and beta through host pointers
        # cuBLAS's order: transa, transb, m, n, k, A, lda, strideA, B, ldb, strideB, C, ldc, strideC, count (see the
        # module's docstring: b is cuBLAS's A).
        self.arguments = (TRANSPOSE if trans_b else NO_TRANSPOSE, TRANSPOSE if trans_a else NO_TRANSPOSE,
                          columns, rows, inner, b_address, b_leading, b_stride, a_address, a_leading, a_stride,
                          out_address, out_leading, out_stride, members)
        self.buffers = (a, b, out)  # alive as long as the call can run

    def run(self):
        self.library.sgemm(self)


class Cublas:
    """One cuBLAS handle bound to one stream, with its own workspace (nvmath-python's bindings).

    Made inside the cuda backend's `loading`, which turns whatever nvmath raises here into one line.
    """

    def __init__(self, cupy, stream):
        from nvmath.bindings import cublas

        self.cublas = cublas
        self.handle = cublas.create()
        weakref.finalize(self, cublas.destroy, self.handle)
        with stream:
            self.workspace = cupy.empty(CUBLAS_WORKSPACE_BYTES, dtype=np.uint8)
        cublas.set_stream(self.handle, stream.ptr)
        cublas.set_workspace(self.handle, self.workspace.data.ptr, CUBLAS_WORKSPACE_BYTES)
        cublas.set_pointer_mode(self.handle, cublas.PointerMode.HOST)

    @staticmethod
    def pointer(array):
        return array.data.ptr

    def sgemm(self, call):
        transa, transb, m, n, k, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c, count = call.arguments
        alpha = call.scalars.ctypes.data
        self.cublas.sgemm_strided_batched(self.handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb,
                                          stride_b, alpha + 4, c, ldc, stride_c, count)


class SimulatedCublas:
    """cuBLAS's sgemm contract carried out by NumPy's OpenBLAS (cblas_sgemm, column-major): the simulator's GEMMs."""

    COLUMN_MAJOR = 102
    CBLAS_TRANSPOSE = {NO_TRANSPOSE: 111, TRANSPOSE: 112}

    def __init__(self):
        from . import blas_library

        address = blas_library.address_of(blas_library.SYMBOL)
        if address is None:
            raise BackendUnavailable("the simulated CUDA backend needs NumPy's bundled OpenBLAS for its GEMMs; "
                                     "this NumPy has none")
        size, pointer = ctypes.c_int64, ctypes.c_void_p
        self.function = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, size, size, size,
                                         ctypes.c_float, pointer, size, pointer, size, ctypes.c_float, pointer,
                                         size)(address)

    @staticmethod
    def pointer(array):
        return array.ctypes.data

    def sgemm(self, call):
        """Each member as its own column-major sgemm: what a strided-batched call computes."""
        transa, transb, m, n, k, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c, count = call.arguments
        alpha, beta = (float(value) for value in call.scalars)
        for member in range(count):
            self.function(self.COLUMN_MAJOR, self.CBLAS_TRANSPOSE[transa], self.CBLAS_TRANSPOSE[transb], m, n, k,
                          alpha, a + 4 * member * stride_a, lda, b + 4 * member * stride_b, ldb, beta,
                          c + 4 * member * stride_c, ldc)
