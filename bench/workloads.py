"""What the benchmarks time: a backend's ops, a whole training step, and the same step's GEMMs alone.

Shapes: K members, B batch, D=784, H1, H2, C=10. Every callable here finishes its GPU work before returning
(backend.synchronize()), so a host timer measures the work and not just its launch.
"""
import numpy as np

from mnist_gpu import model as mnist
from mnist_gpu.backends import get_backend
from mnist_gpu.backends.gpu_probe import gpu_available
from mnist_gpu.input_data import DataSet
from mnist_gpu.steps import DeviceSplit

BACKENDS = ("numpy", "cpu", "cuda")


def backend_or_skip(name):
    import pytest

    if name == "cuda" and not gpu_available():
        pytest.skip("needs an NVIDIA GPU with CuPy")
    return get_backend(name)


def host_training_set(rows=55000, seed=0):
    """A stand-in training set of the real one's size: uint8 pixels [N, D], int32 labels [N].

    Random pixels: speed does not depend on them.
    """
    generator = np.random.default_rng(seed)
    pixels = generator.integers(0, 256, (rows, mnist.IMAGE_PIXELS), dtype=np.uint8)
    return pixels, generator.integers(0, mnist.NUM_CLASSES, rows).astype(np.int32)


def training_set(backend, rows=55000, seed=0):
    """The stand-in training set as the trainer holds it on the backend."""
    pixels, labels = host_training_set(rows, seed)
    return backend.asarray(pixels, dtype=np.uint8), backend.asarray(labels, dtype=np.int32)


# Random pixels and labels would make the tutorial's 0.01 diverge over thousands of timed steps,
# and NaN arithmetic can run at a different speed: a tiny rate keeps values sane.
LEARNING_RATE = 1e-6


def population_model(backend, batch_size, hidden1, hidden2, seed, members):
    """A model of `members` networks (seeds seed, seed + 1, ...), all at LEARNING_RATE."""
    variables = mnist.stacked([mnist.initial_variables(hidden1, hidden2, seed + member) for member in range(members)])
    return mnist.Model(backend, variables, batch_size, [LEARNING_RATE] * members)


class Step:
    """One training step of K members as the trainer runs it: batch gathers, forward, loss, backprop, SGD."""

    def __init__(self, backend, batch_size, hidden1=128, hidden2=32, seed=0, members=1):
        self.backend = backend
        self.batch_size = batch_size
        self.model = population_model(backend, batch_size, hidden1, hidden2, seed, members)
        self.table_pixels, self.table_labels = training_set(backend)
        self.images = backend.empty((members, batch_size, mnist.IMAGE_PIXELS))
        self.labels = backend.empty((members, batch_size), np.int32)
        self.generator = np.random.default_rng(seed)
        self.order = self.generator.permutation(len(self.table_labels))
        self.position = 0

    def next_indices(self):
        """Each member's batch: B rows of one long permutation per member (a stand-in for their own orders)."""
        rows = self.model.members * self.batch_size
        if self.position + rows > len(self.order):
            self.position = 0
        indices = self.order[self.position:self.position + rows].reshape(self.model.members, self.batch_size)
        self.position += rows
        return indices

    def enqueue(self):
        """Issue one step without waiting for it (on a GPU: the host's launch cost)."""
        backend = self.backend
        indices = self.next_indices()
        backend.gather_images(self.table_pixels, indices, self.images)
        backend.gather_rows(self.table_labels, indices, self.labels)
        mnist.train_step(self.model, self.images, self.labels)

    def __call__(self):
        self.enqueue()
        self.backend.synchronize()


class ProgramStep:
    """One training step of the CUDA step program: prepared eager launches (graph="off") or its CUDA graph ("on").

    The host draws the batches as the trainer does (DataSet.draw_batches, a window every 1000
    steps), so that cost is in the timing too. What the program notes (a graph it cannot use,
    launches it cannot prepare) is printed and kept in `notes`: a figure is never silently of
    another way of running than its name says.
    """

    def __init__(self, backend, batch_size, hidden1=128, hidden2=32, graph="on", seed=0, members=1):
        self.backend = backend
        self.model = population_model(backend, batch_size, hidden1, hidden2, seed, members)
        pixels, labels = host_training_set(seed=seed)
        split = DeviceSplit(backend, DataSet(pixels, labels))
        orders = [DataSet(pixels, labels, seed=seed + member) for member in range(members)]
        self.notes = []
        self.program = backend.step_program(self.model, split, orders, last_step=2 ** 31 - 1, graph=graph,
                                            note=self.note)
        self.step = 0

    def note(self, line):
        self.notes.append(line)
        print(f"step program: {line}")  # bench.report runs pytest with -s: in the terminal, and a GPU session's log

    def enqueue(self):
        """Issue one step without waiting for it: the host's cost of a step."""
        self.program.run(self.step)
        self.step += 1

    def __call__(self):
        self.enqueue()
        self.backend.synchronize()


class GemmFloor:
    """The 8 GEMMs of one training step alone, on the same backend and shapes: the floor a step can reach."""

    def __init__(self, backend, batch_size, hidden1=128, hidden2=32, members=1):
        step = Step(backend, batch_size, hidden1, hidden2, members=members)
        step()  # realistic values in every buffer: uninitialised memory could hold slow denormals or NaNs
        self.backend, model, variables = backend, step.model, step.model.variables
        gradients = {name: backend.zeros(value.shape) for name, value in variables.items() if name.endswith("weights")}
        images = step.images
        self.products = [
            (images, variables["hidden1/weights"], model.hidden1, False, False),
            (model.hidden1, variables["hidden2/weights"], model.hidden2, False, False),
            (model.hidden2, variables["softmax_linear/weights"], model.logits, False, False),
            (model.hidden2, model.grad_logits, gradients["softmax_linear/weights"], True, False),
            (model.grad_logits, variables["softmax_linear/weights"], model.grad_hidden2, False, True),
            (model.hidden1, model.grad_hidden2, gradients["hidden2/weights"], True, False),
            (model.grad_hidden2, variables["hidden2/weights"], model.grad_hidden1, False, True),
            (images, model.grad_hidden1, gradients["hidden1/weights"], True, False),
        ]

    def __call__(self):
        for a, b, out, trans_a, trans_b in self.products:
            self.backend.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b)
        self.backend.synchronize()
