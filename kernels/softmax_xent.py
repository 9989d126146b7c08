"""Fused softmax cross-entropy for K members: stable softmax, per-row loss, each member's mean and gradient; a
member whose loss is not finite stops.

Shapes: logits, grad [K, B, C=10]; labels [K, B] int32; active [K] int32; losses [K].
    loss[k, b] = log(sum_c exp(logits[k, b, c] - max_kb)) - (logits[k, b, label] - max_kb)
    grad[k, b, c] = (softmax[k, b, c] - onehot[k, b, c]) / B
    losses[k] = sum_b loss[k, b] / B   (NaN if any label is outside 0..C-1, as in the NumPy spec)
    active[k] = 0 where losses[k] is not finite: the SGD kernels then leave member k as it is.
Launch: ONE block of SOFTMAX_THREADS threads per member (grid K). Each thread owns rows thread,
thread + 256, ... of its member (C=10 is too small to split a row across threads); the per-thread
partial losses are then added by a shared-memory tree, so each member's mean is computed on the
device, in a fixed order (repeatable, and the same whatever K is), in the same launch.
Fused: max, exp, sum, log, the loss, its mean and the gradient, in one launch that reads the
logits once.
"""
import math

from .numba_cuda import cuda, float32

SOFTMAX_THREADS = 256  # a power of two for the tree reduction


@cuda.jit(cache=True)
def softmax_xent_kernel(logits, labels, grad, active, losses):
    member = cuda.blockIdx.x
    thread = cuda.threadIdx.x
    _, batch, classes = logits.shape
    inverse_batch = float32(1.0) / float32(batch)
    loss_sum = float32(0.0)  # this thread's rows
    for row in range(thread, batch, SOFTMAX_THREADS):
        row_max = logits[member, row, 0]
        for column in range(1, classes):
            if logits[member, row, column] > row_max:
                row_max = logits[member, row, column]
        exponential_sum = float32(0.0)
        for column in range(classes):
            exponential = math.exp(logits[member, row, column] - row_max)
            grad[member, row, column] = exponential
            exponential_sum += exponential
        scale = inverse_batch / exponential_sum
        for column in range(classes):
            grad[member, row, column] *= scale
        label = labels[member, row]
        if 0 <= label < classes:
            loss_sum += math.log(exponential_sum) - (logits[member, row, label] - row_max)
            grad[member, row, label] -= inverse_batch
        else:  # never index out of bounds; the NaN loss stops the member with a message
            loss_sum += float32(math.nan)
    partial_losses = cuda.shared.array(SOFTMAX_THREADS, float32)
    partial_losses[thread] = loss_sum
    cuda.syncthreads()
    stride = SOFTMAX_THREADS // 2
    while stride > 0:
        if thread < stride:
            partial_losses[thread] += partial_losses[thread + stride]
        cuda.syncthreads()
        stride //= 2
    if thread == 0:
        mean = partial_losses[0] * inverse_batch
        losses[member] = mean
        if not math.isfinite(mean):  # the member stops: from this step on, the SGD kernels skip it
            active[member] = 0
