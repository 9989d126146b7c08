"""NumPy's own OpenBLAS `cblas_sgemm`, for the one GEMM form NumPy does not expose: C = alpha*A@B + beta*C.

The cpu backend uses it to fold SGD into the weight-gradient GEMM (W = W - lr * X^T G: beta = 1,
alpha = -lr), which saves writing, re-reading and updating a separate gradient the size of W.
The library is NumPy's bundled OpenBLAS (blas_library.py); where it is not found, `find_sgemm`
returns None and the caller falls back to NumPy.

The call is made from Numba-compiled code: from Python, ctypes spends ~14 us converting the
arguments of one call, more than a small GEMM takes. The compiled code names the function by its
symbol, which `find_sgemm` registers with LLVM in each process, and holds no address: so it is
cached on disk like the kernels (compiling it cost ~0.6 s at the start of every run).

Threads without changing a bit: a large product is computed in blocks of rows, each one BLAS call,
the blocks on Numba's threads when OpenBLAS runs on one thread (as the trainer runs it). How many
blocks is fixed by the product's shape alone (`row_blocks`), never by the machine's cores, so the
numbers are the same on 1 core or 64, and a member of a population (whose blocks run one after the
other on its member's thread) gets exactly its solo run's. OpenBLAS's own threads would not do:
its results change with its thread count.
"""
import functools

import llvmlite.binding as llvm
from numba import njit, prange, types

from .blas_library import SYMBOL, THREADS_SYMBOL, address_of

ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112
# cblas_sgemm(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), 64-bit sizes.
_enum, _size, _scalar, _pointer = types.int32, types.int64, types.float32, types.uintp
cblas_sgemm = types.ExternalFunction(SYMBOL, types.void(
    _enum, _enum, _enum, _size, _size, _size, _scalar, _pointer, _size, _pointer, _size, _scalar, _pointer, _size))
openblas_threads = types.ExternalFunction(THREADS_SYMBOL, types.int32())
# A product of fewer multiply-adds than SPLIT_PRODUCT is one call (a block costs a few microseconds to hand
# to a thread); a larger one is split into a power of two of blocks of at least ROWS_PER_BLOCK rows, at most
# MAX_BLOCKS. The tutorial's step splits two products: images @ W1 [100, 784] @ [784, 128] in 2 blocks and
# W1's gradient [784, 100] @ [100, 128] in 8; an evaluation's [5000, 784] @ [784, 128] in 8.
SPLIT_PRODUCT, ROWS_PER_BLOCK, MAX_BLOCKS = 2 ** 21, 50, 8
SIGNATURE = "void(float32[:, ::1], float32[:, ::1], float32[:, ::1], float32, float32, boolean, boolean)"
# The members' outputs may be any strided view: only their rows must be contiguous (sgemm checks).
MEMBERS_SIGNATURE = ("void(float32[:, :, ::1], float32[:, :, ::1], float32[:, :, :], float32[::1], float32, boolean, "
                     "boolean, int32[::1])")
SHARED_SIGNATURE = ("void(float32[:, ::1], float32[:, :, ::1], float32[:, :, :], float32[::1], float32, boolean, "
                    "boolean, int32[::1])")


@njit(cache=True)
def rows_contiguous(matrix):
    return matrix.strides[1] == 4 and matrix.strides[0] >= 4 * matrix.shape[1]


@njit(cache=True)
def sgemm(a, b, c, alpha, beta, trans_a, trans_b):
    """c = alpha * op(a) @ op(b) + beta * c, in place, for float32 matrices whose rows are contiguous (a leading
    dimension is the row stride); shapes and strides are checked before BLAS sees them."""
    rows, inner = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    inner_b, columns = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if inner != inner_b or c.shape[0] != rows or c.shape[1] != columns:
        raise ValueError("sgemm: the shapes of op(a), op(b) and c do not fit")
    if not (rows_contiguous(a) and rows_contiguous(b) and rows_contiguous(c)):
        raise ValueError("sgemm: a matrix's rows are not contiguous")
    cblas_sgemm(ROW_MAJOR, TRANSPOSE if trans_a else NO_TRANSPOSE, TRANSPOSE if trans_b else NO_TRANSPOSE,
                rows, columns, inner, alpha, a.ctypes.data, a.strides[0] // 4, b.ctypes.data, b.strides[0] // 4,
                beta, c.ctypes.data, c.strides[0] // 4)


@njit(cache=True)
def row_blocks(rows, columns, inner):
    """How many blocks of rows the product op(a) [rows, inner] @ op(b) [inner, columns] is computed in."""
    if rows * columns * inner < SPLIT_PRODUCT:
        return 1
    blocks = 1
    while blocks < MAX_BLOCKS and rows // (2 * blocks) >= ROWS_PER_BLOCK:
        blocks *= 2
    return blocks


@njit(cache=True)
def sgemm_block(a, b, c, alpha, beta, trans_a, trans_b, block, blocks):
    """Rows [block / blocks, (block + 1) / blocks) of c = alpha * op(a) @ op(b) + beta * c: one BLAS call."""
    start, stop = c.shape[0] * block // blocks, c.shape[0] * (block + 1) // blocks
    if trans_a:  # op(a)'s rows are a's columns
        sgemm(a[:, start:stop], b, c[start:stop], alpha, beta, trans_a, trans_b)
    else:
        sgemm(a[start:stop], b, c[start:stop], alpha, beta, trans_a, trans_b)


@njit(cache=True)
def sgemm_blocks(a, b, c, alpha, beta, trans_a, trans_b):
    """sgemm in its row blocks, one after the other (a member's share of a population's step)."""
    blocks = row_blocks(c.shape[0], c.shape[1], a.shape[0] if trans_a else a.shape[1])
    for block in range(blocks):
        sgemm_block(a, b, c, alpha, beta, trans_a, trans_b, block, blocks)


def sgemm_one(a, b, c, alpha, beta, trans_a, trans_b):
    """sgemm in its row blocks, on Numba's threads where OpenBLAS runs on one (else one after the other, each
    block on OpenBLAS's threads: two pools of threads on the same cores would wait on each other)."""
    blocks = row_blocks(c.shape[0], c.shape[1], a.shape[0] if trans_a else a.shape[1])
    if blocks == 1:
        sgemm(a, b, c, alpha, beta, trans_a, trans_b)
    elif openblas_threads() == 1:
        for block in prange(blocks):
            sgemm_block(a, b, c, alpha, beta, trans_a, trans_b, block, blocks)
    else:
        sgemm_blocks(a, b, c, alpha, beta, trans_a, trans_b)


def sgemm_members(a, b, c, alphas, beta, trans_a, trans_b, active):
    """c[k] = alphas[k] * op(a[k]) @ op(b[k]) + beta * c[k] for every member k with active[k] != 0, one member per
    thread (where OpenBLAS runs on one), each in the blocks of its solo run; the others are left as they are."""
    if openblas_threads() == 1:
        for member in prange(c.shape[0]):
            if active[member] != 0:
                sgemm_blocks(a[member], b[member], c[member], alphas[member], beta, trans_a, trans_b)
    else:
        for member in range(c.shape[0]):
            if active[member] != 0:
                sgemm_blocks(a[member], b[member], c[member], alphas[member], beta, trans_a, trans_b)


def sgemm_members_shared(a, b, c, alphas, beta, trans_a, trans_b, active):
    """The same with one `a` [M, N] for every member (evaluation's images)."""
    if openblas_threads() == 1:
        for member in prange(c.shape[0]):
            if active[member] != 0:
                sgemm_blocks(a, b[member], c[member], alphas[member], beta, trans_a, trans_b)
    else:
        for member in range(c.shape[0]):
            if active[member] != 0:
                sgemm_blocks(a, b[member], c[member], alphas[member], beta, trans_a, trans_b)


class Sgemm:
    """NumPy's OpenBLAS sgemm, compiled for C-contiguous float32 arrays (anything else is a TypeError, never a
    wrong read): `one` for one member's matrices, `members` for [K, ...] arrays, `shared` with a 2-D `a`."""

    def __init__(self):
        self.one = njit(SIGNATURE, cache=True, parallel=True)(sgemm_one)
        self.members = njit(MEMBERS_SIGNATURE, cache=True, parallel=True)(sgemm_members)
        self.shared = njit(SHARED_SIGNATURE, cache=True, parallel=True)(sgemm_members_shared)


@functools.cache
def find_sgemm():
    """An Sgemm, or None where NumPy's OpenBLAS is not found."""
    address = address_of(SYMBOL)
    if address is None:
        return None
    llvm.add_symbol(SYMBOL, address)
    llvm.add_symbol(THREADS_SYMBOL, address_of(THREADS_SYMBOL))
    return Sgemm()
