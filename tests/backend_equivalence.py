"""Every op of a candidate backend against the NumPy backend (the spec), written once.

Imported by tests/test_cpu_backend.py (the Numba CPU kernels) and tests/cuda/test_kernels.py
(the CUDA kernels, in the simulator or on a GPU), each defining the `candidate` fixture, as
CuPy's tests run one test on two array libraries. Shapes are not multiples of any block size.
In Numba's CUDA simulator the shapes stay tiny (it runs one Python thread per CUDA thread);
elsewhere the tutorial's and larger shapes are added.
"""
import inspect
import math
import os

import numpy as np
import pytest

from mnist_gpu import model as mnist
from mnist_gpu.backends.interface import Backend
from mnist_gpu.check import OP_CASES, mismatch, run_case

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

# (rows, columns): batch 1, 3, 17, 257 against hidden 5, 33 and C=10.
SHAPES = [(1, 5), (3, 33), (17, 10), (257, 5)]
if not SIMULATED:
    SHAPES += [(100, 128), (100, 32), (1000, 1024), (10000, 10)]


def random_f32(generator, shape, scale=1.0):
    return (generator.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("batch, width", SHAPES)
@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_every_op_matches_numpy(candidate, numpy_backend, generator, case, batch, width):
    """The op cases that `mnist-gpu check` runs at the tutorial's shapes, here at odd ones."""
    inputs = case.make_inputs(generator, batch, width)
    problem = mismatch(case, run_case(case, candidate, inputs), run_case(case, numpy_backend, inputs))
    assert problem is None, problem


def test_bias_relu_in_place_and_nan(candidate, numpy_backend):
    x = np.array([[np.nan, -1, 2], [0, -0.5, np.inf]], np.float32)
    bias = np.array([0, 0.5, -1], np.float32)
    device = candidate.asarray(x)
    candidate.bias_relu(device, candidate.asarray(bias), out=device)
    numpy_backend.bias_relu(x, bias, out=x)
    np.testing.assert_array_equal(candidate.to_host(device), x)  # NaN propagates in both


def test_relu_backward_of_non_finite_gradients(candidate, numpy_backend):
    grad = np.array([[np.nan, np.inf, np.nan, 1], [-np.inf, 1, 2, np.nan]], np.float32)
    activation = np.array([[0, 1, -1, 2], [0, np.nan, 3, 1]], np.float32)
    results = []
    for backend in (candidate, numpy_backend):
        out, bias_grad = backend.empty((2, 4)), backend.empty(4)
        backend.relu_backward_bias_grad(backend.asarray(grad), backend.asarray(activation), out, bias_grad)
        results.append((backend.to_host(out), backend.to_host(bias_grad)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("batch", [1, 3, 257] + ([] if SIMULATED else [100, 10000]))
def test_softmax_xent_of_large_logits(candidate, numpy_backend, generator, batch):
    logits = random_f32(generator, (batch, 10), 100.0)  # exp() would overflow without the max shifted out
    labels = generator.integers(0, 10, batch).astype(np.int32)
    grad, expected_grad = candidate.empty((batch, 10)), np.empty((batch, 10), np.float32)
    loss = candidate.softmax_xent(candidate.asarray(logits), candidate.asarray(labels), grad)
    expected_loss = numpy_backend.softmax_xent(logits, labels, expected_grad)
    assert math.isfinite(float(loss)) and float(loss) == pytest.approx(float(expected_loss), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(candidate.to_host(grad), expected_grad, rtol=1e-5, atol=1e-7)


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
        losses = [float(mnist.train_step(model, model.backend.asarray(images), model.backend.asarray(labels), 0.1))
                  for model in models]
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    got, expected = (model.host_variables() for model in models)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert models[0].global_step == models[1].global_step == 3

def test_arrays_keep_integer_types_and_ops_refuse_float_labels(candidate):
    assert candidate.to_host(candidate.asarray(np.array([1, 2, 3]))).dtype == np.int64
    assert candidate.to_host(candidate.asarray(np.array([1.5]))).dtype == np.float32
    logits = candidate.asarray(np.zeros((3, 10), np.float32))
    float_labels = candidate.asarray(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="labels must be an integer array .*, got float32"):
        candidate.softmax_xent(logits, float_labels, candidate.empty((3, 10)))
    with pytest.raises(TypeError, match="labels must be an integer array .*, got float32"):
        candidate.in_top_k(logits, float_labels, 1)


def interface_methods():
    return {name: member for name, member in vars(Backend).items() if callable(member) and not name.startswith("_")}


def test_backend_follows_the_interface(candidate, numpy_backend):
    """Every method of the Backend protocol, with the protocol's parameter names and defaults."""
    assert len(interface_methods()) >= 15
    for backend in (candidate, numpy_backend):
        assert isinstance(backend, Backend) and isinstance(backend.name, str)
        for name, method in interface_methods().items():
            expected = list(inspect.signature(method).parameters.values())[1:]  # without self
            assert list(inspect.signature(getattr(backend, name)).parameters.values()) == expected, \
                f"{backend.name}.{name}"


def near_ties(logits, labels, relative=1e-4):
    """How many rows have their label's logit within rounding of the best other class's (host logits [N, C]).

    Only such a row can flip in_top_k between two float32 computations that add the same terms in
    another order, as cuBLAS does for other shapes (it picks its kernel by the matrix sizes): the
    margin allowed, 1e-4 of the logit's size, is about a hundred times float32's rounding after
    the three layers' sums of up to 784 terms.
    """
    rows = np.arange(len(labels))
    label_logits = logits[rows, labels].astype(np.float64)
    others = logits.astype(np.float64)
    others[rows, labels] = -np.inf
    return int(np.sum(np.abs(label_logits - others.max(axis=1)) <= relative * (1 + np.abs(label_logits))))


@pytest.mark.parametrize("batch", [7] if SIMULATED else [7, 100])  # the simulator: 784 threads a row
def test_evaluation_in_large_chunks_counts_like_batch_by_batch(candidate, numpy_backend, generator, batch):
    """do_eval computes many batches at once: the same examples and, where a GEMM's rows do not depend on how many
    rows it computes (NumPy's OpenBLAS, the cpu backend, the simulator), the same count as one batch at a time.

    What a GPU guarantees: the same examples; the same count every time for the same batch size (cuBLAS is
    deterministic for given shapes); and the chunked count within the number of near-ties (see near_ties) of
    the batch-by-batch one, since cuBLAS may add a 5000-row chunk's terms in another order than a batch's.
    """
    from mnist_gpu.evaluation import do_eval
    from mnist_gpu.input_data import DataSet
    from mnist_gpu.log import Log
    from mnist_gpu.steps import DeviceSplit

    rows, hidden = (30, (5, 4)) if SIMULATED else (12345, (128, 32))
    data_set = DataSet(generator.integers(0, 256, (rows, mnist.IMAGE_PIXELS), dtype=np.uint8),
                       generator.integers(0, mnist.NUM_CLASSES, rows).astype(np.int32))
    variables = mnist.initial_variables(*hidden, seed=4)
    on_a_gpu = candidate.name == "cuda" and not SIMULATED
    examples = rows // batch * batch
    reference = mnist.Model(numpy_backend, variables, examples)
    all_images = np.empty((examples, mnist.IMAGE_PIXELS), np.float32)
    numpy_backend.gather_images(data_set.pixels, np.arange(examples), all_images)
    reference_logits = mnist.inference(reference, all_images)
    ties = near_ties(reference_logits, data_set.labels[:examples])
    for backend in (candidate, numpy_backend):
        model = mnist.Model(backend, variables, batch)
        split = DeviceSplit(backend, data_set)
        images, labels = backend.empty((batch, mnist.IMAGE_PIXELS)), backend.empty((batch,), np.int32)
        correct = 0
        for start in range(0, examples, batch):
            split.gather(backend, np.arange(start, start + batch), images, labels)
            correct += int(mnist.evaluation(model, mnist.inference(model, images), labels))
        chunked_examples, chunked = do_eval(model, split, Log(verbose=False))
        assert chunked_examples == examples
        if backend is candidate and on_a_gpu:
            assert abs(chunked - correct) <= ties, (chunked, correct, ties)
            assert do_eval(model, split, Log(verbose=False)) == (examples, chunked)  # the same count again
        else:
            assert chunked == correct
        assert examples // batch > 1 and 0 < correct < examples  # several batches, some right, some wrong


def test_evaluation_keeps_the_test_logits_for_the_pictures(candidate, numpy_backend, generator, monkeypatch):
    """do_eval's logits buffer: every example's logits, written chunk by chunk (the last one shorter), the same
    count as without it, and the pictures drawn from the backend's own arrays (backend.to_host)."""
    from mnist_gpu.confusion import Confusion
    from mnist_gpu.evaluation import EvaluationPictures, do_eval
    from mnist_gpu.input_data import DataSet
    from mnist_gpu.log import Log
    from mnist_gpu.steps import DeviceSplit

    monkeypatch.setattr(mnist, "EVAL_ROWS", 10 if SIMULATED else 3000)  # several chunks, the last one shorter
    rows, batch, hidden = (33, 4, (5, 4)) if SIMULATED else (12345, 100, (128, 32))
    data_set = DataSet(generator.integers(0, 256, (rows, mnist.IMAGE_PIXELS), dtype=np.uint8),
                       generator.integers(0, mnist.NUM_CLASSES, rows).astype(np.int32))
    variables = mnist.initial_variables(*hidden, seed=4)
    reference = mnist.Model(numpy_backend, variables, rows // batch * batch)
    expected = mnist.inference(reference, data_set.images[:rows // batch * batch])
    model = mnist.Model(candidate, variables, batch)
    split = DeviceSplit(candidate, data_set)
    counted = do_eval(model, split, Log(verbose=False))
    kept = EvaluationPictures(model, split)
    assert do_eval(model, split, Log(verbose=False), kept.logits) == counted
    np.testing.assert_allclose(candidate.to_host(kept.logits), expected, rtol=1e-4, atol=1e-4)
    found, drawn, _ = kept.draw(candidate, "at step 1")
    assert found.matrix.sum() == rows // batch * batch
    np.testing.assert_array_equal(found.predicted, Confusion.from_logits(candidate.to_host(kept.logits),
                                                                         data_set.labels[:len(expected)]).predicted)
    assert drawn.confusion_matrix.png.startswith(b"\x89PNG") and drawn.misclassified.png.startswith(b"\x89PNG")
