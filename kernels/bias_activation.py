"""Forward element-wise kernels: fused bias + ReLU (hidden layers) and bias add (logits).

Shapes: x, out [B, H] (H = H1, H2 or C=10), bias [H]. out may be x (in place).
Launch: one thread per element, THREADS_PER_BLOCK threads per block, blocks_for(B * H) blocks;
consecutive threads take consecutive columns of a row, so reads and writes are coalesced.
Fused: the bias add and the ReLU happen in one pass over memory instead of two.
"""
from .numba_cuda import cuda, float32


@cuda.jit(cache=True)
def bias_relu_kernel(x, bias, out):
    index = cuda.grid(1)
    columns = x.shape[1]
    if index < x.shape[0] * columns:
        row = index // columns
        column = index - row * columns
        value = x[row, column] + bias[column]
        out[row, column] = float32(0.0) if value < 0 else value  # NaN passes through, as in NumPy and TF


@cuda.jit(cache=True)
def bias_add_kernel(x, bias, out):
    index = cuda.grid(1)
    columns = x.shape[1]
    if index < x.shape[0] * columns:
        row = index // columns
        column = index - row * columns
        out[row, column] = x[row, column] + bias[column]
