"""Every op of a candidate backend against the NumPy backend (the spec), written once.

Imported by tests/test_cpu_backend.py (the Numba CPU kernels) and tests/cuda/test_kernels.py
(the CUDA kernels, in the simulator or on a GPU), each defining the `candidate` fixture, as
CuPy's tests run one test on two array libraries. Shapes are not multiples of any block size.
In Numba's CUDA simulator the shapes stay tiny (it runs one Python thread per CUDA thread);
elsewhere the tutorial's and larger shapes are added.
"""
import math
import os

import numpy as np
import pytest

from mnist_gpu import model as mnist

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

# (rows, columns): batch 1, 3, 17, 257 against hidden 5, 33 and C=10.
SHAPES = [(1, 5), (3, 33), (17, 10), (257, 5)]
if not SIMULATED:
    SHAPES += [(100, 128), (100, 32), (1000, 1024), (10000, 10)]


def random_f32(generator, shape, scale=1.0):
    return (generator.standard_normal(shape) * scale).astype(np.float32)


def run_both(candidate, numpy_backend, operation, inputs, outputs):
    """Run operation(backend, *inputs, *outputs) on both; return (candidate's results on the host, numpy's)."""
    device_inputs = [candidate.asarray(value, dtype=value.dtype) for value in inputs]
    device_outputs = [candidate.zeros(shape, dtype) for shape, dtype in outputs]
    host_outputs = [np.zeros(shape, dtype) for shape, dtype in outputs]
    cuda_value = operation(candidate, *device_inputs, *device_outputs)
    numpy_value = operation(numpy_backend, *inputs, *host_outputs)
    return ([candidate.to_host(value) for value in device_outputs], host_outputs, cuda_value, numpy_value)


@pytest.mark.parametrize("rows, columns", SHAPES)
@pytest.mark.parametrize("op", ["bias_relu", "bias_add"])
def test_bias_activation(candidate, numpy_backend, generator, rows, columns, op):
    x = random_f32(generator, (rows, columns))
    bias = random_f32(generator, columns)
    (got,), (expected,), _, _ = run_both(
        candidate, numpy_backend, lambda backend, x, bias, out: getattr(backend, op)(x, bias, out),
        [x, bias], [((rows, columns), np.float32)])
    np.testing.assert_array_equal(got, expected)


def test_bias_relu_in_place_and_nan(candidate, numpy_backend):
    x = np.array([[np.nan, -1, 2], [0, -0.5, np.inf]], np.float32)
    bias = np.array([0, 0.5, -1], np.float32)
    device = candidate.asarray(x)
    candidate.bias_relu(device, candidate.asarray(bias), out=device)
    numpy_backend.bias_relu(x, bias, out=x)
    np.testing.assert_array_equal(candidate.to_host(device), x)  # NaN propagates in both


@pytest.mark.parametrize("rows, columns", SHAPES)
def test_relu_backward(candidate, numpy_backend, generator, rows, columns):
    grad = random_f32(generator, (rows, columns))
    activation = np.maximum(random_f32(generator, (rows, columns)), 0)  # about half exactly zero
    (got,), (expected,), _, _ = run_both(
        candidate, numpy_backend, lambda backend, grad, activation, out: backend.relu_backward(grad, activation, out),
        [grad, activation], [((rows, columns), np.float32)])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("rows, columns", SHAPES + [(40, 33)])
def test_bias_grad(candidate, numpy_backend, generator, rows, columns):
    grad = random_f32(generator, (rows, columns))
    (got,), (expected,), _, _ = run_both(
        candidate, numpy_backend, lambda backend, grad, out: backend.bias_grad(grad, out),
        [grad], [((columns,), np.float32)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * math.sqrt(rows))


@pytest.mark.parametrize("rows, columns", SHAPES)
def test_relu_backward_bias_grad(candidate, numpy_backend, generator, rows, columns):
    grad = random_f32(generator, (rows, columns))
    activation = np.maximum(random_f32(generator, (rows, columns)), 0)
    (masked, bias_grad), (expected_masked, expected_bias_grad), _, _ = run_both(
        candidate, numpy_backend,
        lambda backend, grad, activation, out, bias_grad: backend.relu_backward_bias_grad(grad, activation, out, bias_grad),
        [grad, activation], [((rows, columns), np.float32), ((columns,), np.float32)])
    np.testing.assert_array_equal(masked, expected_masked)
    np.testing.assert_allclose(bias_grad, expected_bias_grad, rtol=1e-5, atol=1e-5 * math.sqrt(rows))


@pytest.mark.parametrize("batch", [1, 3, 17, 257] + ([] if SIMULATED else [100, 10000]))
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_softmax_xent(candidate, numpy_backend, generator, batch, scale):
    logits = random_f32(generator, (batch, 10), scale)  # scale 100: exp() would overflow unshifted
    labels = generator.integers(0, 10, batch).astype(np.int32)
    (grad,), (expected_grad,), loss, expected_loss = run_both(
        candidate, numpy_backend, lambda backend, logits, labels, grad: backend.softmax_xent(logits, labels, grad),
        [logits, labels], [((batch, 10), np.float32)])
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_softmax_xent_out_of_range_label_gives_nan_not_a_bad_index(candidate, numpy_backend):
    logits = np.zeros((3, 10), np.float32)
    labels = np.array([1, 10, -1], np.int32)
    grad = candidate.empty((3, 10))
    loss = candidate.softmax_xent(candidate.asarray(logits), candidate.asarray(labels, dtype=np.int32), grad)
    expected_grad = np.empty((3, 10), np.float32)
    assert math.isnan(float(loss)) and math.isnan(float(numpy_backend.softmax_xent(logits, labels, expected_grad)))
    np.testing.assert_allclose(candidate.to_host(grad), expected_grad, rtol=1e-6)
    assert expected_grad[0, 1] == pytest.approx(0.1 / 3 - 1 / 3) and expected_grad[1, 0] == pytest.approx(0.1 / 3)


def test_softmax_xent_returns_a_value_that_later_calls_do_not_change(candidate):
    logits = candidate.asarray(np.zeros((2, 10), np.float32))
    labels = candidate.asarray(np.array([0, 1], np.int32), dtype=np.int32)
    grad = candidate.empty((2, 10))
    first = candidate.softmax_xent(logits, labels, grad)
    candidate.softmax_xent(logits * 0 + candidate.asarray(np.eye(2, 10, dtype=np.float32) * 50), labels, grad)
    assert float(first) == pytest.approx(math.log(10), rel=1e-6)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("rows, inner, columns", [(1, 3, 5), (33, 17, 10)] + ([] if SIMULATED else [(784, 100, 128)]))
def test_matmul_sgd(candidate, numpy_backend, generator, rows, inner, columns, trans_a, trans_b):
    a = random_f32(generator, (inner, rows) if trans_a else (rows, inner))
    b = random_f32(generator, (columns, inner) if trans_b else (inner, columns))
    parameter = random_f32(generator, (rows, columns))
    device_parameter = candidate.asarray(parameter)
    candidate.matmul_sgd(candidate.asarray(a), candidate.asarray(b), device_parameter, 0.01, trans_a, trans_b)
    numpy_backend.matmul_sgd(a, b, parameter, 0.01, trans_a, trans_b)
    np.testing.assert_allclose(candidate.to_host(device_parameter), parameter, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 255, 257, 1000] + ([] if SIMULATED else [101770]))
def test_sgd_update(candidate, numpy_backend, generator, size):
    parameter = random_f32(generator, size)
    grad = random_f32(generator, size)
    device_parameter = candidate.asarray(parameter)
    candidate.sgd_update(device_parameter, candidate.asarray(grad), 0.01)
    numpy_backend.sgd_update(parameter, grad, 0.01)
    # A GPU may fuse the multiply-add (one rounding instead of two).
    np.testing.assert_allclose(candidate.to_host(device_parameter), parameter, rtol=1e-6, atol=1e-7)


def in_top_k_cases(generator):
    # Small integer logits make ties common; then non-finite values and bad labels.
    logits = generator.integers(0, 3, (37, 10)).astype(np.float32)
    labels = generator.integers(0, 10, 37).astype(np.int32)
    logits[0, labels[0]] = np.nan
    logits[1, (labels[1] + 1) % 10] = np.nan
    logits[2, labels[2]] = np.inf
    logits[3, (labels[3] + 2) % 10] = -np.inf
    labels[4], labels[5] = 10, -1
    return logits, labels


@pytest.mark.parametrize("k", [1, 2, 5])
def test_in_top_k(candidate, numpy_backend, generator, k):
    logits, labels = in_top_k_cases(generator)
    count = candidate.in_top_k(candidate.asarray(logits), candidate.asarray(labels, dtype=np.int32), k)
    expected = numpy_backend.in_top_k(logits, labels, k)
    assert int(count) == expected
    assert 0 < expected < 37 - 6  # the case has ties won, rows lost, and rows skipped


@pytest.mark.parametrize("width", [1, 33] + ([] if SIMULATED else [784]))
def test_gather_rows(candidate, numpy_backend, generator, width):
    table = random_f32(generator, (50, width))
    indices = generator.integers(0, 50, 17)
    out = candidate.empty((17, width))
    candidate.gather_rows(candidate.asarray(table), indices, out)
    expected = np.empty((17, width), np.float32)
    numpy_backend.gather_rows(table, indices, expected)
    np.testing.assert_array_equal(candidate.to_host(out), expected)
    labels = generator.integers(0, 10, 50).astype(np.int32)
    out_labels = candidate.empty((17,), np.int32)
    candidate.gather_rows(candidate.asarray(labels, dtype=np.int32), indices, out_labels)
    np.testing.assert_array_equal(candidate.to_host(out_labels), labels[indices])


@pytest.mark.parametrize("batch, hidden1, hidden2", [(3, 5, 4), (1, 33, 5)])
def test_training_steps_match_numpy(candidate, numpy_backend, generator, batch, hidden1, hidden2):
    variables = mnist.initial_variables(hidden1, hidden2, seed=7)
    # Non-zero biases, so that a kernel that ignored them would show.
    for name in variables:
        if name.endswith("biases"):
            variables[name] = (generator.standard_normal(variables[name].shape) * 0.1).astype(np.float32)
    models = [mnist.Model(backend, variables, batch) for backend in (candidate, numpy_backend)]
    for _ in range(3):
        images = generator.random((batch, mnist.IMAGE_PIXELS), dtype=np.float32)
        labels = generator.integers(0, 10, batch).astype(np.int32)
        losses = []
        for model in models:
            backend = model.backend
            device_images = backend.asarray(images)
            logits = mnist.inference(model, device_images)
            losses.append(float(mnist.loss(model, logits, backend.asarray(labels, dtype=np.int32))))
            mnist.training(model, device_images, learning_rate=0.1)
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    got, expected = (model.host_variables() for model in models)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert models[0].global_step == models[1].global_step == 3


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_gather_images(candidate, numpy_backend, generator, batch):
    pixels = generator.integers(0, 256, (40, 784 if not SIMULATED else 33), dtype=np.uint8)
    pixels[0, :3] = (0, 1, 255)
    indices = np.concatenate(([0], generator.integers(0, 40, batch - 1)))
    out = candidate.empty((batch, pixels.shape[1]))
    candidate.gather_images(candidate.asarray(pixels, dtype=np.uint8), indices, out)
    expected = np.empty((batch, pixels.shape[1]), np.float32)
    numpy_backend.gather_images(pixels, indices, expected)
    np.testing.assert_array_equal(candidate.to_host(out), expected)  # exact: one float32 multiply each
