"""Batch gather: out[b, :] = table[indices[b], :], so the whole data set can live on the GPU.

Shapes: table [N, W] (images: W = D = 784; labels viewed as [N, 1]), indices [B] int32,
out [B, W]. Launch: one thread per output element, blocks_for(B * W) blocks of
THREADS_PER_BLOCK; consecutive threads copy consecutive pixels of a row (coalesced).
"""
from .numba_cuda import cuda


@cuda.jit
def gather_rows_kernel(table, indices, out):
    index = cuda.grid(1)
    width = out.shape[1]
    if index < out.shape[0] * width:
        row = index // width
        column = index - row * width
        out[row, column] = table[indices[row], column]
