"""Fused CPU kernels (Numba njit) for the `cpu` backend: the NumPy spec's element-wise work in one pass.

Shapes: B batch, D=784, H1, H2, C=10. NumPy spends most of a small step outside its GEMMs:
each `np.add`/`np.maximum`/mask is a separate pass over memory plus a temporary. Each function
here makes ONE pass with no temporaries; `cache=True` keeps the compiled code between runs.
Loops take one row at a time (`x[row]`) so LLVM vectorises the inner loop. Results go first to a
local scratch row (and column sums to a local accumulator), then to `out`: when `out` may alias an
input (the model calls these in place) LLVM otherwise falls back to scalar code, measured 4-30x
slower. Slice assignment (`out[row] = ...`) costs ~100 ns a call in Numba, so copies are loops.
Nothing here touches CUDA.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

ZERO = np.float32(0.0)
CACHE_LINE = 64  # bytes
# A gather asks for row b + 16 while copying row b (images: 4 to 32 measured alike; label rows,
# 4 bytes each, take so little time to copy that 4 ahead is too close: 13 us at B=1000, 16 ahead 9 us).
ROWS_AHEAD = 16


@intrinsic
def prefetch(typing_context, address):
    """LLVM's prefetch hint for one byte address (read, keep in all caches): never faults, never waits."""
    def codegen(context, builder, signature, arguments):
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32])
        llvm_prefetch = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer], function_type)
        read, keep_in_all_caches, data_cache = (ir.Constant(int32, value) for value in (0, 3, 1))
        address = builder.inttoptr(arguments[0], byte_pointer)
        builder.call(llvm_prefetch, [address, read, keep_in_all_caches, data_cache])
        return context.get_dummy_value()

    return types.void(types.uintp), codegen


@njit(cache=True)
def prefetch_row(table, row):
    """Start loading every cache line of table[row] (a row of a C-contiguous 2-D array)."""
    start = table.ctypes.data + row * table.strides[0]
    end = start + table.shape[1] * table.itemsize
    for address in range(start - start % CACHE_LINE, end, CACHE_LINE):
        prefetch(address)


@njit(cache=True)
def copy_row(source, target):
    for column in range(source.shape[0]):
        target[column] = source[column]


# Gathers: a training batch is rows at random places in a table far larger than the caches, so
# each row is a wait on DRAM. Asking for rows a few ahead overlaps those waits (measured at
# B=1000 after a step's GEMMs: 267 -> 171 us for the images; the CPU's own prefetcher only
# follows sequential addresses).
@njit(cache=True)
def gather_rows(table, indices, out):
    """out[b, :] = table[indices[b], :] (table [N, W], out [B, W])."""
    for row in range(min(ROWS_AHEAD, indices.shape[0])):
        prefetch_row(table, indices[row])
    for row in range(indices.shape[0]):
        if row + ROWS_AHEAD < indices.shape[0]:
            prefetch_row(table, indices[row + ROWS_AHEAD])
        copy_row(table[indices[row]], out[row])


@njit(cache=True)
def gather_images(pixels, indices, scale, out):
    """Fused gather + conversion: out[b, :] = float32(pixels[indices[b], :]) * scale (pixels uint8)."""
    for row in range(min(ROWS_AHEAD, indices.shape[0])):
        prefetch_row(pixels, indices[row])
    for row in range(indices.shape[0]):
        if row + ROWS_AHEAD < indices.shape[0]:
            prefetch_row(pixels, indices[row + ROWS_AHEAD])
        source, target = pixels[indices[row]], out[row]
        for column in range(source.shape[0]):
            target[column] = np.float32(source[column]) * scale


@njit(cache=True)
def bias_relu(x, bias, out):
    """Fused: out = max(x + bias, 0); NaN passes through like np.maximum."""
    scratch = np.empty(x.shape[1], np.float32)
    for row in range(x.shape[0]):
        x_row = x[row]
        for column in range(scratch.shape[0]):
            value = x_row[column] + bias[column]
            scratch[column] = ZERO if value < ZERO else value
        copy_row(scratch, out[row])


@njit(cache=True)
def bias_add(x, bias, out):
    scratch = np.empty(x.shape[1], np.float32)
    for row in range(x.shape[0]):
        x_row = x[row]
        for column in range(scratch.shape[0]):
            scratch[column] = x_row[column] + bias[column]
        copy_row(scratch, out[row])


@njit(cache=True)
def bias_grad(grad, out):
    """Column sums, accumulated row by row so the inner loop runs along memory."""
    sums = np.zeros(grad.shape[1], np.float32)
    for row in range(grad.shape[0]):
        grad_row = grad[row]
        for column in range(sums.shape[0]):
            sums[column] += grad_row[column]
    copy_row(sums, out)


@njit(cache=True)
def relu_backward_bias_grad(grad, activation, out, bias_grad):
    """Fused: mask the gradient by the ReLU and sum its columns in the same pass."""
    scratch = np.empty(grad.shape[1], np.float32)
    sums = np.zeros(grad.shape[1], np.float32)
    for row in range(grad.shape[0]):
        grad_row, activation_row = grad[row], activation[row]
        for column in range(scratch.shape[0]):
            scratch[column] = grad_row[column] if activation_row[column] > ZERO else ZERO
            sums[column] += scratch[column]
        copy_row(scratch, out[row])
    copy_row(sums, bias_grad)


@njit(cache=True)
def softmax_xent(logits, labels, grad):
    """Fused: stable softmax, per-row loss and its mean, gradient (softmax - onehot) / B.

    A label outside 0..C-1 makes the loss NaN, as in the NumPy spec.
    """
    batch, classes = logits.shape
    inverse_batch = np.float32(1.0) / np.float32(batch)
    loss_sum = ZERO
    for row in range(batch):
        row_max = logits[row, 0]
        for column in range(1, classes):
            if logits[row, column] > row_max:
                row_max = logits[row, column]
        exponential_sum = ZERO
        for column in range(classes):
            exponential = np.exp(logits[row, column] - row_max)
            grad[row, column] = exponential
            exponential_sum += exponential
        scale = inverse_batch / exponential_sum
        for column in range(classes):
            grad[row, column] *= scale
        label = labels[row]
        if 0 <= label < classes:
            loss_sum += np.log(exponential_sum) - (logits[row, label] - row_max)
            grad[row, label] -= inverse_batch
        else:  # never index out of bounds; the NaN loss stops training with a message
            loss_sum += np.float32(np.nan)
    return loss_sum * inverse_batch


@njit(cache=True)
def sgd_update(parameters, gradients, learning_rate):
    for index in range(parameters.shape[0]):
        parameters[index] -= learning_rate * gradients[index]


@njit(cache=True)
def in_top_k(logits, labels, k):
    """TensorFlow's in_top_k count: see NumpyBackend.in_top_k for the rules."""
    batch, classes = logits.shape
    count = 0
    for row in range(batch):
        label = labels[row]
        if label < 0 or label >= classes:
            continue
        target = logits[row, label]
        higher = 0
        finite = True
        for column in range(classes):
            value = logits[row, column]
            if not np.isfinite(value):
                finite = False
                break
            if value > target:
                higher += 1
        if finite and higher < k:
            count += 1
    return count


# -- Members -----------------------------------------------------------------------------------------------
# A population's arrays carry the member axis first: [K, B, H]. The *_members kernels below run each
# member's slice through the one-member kernel above, one member per thread (numba's prange; the
# threads share nothing), so member k computes exactly what a population of one does. The backend
# calls the one-member kernels directly for K = 1, where a parallel region would only cost time.
@njit(cache=True, parallel=True)
def gather_images_members(pixels, indices, scale, out):
    for member in prange(indices.shape[0]):
        gather_images(pixels, indices[member], scale, out[member])


@njit(cache=True, parallel=True)
def gather_rows_members(table, indices, out):
    for member in prange(indices.shape[0]):
        gather_rows(table, indices[member], out[member])


@njit(cache=True, parallel=True)
def bias_relu_members(x, bias, out):
    for member in prange(x.shape[0]):
        bias_relu(x[member], bias[member], out[member])


@njit(cache=True, parallel=True)
def bias_add_members(x, bias, out):
    for member in prange(x.shape[0]):
        bias_add(x[member], bias[member], out[member])


@njit(cache=True, parallel=True)
def bias_grad_members(grad, out):
    for member in prange(grad.shape[0]):
        bias_grad(grad[member], out[member])


@njit(cache=True, parallel=True)
def relu_backward_bias_grad_members(grad, activation, out, bias_grad):
    for member in prange(grad.shape[0]):
        relu_backward_bias_grad(grad[member], activation[member], out[member], bias_grad[member])


@njit(cache=True)
def softmax_xent_member(logits, labels, grad, active, losses, member):
    """One member's softmax_xent; a member whose loss is not finite stops (active becomes 0)."""
    losses[member] = softmax_xent(logits[member], labels[member], grad[member])
    if not np.isfinite(losses[member]):
        active[member] = 0


@njit(cache=True, parallel=True)
def softmax_xent_members(logits, labels, grad, active, losses):
    for member in prange(logits.shape[0]):
        softmax_xent_member(logits, labels, grad, active, losses, member)


@njit(cache=True, parallel=True)
def sgd_update_members(parameters, gradients, learning_rates, active):
    """Each member that trains (active) by its own rate; a stopped one is left as it is."""
    for member in prange(parameters.shape[0]):
        if active[member] != 0:
            sgd_update(parameters[member], gradients[member], learning_rates[member])


@njit(cache=True, parallel=True)
def in_top_k_members(logits, labels, k, counts):
    for member in prange(logits.shape[0]):
        counts[member] = in_top_k(logits[member], labels, k)
