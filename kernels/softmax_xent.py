"""Fused softmax cross-entropy: stable softmax, per-row loss, the batch mean and the gradient.

Shapes: logits, grad [B, C=10]; labels [B] int32; mean_loss [1].
    loss[b] = log(sum_c exp(logits[b, c] - max_b)) - (logits[b, label] - max_b)
    grad[b, c] = (softmax[b, c] - onehot[b, c]) / B
    mean_loss[0] = sum_b loss[b] / B   (NaN if any label is outside 0..C-1, as in the NumPy spec)
Launch: ONE block of SOFTMAX_THREADS threads. Each thread owns rows thread, thread + 256, ...
(C=10 is too small to split a row across threads); the per-thread partial losses are then added
by a shared-memory tree, so the mean is computed on the device, in a fixed order (repeatable),
in the same launch. One block suffices: even B=10000 is only 100k exp() calls.
Fused: max, exp, sum, log, the loss, its mean and the gradient, in one launch that reads
the logits once (a softmax kernel then a loss kernel would read them three times and launch twice).
"""
import math

from .numba_cuda import cuda, float32

SOFTMAX_THREADS = 256  # a power of two for the tree reduction


@cuda.jit(cache=True)
def softmax_xent_kernel(logits, labels, grad, mean_loss):
    thread = cuda.threadIdx.x
    batch, classes = logits.shape
    inverse_batch = float32(1.0) / float32(batch)
    loss_sum = float32(0.0)  # this thread's rows
    for row in range(thread, batch, SOFTMAX_THREADS):
        row_max = logits[row, 0]
        for column in range(1, classes):
            if logits[row, column] > row_max:
                row_max = logits[row, column]
        exponential_sum = float32(0.0)
        for column in range(classes):
            exponential = math.exp(logits[row, column] - row_max)
            grad[row, column] = exponential
            exponential_sum += exponential
        scale = inverse_batch / exponential_sum
        for column in range(classes):
            grad[row, column] *= scale
        label = labels[row]
        if 0 <= label < classes:
            loss_sum += math.log(exponential_sum) - (logits[row, label] - row_max)
            grad[row, label] -= inverse_batch
        else:  # never index out of bounds; the NaN loss stops training with a message
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
        mean_loss[0] = partial_losses[0] * inverse_batch
