"""The NumPy reference backend: the executable spec every other backend is tested against.

Shapes: K members, B batch, D=784 pixels, H1 and H2 hidden units, C=10 classes. Every op takes the
member axis first and writes into an `out=` buffer the caller allocated once (the interface:
`Backend` in backends/interface.py). Batched NumPy computes each member's slice exactly as it
would compute that member alone (np.matmul calls BLAS once per member; sums run in the same
order), so member k of a population is bit for bit its own solo run.
"""
import numpy as np

from ..memory import host_free_memory
from ..model import PIXEL_SCALE
from ..steps import HostSteps
from .interface import check_labels


class NumpyBackend:
    """Reference implementation of every op, in plain NumPy on the host."""

    name = "numpy"
    graph_modes = ()  # steps are taken op by op on the host (steps.HostSteps)

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)  # float32; float64 only for finite-difference tests

    # -- arrays ---------------------------------------------------------------
    def asarray(self, array, dtype=None):
        array = np.asarray(array)
        if dtype is None:
            dtype = self.dtype if array.dtype.kind == "f" else array.dtype  # like xp.asarray, floats become float32
        return np.ascontiguousarray(array, dtype=dtype)

    def to_host(self, array):
        return np.array(array)

    def empty(self, shape, dtype=None):
        return np.empty(shape, dtype=dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype=dtype or self.dtype)

    def synchronize(self):
        """Host arrays: nothing is ever in flight."""

    def free_memory(self):
        return host_free_memory()

    def step_program(self, model, split, orders, last_step, graph="auto", note=print):
        """Steps as the tutorial takes them: each member's batch drawn on the host, gathered, then model.train_step."""
        return HostSteps(model, split, orders)

    def upload(self, host, out):
        out[...] = host

    # -- ops ------------------------------------------------------------------
    # Each op takes the member axis first. A [K] vector that multiplies members' arrays is reshaped to
    # [K, 1, 1] (or [K, 1]) so that NumPy broadcasts it over each member's own rows and columns.
    def gather_rows(self, table, indices, out):
        """out[...] = table[indices]: a batch of labels (or rows) picked from a whole set, for each member."""
        np.take(table, indices, axis=0, out=out)

    def gather_images(self, pixels, indices, out):
        """out[...] = pixels[indices] * PIXEL_SCALE: uint8 images to float32, exactly as TF scales them."""
        np.multiply(pixels[indices], PIXEL_SCALE, out=out)

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out[k] = op(a[k]) @ op(b[k]); a 2-D `a` is every member's (np.matmul broadcasts it)."""
        np.matmul(transposed(a) if trans_a else a, transposed(b) if trans_b else b, out=out)

    def matmul_sgd(self, a, b, parameter, learning_rates, active, trans_a=False, trans_b=False):
        """parameter[k] -= learning_rates[k] * op(a[k]) @ op(b[k]) where active[k]: a weight gradient and its step.

        A select, not a product: a stopped member is left as it is, even where its gradient is NaN.
        """
        gradient = np.matmul(transposed(a) if trans_a else a, transposed(b) if trans_b else b)
        gradient *= self.rates(learning_rates)[:, None, None]
        subtract_where_active(parameter, gradient, active)

    def bias_relu(self, x, bias, out):
        """out[k, b, h] = max(x[k, b, h] + bias[k, h], 0)."""
        np.add(x, bias[:, None, :], out=out)
        np.maximum(out, 0, out=out)

    def bias_add(self, x, bias, out):
        """out[k, b, c] = x[k, b, c] + bias[k, c]."""
        np.add(x, bias[:, None, :], out=out)

    def relu_backward(self, grad, activation, out):
        """out = grad where the ReLU's output was positive, else 0 (the ReLU's derivative at 0 is 0).

        A select, not a product: where the ReLU was off the result is 0 even if the gradient is NaN
        or infinite (grad * 0 would be NaN), as in every kernel. The spec's helper for
        relu_backward_bias_grad; no backend needs it alone.
        """
        np.copyto(out, np.where(activation > 0, grad, self.dtype.type(0)))

    def bias_grad(self, grad, out):
        """out[k, h] = sum over the batch of grad[k, b, h]."""
        np.sum(grad, axis=1, out=out)

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        """relu_backward then bias_grad of its result: the two steps back through a hidden layer."""
        self.relu_backward(grad, activation, out)
        self.bias_grad(out, bias_grad)

    def softmax_xent(self, logits, labels, grad_out, active):
        """Each member's mean sparse softmax cross-entropy over its batch; writes d(mean loss)/d(logits) to grad_out.

        Stable: subtract each row's max before exp. grad = (softmax - onehot(labels)) / B. A label
        outside 0..C-1 makes the loss NaN (no one-hot for that row), never a bad index. A member
        whose loss is not finite stops: active becomes 0.
        """
        check_labels(labels)
        members, batch, classes = logits.shape
        valid = (labels >= 0) & (labels < classes)
        target = np.arange(members)[:, None], np.arange(batch), np.where(valid, labels, 0)  # [K, B] label cells
        np.subtract(logits, logits.max(axis=2, keepdims=True), out=grad_out)  # shifted logits
        shifted_target = np.where(valid, grad_out[target], np.nan)
        np.exp(grad_out, out=grad_out)
        sums = grad_out.sum(axis=2, keepdims=True)
        losses = np.log(sums[:, :, 0]) - shifted_target  # -log softmax[label]
        np.divide(grad_out, sums * batch, out=grad_out)
        grad_out[target] -= np.where(valid, self.dtype.type(1 / batch), self.dtype.type(0))  # x - 0 is x
        mean_losses = losses.mean(axis=1, dtype=self.dtype)
        active &= np.isfinite(mean_losses)
        return mean_losses

    def sgd_update(self, parameter, grad, learning_rates, active):
        """parameter[k] -= learning_rates[k] * grad[k], in place, where active[k] (a select: see matmul_sgd)."""
        subtract_where_active(parameter, self.rates(learning_rates)[:, None] * grad, active)

    def in_top_k(self, logits, labels, k=1):
        """How many rows each member has its label among the top k, with TensorFlow's exact rules.

        A row counts when fewer than k classes score strictly higher than the label's logit
        (ties with the label count as correct); a row with any non-finite logit, or a label
        outside 0..C-1, counts as wrong.
        """
        check_labels(labels)
        _, rows, classes = logits.shape
        valid_label = (labels >= 0) & (labels < classes)
        target = logits[:, np.arange(rows), np.where(valid_label, labels, 0)]  # [K, R]
        higher = (logits > target[:, :, None]).sum(axis=2)
        finite_row = np.isfinite(logits).all(axis=2)
        return np.count_nonzero(valid_label & finite_row & (higher < k), axis=1).astype(np.int32)

    def rates(self, learning_rates):
        """The learning rates as this backend's float type, one per member."""
        return np.asarray(learning_rates, self.dtype)


def subtract_where_active(parameter, update, active):
    """parameter[k] -= update[k] for each member with active[k] != 0; the others are left exactly as they are.

    NumPy's where= runs a masked loop at half the speed of the plain one (58 against 26 us for W1 of one
    member), so it is taken only while some member is stopped.
    """
    if np.count_nonzero(active) == active.size:  # a quarter of active.all()'s time
        parameter -= update
    else:
        np.subtract(parameter, update, out=parameter, where=(active != 0).reshape(-1, *[1] * (parameter.ndim - 1)))


def transposed(array):
    """The matrix transpose of each member's matrix (the last two axes): a view."""
    return array.swapaxes(-1, -2)
