"""Backward kernels: the bias gradient (logits), and ReLU backward fused with it (hidden layers), for K members.

Shapes: grad, activation, out [K, B, H]; bias_grad [K, H] (H = H1, H2 or C=10).
The column sums (bias gradient) use a COLUMN_TILE x ROW_LANES block: threadIdx.x picks a column
(so a warp reads 32 consecutive floats of a row, coalesced), threadIdx.y a lane that walks every
ROW_LANES-th row; the lanes' partial sums are then added in shared memory (the simulator has no
warp shuffles). The sum order is fixed, so results are bit-for-bit repeatable. Grid: one block per
COLUMN_TILE columns of one member, (blocks_for(H, COLUMN_TILE), K).
Fused (relu_backward_bias_grad_kernel): masking the gradient and summing its columns in one pass.
"""
from .numba_cuda import cuda, float32

COLUMN_TILE = 32
ROW_LANES = 8  # a power of two for the tree reduction


@cuda.jit(device=True)
def _add_lanes_and_store(partial, lane_sums, member, column, bias_grad):
    """Tree-add the ROW_LANES partial sums of each column in shared memory; lane 0 stores."""
    lane = cuda.threadIdx.y
    lane_sums[lane, cuda.threadIdx.x] = partial
    cuda.syncthreads()
    stride = ROW_LANES // 2
    while stride > 0:
        if lane < stride:
            lane_sums[lane, cuda.threadIdx.x] += lane_sums[lane + stride, cuda.threadIdx.x]
        cuda.syncthreads()
        stride //= 2
    if lane == 0 and column < bias_grad.shape[1]:
        bias_grad[member, column] = lane_sums[0, cuda.threadIdx.x]


@cuda.jit(cache=True)
def bias_grad_kernel(grad, bias_grad):
    member = cuda.blockIdx.y
    column = cuda.blockIdx.x * COLUMN_TILE + cuda.threadIdx.x
    partial = float32(0.0)
    if column < grad.shape[2]:
        for row in range(cuda.threadIdx.y, grad.shape[1], ROW_LANES):
            partial += grad[member, row, column]
    lane_sums = cuda.shared.array((ROW_LANES, COLUMN_TILE), float32)
    _add_lanes_and_store(partial, lane_sums, member, column, bias_grad)


@cuda.jit(cache=True)
def relu_backward_bias_grad_kernel(grad, activation, out, bias_grad):
    member = cuda.blockIdx.y
    column = cuda.blockIdx.x * COLUMN_TILE + cuda.threadIdx.x
    partial = float32(0.0)
    if column < grad.shape[2]:
        for row in range(cuda.threadIdx.y, grad.shape[1], ROW_LANES):
            value = grad[member, row, column] if activation[member, row, column] > 0 else float32(0.0)
            out[member, row, column] = value
            partial += value
    lane_sums = cuda.shared.array((ROW_LANES, COLUMN_TILE), float32)
    _add_lanes_and_store(partial, lane_sums, member, column, bias_grad)
