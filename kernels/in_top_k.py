"""Precision @ k with TensorFlow's exact rules, counted on the device.

Shapes: logits [B, C=10], labels [B] int32, count [1] int32 (accumulated with atomics).
A row counts when fewer than k classes score strictly higher than the label's logit (ties with
the label count as correct). A row with any non-finite logit, or a label outside 0..C-1,
counts as wrong (TF's InTopK kernel).
Launch: one thread per row, blocks_for(B) blocks of THREADS_PER_BLOCK. The count is an integer,
so the atomic adds give the same total in any order.
"""
import math

from .numba_cuda import cuda


@cuda.jit(cache=True)
def in_top_k_kernel(logits, labels, k, count):
    row = cuda.grid(1)
    if row >= logits.shape[0]:
        return
    classes = logits.shape[1]
    label = labels[row]
    if label < 0 or label >= classes:
        return
    target = logits[row, label]
    higher = 0
    for column in range(classes):
        value = logits[row, column]
        if not math.isfinite(value):
            return
        if value > target:
            higher += 1
    if higher < k:
        cuda.atomic.add(count, 0, 1)
