"""Forward element-wise kernels: fused bias + ReLU (hidden layers) and bias add (logits), for K members.

Shapes: x, out [K, B, H] (H = H1, H2 or C=10), bias [K, H] (each member's own). out may be x (in place).
Launch: one thread per element, THREADS_PER_BLOCK threads per block, blocks_for(K * B * H) blocks;
consecutive threads take consecutive columns of a row, so reads and writes are coalesced.
Fused: the bias add and the ReLU happen in one pass over memory instead of two.
"""
from .numba_cuda import cuda, float32


@cuda.jit(cache=True)
def bias_relu_kernel(x, bias, out):
    index = cuda.grid(1)
    members, rows, columns = x.shape
    if index < members * rows * columns:
        member = index // (rows * columns)
        row = index // columns - member * rows
        column = index - (member * rows + row) * columns
        value = x[member, row, column] + bias[member, column]
        out[member, row, column] = float32(0.0) if value < 0 else value  # NaN passes through, as in NumPy and TF


@cuda.jit(cache=True)
def bias_add_kernel(x, bias, out):
    index = cuda.grid(1)
    members, rows, columns = x.shape
    if index < members * rows * columns:
        member = index // (rows * columns)
        row = index // columns - member * rows
        column = index - (member * rows + row) * columns
        out[member, row, column] = x[member, row, column] + bias[member, column]
