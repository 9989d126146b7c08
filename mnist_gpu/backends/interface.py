"""The backend interface: `Backend`, what the model needs from a backend; numpy_backend.py is its spec.

Shapes: B batch, D=784 pixels, H hidden units (H1 or H2), C=10 classes. Every op writes into
`out=` buffers the caller allocated once, so a training step allocates nothing.
"""
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """What the model needs from a backend: arrays it owns, and one method per kernel.

    Arrays are the backend's own (NumPy on the host, CuPy on a GPU); `to_host` copies one back.
    Scalars that ops return (the loss, a count) may still be on the device: `float()` / `int()`
    of them waits for the work that produces them, and only that is a host synchronisation.
    """

    name: str  # "numpy", "cpu" or "cuda"
    dtype: object  # numpy.dtype("float32"): the floating-point type of every array the model makes
    graph_modes: tuple  # the --cuda_graph modes its step program tells apart: ("off", "on") on cuda, () elsewhere

    def asarray(self, array, dtype=None):
        """`array` as the backend's contiguous array (a copy, unless it is one already): floats become
        float32, integers keep their type."""

    def to_host(self, array):
        """A NumPy copy of a backend array, after everything queued that writes it has finished."""

    def empty(self, shape, dtype=None):
        """An uninitialised float32 (or `dtype`) array."""

    def zeros(self, shape, dtype=None):
        """A zeroed float32 (or `dtype`) array."""

    def synchronize(self):
        """Wait until everything queued so far has finished."""

    def free_memory(self):
        """Bytes this backend's arrays can still take (host RAM, or the GPU's free memory)."""

    def step_program(self, model, split, learning_rate, last_step, graph="auto", note=print):
        """The run's way to take training steps: an object with run(step) -> the step's loss (float() reads it)
        and position(step) -> the data set's position after that step's batch (for its checkpoint).

        The host backends draw each batch and call model.train_step (steps.HostSteps); the cuda
        backend replays a prepared program or a CUDA graph (cuda_program.py). `last_step` is the
        run's --max_steps, `graph` its --cuda_graph, `note` where a line about the chosen way goes.
        """

    def gather_rows(self, table, indices, out):
        """out[b] = table[indices[b]]; `indices` [B] are host integers."""

    def gather_images(self, pixels, indices, out):
        """out[b] = pixels[indices[b]] * PIXEL_SCALE: uint8 [N, D] rows to float32 [B, D] in one pass."""

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out = op(a) @ op(b), op transposing when asked (a view, never a copy)."""

    def matmul_sgd(self, a, b, parameter, learning_rate, trans_a=False, trans_b=False):
        """parameter -= learning_rate * op(a) @ op(b): a weight gradient and its SGD step, never stored."""

    def bias_relu(self, x, bias, out):
        """out[B, H] = max(x + bias, 0); out may be x."""

    def bias_add(self, x, bias, out):
        """out[B, C] = x + bias; out may be x."""

    def bias_grad(self, grad, out):
        """out[H] = the column sums of grad[B, H]."""

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        """out = grad where activation > 0 else 0 (out may be grad), and bias_grad[H] = its column sums."""

    def softmax_xent(self, logits, labels, grad_out):
        """Mean softmax cross-entropy of logits [B, C] against integer labels [B] (a backend scalar).

        Writes d(mean loss)/d(logits) = (softmax - onehot) / B into grad_out. A label outside
        0..C-1 makes the loss NaN, never an out-of-bounds access.
        """

    def sgd_update(self, parameter, grad, learning_rate):
        """parameter -= learning_rate * grad, in place."""

    def in_top_k(self, logits, labels, k=1):
        """How many rows have their integer label among the top k (TF's rules; a backend scalar)."""


def check_labels(labels):
    """Labels index the classes: refuse a float (or other non-integer) array in one line."""
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array (int32), got {labels.dtype}")
