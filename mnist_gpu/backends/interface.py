"""The backend interface: `Backend`, what the model needs from a backend; numpy_backend.py is its spec.

Shapes: K members, B batch, D=784 pixels, H hidden units (H1 or H2), C=10 classes. Every op takes
the member axis first and treats each member as a network of its own (member k of K computes
exactly what a population of one would). Every op writes into `out=` buffers the caller
allocated once, so a cpu or cuda training step allocates nothing but [K] results (the numpy spec's
matmul_sgd makes its gradient: readable NumPy).
"""
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """What the model needs from a backend: arrays it owns, and one method per kernel.

    Arrays are the backend's own (NumPy on the host, CuPy on a GPU); `to_host` copies one back.
    Results that ops return (the losses, the counts: [K]) may still be being computed on the
    device: `to_host` of them waits for the work that produces them, and only that is a host
    synchronisation.
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

    def step_program(self, model, split, orders, last_step, graph="auto", note=print):
        """The run's way to take training steps (steps.HostSteps on the host backends; cuda_program.StepProgram).

        `split` is the training split on the backend (steps.DeviceSplit), `orders` the K members'
        DataSets, whose batches (TF's order, each member its own) the steps draw. The object has
        run(step), which runs the next step; losses(first, last), the members' losses of those
        steps as a host array [last - first, K]; position(step), each member's data position after
        that step's batch (for its checkpoint); describe(), how the steps run. `last_step` is the
        run's --max_steps, `graph` its --cuda_graph, `note` where a line about the chosen way goes.
        """

    def gather_rows(self, table, indices, out):
        """out[...] = table[indices]: `indices` are host integers of any shape ([K, B] or [R]), out their shape."""

    def gather_images(self, pixels, indices, out):
        """out[...] = pixels[indices] * PIXEL_SCALE: uint8 rows [N, D] to float32 [..., D] in one pass."""

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out[k] = op(a[k]) @ op(b[k]) for each member k, op transposing the last two axes when asked (a flag or a
        view, never a copy); a 2-D `a` [M, N] is shared by every member (evaluation's images)."""

    def matmul_sgd(self, a, b, parameter, learning_rates, active, trans_a=False, trans_b=False):
        """parameter[k] -= learning_rates[k] * op(a[k]) @ op(b[k]) for each member k with active[k] != 0: a weight
        gradient and its SGD step; a stopped member's parameter is left exactly as it is. `learning_rates`: host
        float32 [K]; `active`: the model's [K] int32, on the backend."""

    def bias_relu(self, x, bias, out):
        """out[k, b, h] = max(x[k, b, h] + bias[k, h], 0); out may be x."""

    def bias_add(self, x, bias, out):
        """out[k, b, c] = x[k, b, c] + bias[k, c]; out may be x."""

    def bias_grad(self, grad, out):
        """out[k, h] = the sum over the batch of grad[k, b, h]."""

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        """out = grad where activation > 0 else 0 (out may be grad), and bias_grad[k, h] = its sums over the batch."""

    def softmax_xent(self, logits, labels, grad_out, active):
        """Each member's mean softmax cross-entropy of logits [K, B, C] against integer labels [K, B]: [K], on the
        backend.

        Writes d(mean loss)/d(logits) = (softmax - onehot) / B into grad_out, and stops a member
        whose loss is not finite: active[k] becomes 0 (from this step on the SGD ops skip it). A
        label outside 0..C-1 makes the loss NaN, never an out-of-bounds access.
        """

    def sgd_update(self, parameter, grad, learning_rates, active):
        """parameter[k] -= learning_rates[k] * grad[k], in place, for each member with active[k] != 0 (the others
        are left exactly as they are)."""

    def in_top_k(self, logits, labels, k=1):
        """How many rows each member has its integer label among the top k, logits [K, R, C] against labels [R]
        (TF's rules): [K] int32, on the backend."""

    def upload(self, host, out):
        """Copy the host array into the backend array `out`, in order with the work queued before it."""


def check_labels(labels):
    """Labels index the classes: refuse a float (or other non-integer) array in one line."""
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array (int32), got {labels.dtype}")
