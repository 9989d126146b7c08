"""Batch gather, so the whole data set lives on the GPU and a step reads only its batch.

gather_rows_kernel:   out[b, :] = table[indices[b], :]   (labels viewed as [N, 1], or float rows)
gather_images_kernel: out[b, :] = float32(pixels[indices[b], :]) * scale   (fused gather +
    uint8 -> float32 conversion: the set is stored as its original bytes, 4x less to read)
Shapes: table/pixels [N, W] (images: W = D = 784), indices [B] int32, out [B, W] float32.
Launch: a grid-stride loop over the B * W output elements, blocks_for(B * W) blocks of THREADS_PER_BLOCK
(on a GPU one element a thread; in the simulator at most SIMULATED_BLOCKS blocks: numba_cuda.py);
consecutive threads copy consecutive pixels of a row (coalesced).
"""
from .numba_cuda import cuda, float32


@cuda.jit(cache=True)
def gather_rows_kernel(table, indices, out):
    width = out.shape[1]
    for index in range(cuda.grid(1), out.shape[0] * width, cuda.gridsize(1)):
        row = index // width
        column = index - row * width
        out[row, column] = table[indices[row], column]


@cuda.jit(cache=True)
def gather_images_kernel(pixels, indices, scale, out):
    width = out.shape[1]
    for index in range(cuda.grid(1), out.shape[0] * width, cuda.gridsize(1)):
        row = index // width
        column = index - row * width
        out[row, column] = float32(pixels[indices[row], column]) * scale
