"""The model's hand-written backprop against finite differences (float64), and its initialisation."""
import math

import numpy as np
import pytest

from mnist_gpu import model as mnist
from mnist_gpu.backends.numpy_backend import NumpyBackend


def tiny_model(batch, hidden1, hidden2, seed=0, learning_rates=(1.0,)):
    """A float64 model of K members (one per learning rate) with non-zero biases, on random images and labels."""
    generator = np.random.default_rng(seed)
    members = len(learning_rates)
    variables = {name: generator.normal(0, 0.5, (members, *shape)) for name, shape in
                 mnist.variable_shapes(hidden1, hidden2).items()}
    backend = NumpyBackend(np.float64)
    model = mnist.Model(backend, variables, batch, learning_rates)
    images = generator.random((members, batch, mnist.IMAGE_PIXELS))
    labels = generator.integers(0, mnist.NUM_CLASSES, (members, batch)).astype(np.int32)
    return model, images, labels


def forward_loss(model, images, labels):
    """Each member's loss [K]."""
    return np.array(mnist.loss(model, mnist.inference(model, images), labels))


def sgd_step(model, images, labels):
    """One training step; returns {name: variable before - variable after}."""
    before = {name: value.copy() for name, value in model.variables.items()}
    forward_loss(model, images, labels)
    mnist.training(model, images)
    return {name: before[name] - value for name, value in model.variables.items()}


@pytest.mark.parametrize("batch, hidden1, hidden2, members", [(1, 3, 2, 1), (3, 5, 4, 2), (4, 7, 3, 3)])
def test_gradients_match_finite_differences(batch, hidden1, hidden2, members):
    """With learning rate 1, SGD moves every variable by exactly minus its gradient; a member's variables move
    by the gradient of its own loss (another member's loss does not depend on them)."""
    model, images, labels = tiny_model(batch, hidden1, hidden2, learning_rates=(1.0,) * members)
    start = {name: value.copy() for name, value in model.variables.items()}
    analytic = sgd_step(model, images, labels)
    for name, value in start.items():  # back to the point the gradient was taken at
        model.variables[name][...] = value
    generator = np.random.default_rng(1)
    epsilon = 1e-6
    for name, variable in model.variables.items():
        for member in range(members):
            # Check every bias entry and a sample of weight entries (784 x H1 is large).
            flat = variable[member].reshape(-1)
            entries = range(flat.size) if flat.size <= 64 else generator.choice(flat.size, 64, replace=False)
            for entry in entries:
                saved = flat[entry]
                flat[entry] = saved + epsilon
                loss_plus = forward_loss(model, images, labels)
                flat[entry] = saved - epsilon
                loss_minus = forward_loss(model, images, labels)
                flat[entry] = saved
                numeric = (loss_plus - loss_minus) / (2 * epsilon)
                assert analytic[name][member].reshape(-1)[entry] == pytest.approx(numeric[member], rel=1e-5,
                                                                                  abs=1e-8), (name, member, entry)
                others = np.delete(numeric, member)
                assert np.all(others == 0), (name, member, entry)  # no other member's loss moved


def test_training_is_plain_sgd_and_counts_steps():
    """The step is linear in each member's learning rate (no momentum, no other state), and global_step counts."""
    first, images, labels = tiny_model(3, 5, 4, learning_rates=(0.5, 0.25))
    second, _, _ = tiny_model(3, 5, 4, learning_rates=(0.125, 0.0625))
    full = sgd_step(first, images, labels)
    quarter = sgd_step(second, images, labels)
    for name in full:
        np.testing.assert_allclose(quarter[name] * 4, full[name], rtol=1e-9, atol=1e-15)
        assert np.abs(full[name]).max() > 0, name
    assert first.global_step == 1
    sgd_step(first, images, labels)
    assert first.global_step == 2


def test_sgd_lowers_the_loss_on_a_fixed_batch():
    model, images, labels = tiny_model(8, 16, 8, learning_rates=(0.05, 0.03))
    first = forward_loss(model, images, labels)
    for _ in range(50):
        forward_loss(model, images, labels)
        mnist.training(model, images)
    assert (forward_loss(model, images, labels) < 0.5 * first).all()


def test_initial_variables_follow_the_tutorial():
    variables = mnist.initial_variables(128, 32, seed=3)
    assert list(variables) == ["hidden1/weights", "hidden1/biases", "hidden2/weights", "hidden2/biases",
                               "softmax_linear/weights", "softmax_linear/biases"]
    assert variables["hidden1/weights"].shape == (784, 128)
    assert variables["softmax_linear/weights"].shape == (32, 10)
    for name, value in variables.items():
        assert value.dtype == np.float32
        if name.endswith("biases"):
            assert not value.any()
        else:
            stddev = 1 / math.sqrt(value.shape[0])
            assert np.abs(value).max() <= 2 * stddev * (1 + 1e-6)  # re-drawn beyond 2 stddev
            # A normal truncated at 2 stddev has standard deviation 0.8796 stddev.
            assert value.std() == pytest.approx(0.8796 * stddev, rel=0.1 if value.size < 1000 else 0.02)
    again = mnist.initial_variables(128, 32, seed=3)
    for name in variables:
        np.testing.assert_array_equal(variables[name], again[name])


def test_evaluation_counts_in_top_1():
    model, images, labels = tiny_model(3, 5, 4, learning_rates=(1.0, 1.0))
    logits = np.array([[[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]] * 3, [[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * 3], np.float64)
    assert mnist.evaluation(model, logits, np.array([1, 0, 1], np.int32)).tolist() == [2, 1]


def test_model_copies_the_variables_it_is_given():
    variables = mnist.stacked([mnist.initial_variables(5, 4, seed=0)])
    originals = {name: value.copy() for name, value in variables.items()}
    model = mnist.Model(NumpyBackend(), variables, 2, [0.5])
    forward_loss(model, np.ones((1, 2, mnist.IMAGE_PIXELS), np.float32), np.array([[1, 2]], np.int32))
    mnist.training(model, np.ones((1, 2, mnist.IMAGE_PIXELS), np.float32))
    for name, value in variables.items():
        np.testing.assert_array_equal(value, originals[name])  # the caller's arrays are untouched
    assert not np.array_equal(model.variables["softmax_linear/biases"], originals["softmax_linear/biases"])
