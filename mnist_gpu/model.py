"""The tutorial's model (mnist.py): inference, loss, training, evaluation, with hand-written backprop, for K members.

Shapes: K members, B batch, D=784 pixels, H1 and H2 hidden units, C=10 classes. A model holds K
networks of the same shape, each with its own variables and learning rate: every variable,
activation and gradient carries a leading member axis, and member k computes exactly what a
network of its own would (the tutorial's run is a population of one, K = 1):
    hidden1 = relu(images @ hidden1/weights + hidden1/biases)          [K, B, H1]
    hidden2 = relu(hidden1 @ hidden2/weights + hidden2/biases)         [K, B, H2]
    logits  = hidden2 @ softmax_linear/weights + softmax_linear/biases [K, B, C]
In training each member has its own batch (images [K, B, D]); in evaluation every member sees the
same examples (images [R, D], shared). Everything runs through a backend (the interface:
backends/interface.py; the spec: backends/numpy_backend.py), so this file is the same for NumPy,
the cpu kernels and CUDA.
"""
import copy
import math

import numpy as np

NUM_CLASSES = 10
IMAGE_SIZE = 28
IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE
PIXEL_SCALE = np.float32(1.0 / 255.0)  # uint8 pixels -> [0, 1]: TF's input_data multiplies by 1/255 in float32
LAYERS = ("hidden1", "hidden2", "softmax_linear")
# Every run starts near ln 10 = 2.30 (ten classes, equally likely). A loss above ten times that at
# two loss reads in a row (100 steps apart) means training has blown up: a learning run is below
# 2.3 within a few hundred steps and never comes back above 23.
DIVERGED_LOSS = 10 * math.log(NUM_CLASSES)
EVAL_ROWS = 5000  # examples an evaluation computes at a time (evaluation.do_eval): far fewer calls than B at a time
EVAL_BUFFER_BYTES = 64 * 2 ** 20  # ... unless the members' buffers for that many rows would pass this


def variable_shapes(hidden1_units, hidden2_units):
    """{TF variable name: shape} of one network, in the tutorial's order."""
    sizes = (IMAGE_PIXELS, hidden1_units, hidden2_units, NUM_CLASSES)
    shapes = {}
    for layer, fan_in, fan_out in zip(LAYERS, sizes, sizes[1:], strict=False):
        shapes[f"{layer}/weights"] = (fan_in, fan_out)
        shapes[f"{layer}/biases"] = (fan_out,)
    return shapes


def truncated_normal(generator, shape, stddev):
    """Normal(0, stddev) float32 samples, re-drawing any beyond 2 stddev (tf.truncated_normal)."""
    values = generator.standard_normal(shape, dtype=np.float32)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = generator.standard_normal(np.count_nonzero(outside), dtype=np.float32)
        outside = np.abs(values) > 2
    return values * np.float32(stddev)


def initial_variables(hidden1_units, hidden2_units, seed=None):
    """One network's host float32 variables: weights truncated normal with stddev 1/sqrt(fan_in), biases zero."""
    generator = np.random.default_rng(seed)
    variables = {}
    for name, shape in variable_shapes(hidden1_units, hidden2_units).items():
        if name.endswith("/weights"):
            variables[name] = truncated_normal(generator, shape, 1.0 / math.sqrt(shape[0]))
        else:
            variables[name] = np.zeros(shape, np.float32)
    return variables


def stacked(members_variables):
    """[{name: array}, ...] of K networks -> {name: array [K, ...]}: the members' variables along a leading axis."""
    return {name: np.stack([variables[name] for variables in members_variables])
            for name in members_variables[0]}


def _row_bytes(hidden1_units, hidden2_units):
    """Bytes a batch row takes per member: its float32 image, activations and their gradients."""
    return 4 * (IMAGE_PIXELS + 2 * (hidden1_units + hidden2_units + NUM_CLASSES))


def evaluation_rows(batch_size, hidden1_units, hidden2_units, members=1):
    """Rows an evaluation (or a prediction) computes at a time: EVAL_ROWS, fewer for very wide layers or many
    members, never < B."""
    row_bytes = 4 * IMAGE_PIXELS + members * (_row_bytes(hidden1_units, hidden2_units) - 4 * IMAGE_PIXELS)
    return max(batch_size, min(EVAL_ROWS, EVAL_BUFFER_BYTES // row_bytes))


def parameter_count(hidden1_units, hidden2_units):
    return sum(math.prod(shape) for shape in variable_shapes(hidden1_units, hidden2_units).values())


def memory_needed(hidden1_units, hidden2_units, batch_size, members=1):
    """About how many bytes a population's model needs: variables, the copies a checkpoint makes, batch buffers.

    Per member: its variables three times (the model's, a host copy, the checkpoint being written)
    and training's batch buffers; shared: evaluation's buffers for its rows. (memory.py adds the data.)
    """
    rows = evaluation_rows(batch_size, hidden1_units, hidden2_units, members)
    per_member = 4 * 3 * parameter_count(hidden1_units, hidden2_units) + batch_size * _row_bytes(hidden1_units,
                                                                                                   hidden2_units)
    evaluation = rows * (4 * IMAGE_PIXELS + members * (_row_bytes(hidden1_units, hidden2_units) - 4 * IMAGE_PIXELS))
    return members * per_member + evaluation


class Model:
    """K networks' variables [K, ...], their learning rates, bias gradients and every per-batch buffer, on one backend.

    `variables`: {TF name: host array [K, ...]} (model.stacked makes one from K networks'); `learning_rates`:
    one per member. `active` [K] (int32, on the backend) is 1 while a member trains: a member whose
    loss is not finite is stopped at that very step by the loss op (active becomes 0), the trainer
    stops members too (a loss that blew up; pruning), and the SGD ops leave a stopped member's
    variables exactly as they are.
    """

    def __init__(self, backend, variables, batch_size, learning_rates, global_step=0, active=None):
        self.backend = backend
        self.global_step = global_step
        host = {name: np.asarray(value) for name, value in variables.items()}
        self.members = host["hidden1/weights"].shape[0]
        self.learning_rates = np.asarray(learning_rates, np.float32).reshape(self.members)  # host floats: ops take them
        # Copies in the tutorial's order: the model never shares the caller's arrays.
        self.variables = {name: backend.asarray(value.copy()) for name, value in host.items()}
        # Bias gradients live here; a weight gradient goes to its SGD step inside matmul_sgd (the cuda backend
        # keeps it in a scratch buffer between its GEMM and its SGD kernel).
        self.bias_gradients = {name: backend.zeros(value.shape) for name, value in host.items()
                               if name.endswith("/biases")}
        self.active = backend.asarray(np.ones(self.members, np.int32) if active is None
                                      else np.asarray(active, np.int32))
        self._allocate_batch_buffers(batch_size)

    @property
    def hidden_units(self):
        """(H1, H2)."""
        return self.variables["hidden1/biases"].shape[1], self.variables["hidden2/biases"].shape[1]

    def _allocate_batch_buffers(self, batch_size):
        """Activations (kept for backprop) and their gradients for batches of batch_size rows per member."""
        backend, members = self.backend, self.members
        self.batch_size = batch_size
        hidden1_units, hidden2_units = self.hidden_units
        self.hidden1 = backend.empty((members, batch_size, hidden1_units))
        self.hidden2 = backend.empty((members, batch_size, hidden2_units))
        self.logits = backend.empty((members, batch_size, NUM_CLASSES))
        # relu_backward_bias_grad masks each activation gradient in place.
        self.grad_logits = backend.empty((members, batch_size, NUM_CLASSES))
        self.grad_hidden2 = backend.empty((members, batch_size, hidden2_units))
        self.grad_hidden1 = backend.empty((members, batch_size, hidden1_units))

    def resized(self, batch_size):
        """A model for batches of batch_size rows that SHARES these variables (evaluation, prediction)."""
        other = copy.copy(self)
        other._allocate_batch_buffers(batch_size)
        return other

    def host_variables(self):
        """{name: host float32 copy [K, ...]} of every variable."""
        return {name: self.backend.to_host(value) for name, value in self.variables.items()}

    def set_active(self, active):
        """Which members train from the next step on ([K] of 0 and 1): the trainer stops diverged or pruned ones."""
        self.backend.upload(np.asarray(active, np.int32), self.active)


def inference(model, images):
    """Forward pass: images [K, B, D] (each member its own) or [R, D] (shared) -> logits [K, B, C]; keeps the hidden
    activations for backprop."""
    backend, variables = model.backend, model.variables
    backend.matmul(images, variables["hidden1/weights"], out=model.hidden1)
    backend.bias_relu(model.hidden1, variables["hidden1/biases"], out=model.hidden1)
    backend.matmul(model.hidden1, variables["hidden2/weights"], out=model.hidden2)
    backend.bias_relu(model.hidden2, variables["hidden2/biases"], out=model.hidden2)
    backend.matmul(model.hidden2, variables["softmax_linear/weights"], out=model.logits)
    backend.bias_add(model.logits, variables["softmax_linear/biases"], out=model.logits)
    return model.logits


def loss(model, logits, labels):
    """Each member's mean softmax cross-entropy ([K], on the backend: backend.to_host reads it); sets
    model.grad_logits, and stops (model.active) a member whose loss is not finite."""
    return model.backend.softmax_xent(logits, labels, grad_out=model.grad_logits, active=model.active)


def training(model, images):
    """Backprop from model.grad_logits (set by `loss`), plain SGD at each member's learning rate; global_step += 1.

    As in TF's minimize(), every gradient is computed from the variables as they were before
    this step: a layer's weights are updated only after their last use (the GEMM that carries
    the gradient back to the layer below). Each weight gradient op(a) @ op(b) goes to its update
    (matmul_sgd: W -= lr * input^T @ grad_output; on cpu one GEMM per member, on cuda a gradient
    GEMM for all members, then the SGD kernel).
    A member that does not train (model.active) keeps its variables exactly: the SGD ops skip it (a
    product with its gradient could be NaN: inf activations times a zero gradient).
    """
    backend, variables, bias_gradients = model.backend, model.variables, model.bias_gradients
    rates, active = model.learning_rates, model.active
    # softmax_linear: logits = hidden2 @ W + b
    backend.bias_grad(model.grad_logits, out=bias_gradients["softmax_linear/biases"])
    backend.matmul(model.grad_logits, variables["softmax_linear/weights"], out=model.grad_hidden2, trans_b=True)
    backend.matmul_sgd(model.hidden2, model.grad_logits, variables["softmax_linear/weights"], rates, active,
                       trans_a=True)
    # hidden2: hidden2 = relu(hidden1 @ W + b)
    backend.relu_backward_bias_grad(model.grad_hidden2, model.hidden2, out=model.grad_hidden2,
                                    bias_grad=bias_gradients["hidden2/biases"])
    backend.matmul(model.grad_hidden2, variables["hidden2/weights"], out=model.grad_hidden1, trans_b=True)
    backend.matmul_sgd(model.hidden1, model.grad_hidden2, variables["hidden2/weights"], rates, active, trans_a=True)
    # hidden1: hidden1 = relu(images @ W + b); no gradient flows into the images
    backend.relu_backward_bias_grad(model.grad_hidden1, model.hidden1, out=model.grad_hidden1,
                                    bias_grad=bias_gradients["hidden1/biases"])
    backend.matmul_sgd(images, model.grad_hidden1, variables["hidden1/weights"], rates, active, trans_a=True)
    for name, gradient in bias_gradients.items():
        backend.sgd_update(variables[name], gradient, rates, active)
    model.global_step += 1


def train_step(model, images, labels):
    """One training step of every member on its batch (images [K, B, D], labels [K, B]): inference, loss, backprop
    and SGD. Returns the members' mean losses ([K], on the backend).

    The one training step: the trainer, the benchmarks, `mnist-gpu check` and the tests all call it.
    """
    losses = loss(model, inference(model, images), labels)
    training(model, images)
    return losses


def evaluation(model, logits, labels):
    """How many of the labels [R] each member predicts (tf.nn.in_top_k with k=1): [K], on the backend."""
    return model.backend.in_top_k(logits, labels, 1)
