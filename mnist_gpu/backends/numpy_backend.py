"""The NumPy reference backend: the executable spec every other backend is tested against.

Shapes: B batch, D=784 pixels, H1 and H2 hidden units, C=10 classes. Every op writes into an
`out=` buffer the caller allocated once (the interface: `Backend` in backends/interface.py).
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
        return np.asarray(array)

    def empty(self, shape, dtype=None):
        return np.empty(shape, dtype=dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype=dtype or self.dtype)

    def synchronize(self):
        """Host arrays: nothing is ever in flight."""

    def free_memory(self):
        return host_free_memory()

    def step_program(self, model, split, learning_rate, last_step, graph="auto", note=print):
        """Steps as the tutorial takes them: the batch drawn on the host, gathered, then model.train_step."""
        return HostSteps(model, split, learning_rate)

    # -- ops ------------------------------------------------------------------
    def gather_rows(self, table, indices, out):
        """out[i] = table[indices[i]]: a batch of images or labels picked from a whole set."""
        np.take(table, indices, axis=0, out=out)

    def gather_images(self, pixels, indices, out):
        """out[i] = pixels[indices[i]] * PIXEL_SCALE: a batch of uint8 images to float32, exactly as TF scales them."""
        np.multiply(pixels[indices], PIXEL_SCALE, out=out)

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out = op(a) @ op(b), where op transposes when asked (a view, never a copy)."""
        np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def matmul_sgd(self, a, b, parameter, learning_rate, trans_a=False, trans_b=False):
        """parameter -= learning_rate * op(a) @ op(b): a weight gradient GEMM and its SGD step together.

        The gradient op(a) @ op(b) is never kept, so the fast backends can do this in one GEMM.
        """
        gradient = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
        gradient *= self.dtype.type(learning_rate)
        parameter -= gradient

    def bias_relu(self, x, bias, out):
        """out[B, H] = max(x + bias, 0)."""
        np.add(x, bias, out=out)
        np.maximum(out, 0, out=out)

    def bias_add(self, x, bias, out):
        """out[B, C] = x + bias."""
        np.add(x, bias, out=out)

    def relu_backward(self, grad, activation, out):
        """out = grad where the ReLU's output was positive, else 0 (the ReLU's derivative at 0 is 0).

        A select, not a product: where the ReLU was off the result is 0 even if the gradient is NaN
        or infinite (grad * 0 would be NaN), as in every kernel. The spec's helper for
        relu_backward_bias_grad; no backend needs it alone.
        """
        np.copyto(out, np.where(activation > 0, grad, self.dtype.type(0)))

    def bias_grad(self, grad, out):
        """out[H] = sum over the batch of grad[B, H]."""
        np.sum(grad, axis=0, out=out)

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        """relu_backward then bias_grad of its result: the two steps back through a hidden layer."""
        self.relu_backward(grad, activation, out)
        self.bias_grad(out, bias_grad)

    def softmax_xent(self, logits, labels, grad_out):
        """Mean sparse softmax cross-entropy over the batch; writes d(mean loss)/d(logits) to grad_out.

        Stable: subtract each row's max before exp. grad = (softmax - onehot(labels)) / B.
        A label outside 0..C-1 makes the loss NaN (no one-hot for that row), never a bad index.
        """
        check_labels(labels)
        batch, classes = logits.shape
        rows = np.arange(batch)
        valid = (labels >= 0) & (labels < classes)
        safe_labels = np.where(valid, labels, 0)
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=grad_out)  # shifted logits
        shifted_target = np.where(valid, grad_out[rows, safe_labels], np.nan)
        np.exp(grad_out, out=grad_out)
        sums = grad_out.sum(axis=1, keepdims=True)
        losses = np.log(sums[:, 0]) - shifted_target  # -log softmax[label]
        np.divide(grad_out, sums * batch, out=grad_out)
        grad_out[rows[valid], labels[valid]] -= 1 / batch
        return losses.mean(dtype=self.dtype)

    def sgd_update(self, parameter, grad, learning_rate):
        """parameter -= learning_rate * grad, in place."""
        parameter -= self.dtype.type(learning_rate) * grad

    def in_top_k(self, logits, labels, k=1):
        """How many rows have their label among the top k, with TensorFlow's exact rules.

        A row counts when fewer than k classes score strictly higher than the label's logit
        (ties with the label count as correct); a row with any non-finite logit, or a label
        outside 0..C-1, counts as wrong.
        """
        check_labels(labels)
        batch, classes = logits.shape
        valid_label = (labels >= 0) & (labels < classes)
        target = logits[np.arange(batch), np.where(valid_label, labels, 0)]
        higher = (logits > target[:, None]).sum(axis=1)
        finite_row = np.isfinite(logits).all(axis=1)
        return int(np.count_nonzero(valid_label & finite_row & (higher < k)))
