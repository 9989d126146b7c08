"""Precision @ k with TensorFlow's exact rules, counted on the device for each of K members.

Shapes: logits [K, R, C=10], labels [R] int32 (every member sees the same rows), counts [K] int32
(accumulated with atomics). A row counts when fewer than k classes score strictly higher than the
label's logit (ties with the label count as correct). A row with any non-finite logit, or a label
outside 0..C-1, counts as wrong (TF's InTopK kernel).
Launch: one thread per (member, row), blocks_for(K * R) blocks of THREADS_PER_BLOCK. The counts are
integers, so the atomic adds give the same totals in any order.
"""
import math

from .numba_cuda import cuda


@cuda.jit(cache=True)
def in_top_k_kernel(logits, labels, k, counts):
    index = cuda.grid(1)
    members, rows, classes = logits.shape
    if index >= members * rows:
        return
    member = index // rows
    row = index - member * rows
    label = labels[row]
    if label < 0 or label >= classes:
        return
    target = logits[member, row, label]
    higher = 0
    for column in range(classes):
        value = logits[member, row, column]
        if not math.isfinite(value):
            return
        if value > target:
            higher += 1
    if higher < k:
        cuda.atomic.add(counts, member, 1)
