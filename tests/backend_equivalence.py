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

# (rows, columns): batch 1, 3, 17, 257 against hidden 5, 33 and C=10; populations of 1, 2, 3 and 5 members.
SHAPES = [(1, 5), (3, 33), (17, 10), (257, 5)]
MEMBERS = [1, 2, 3, 5]
if not SIMULATED:
    SHAPES += [(100, 128), (100, 32), (1000, 1024), (10000, 10)]


def random_f32(generator, shape, scale=1.0):
    return (generator.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("batch, width", SHAPES)
@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_every_op_matches_numpy(candidate, numpy_backend, generator, case, batch, width, members):
    """The op cases that `mnist-gpu check` runs at the tutorial's shapes, here at odd ones."""
    if SIMULATED and members * batch * width > 20000 and case.name.startswith("gather"):
        pytest.skip("the simulator runs a Python thread per CUDA thread: this gather has too many")
    inputs = case.make_inputs(generator, members, batch, width)
    problem = mismatch(case, run_case(case, candidate, inputs), run_case(case, numpy_backend, inputs))
    assert problem is None, problem


def member_inputs(inputs, member):
    """A population of one of `inputs`' member `member`: its slice of every member-axis input."""
    shared = ("table", "pixels", "row_labels", "shared_labels")
    return {name: value if name in shared or (name == "a" and value.ndim == 2) else value[member:member + 1]
            for name, value in inputs.items()}


@pytest.mark.parametrize("members", [2, 3, 5])
@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_each_member_computes_what_a_population_of_one_does(candidate, generator, case, members):
    """Bit for bit: member k of a population, and a population of one given member k's inputs."""
    batch, width = (3, 10) if SIMULATED else (17, 33)
    inputs = case.make_inputs(generator, members, batch, width)
    together = run_case(case, candidate, inputs)
    for member in range(members):
        alone = run_case(case, candidate, member_inputs(inputs, member))
        for index, (value, own) in enumerate(zip(together, alone, strict=True)):
            if case.name in ("gather_rows", "gather_images") and index == len(together) - 1:
                continue  # the shared gather takes member 0's indices: no member axis
            np.testing.assert_array_equal(np.asarray(value)[member:member + 1].view(np.uint8),
                                          np.asarray(own).view(np.uint8), err_msg=f"{case.name} {member} {index}")


def test_bias_relu_in_place_and_nan(candidate, numpy_backend):
    x = np.array([[[np.nan, -1, 2], [0, -0.5, np.inf]]], np.float32)
    bias = np.array([[0, 0.5, -1]], np.float32)
    device = candidate.asarray(x)
    candidate.bias_relu(device, candidate.asarray(bias), out=device)
    numpy_backend.bias_relu(x, bias, out=x)
    np.testing.assert_array_equal(candidate.to_host(device), x)  # NaN propagates in both


def test_relu_backward_of_non_finite_gradients(candidate, numpy_backend):
    grad = np.array([[[np.nan, np.inf, np.nan, 1], [-np.inf, 1, 2, np.nan]]], np.float32)
    activation = np.array([[[0, 1, -1, 2], [0, np.nan, 3, 1]]], np.float32)
    results = []
    for backend in (candidate, numpy_backend):
        out, bias_grad = backend.empty((1, 2, 4)), backend.empty((1, 4))
        backend.relu_backward_bias_grad(backend.asarray(grad), backend.asarray(activation), out, bias_grad)
        results.append((backend.to_host(out), backend.to_host(bias_grad)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def softmax_on(backend, logits, labels, active=None):
    """(losses, grad, active after) of softmax_xent on `backend`, from host arrays, as host arrays."""
    active = np.ones(len(logits), np.int32) if active is None else np.asarray(active, np.int32)
    device_active, grad = backend.asarray(active), backend.empty(logits.shape)
    losses = backend.softmax_xent(backend.asarray(logits), backend.asarray(labels, dtype=np.int32), grad,
                                  device_active)
    return backend.to_host(losses), backend.to_host(grad), backend.to_host(device_active)


@pytest.mark.parametrize("batch", [1, 3, 257] + ([] if SIMULATED else [100, 10000]))
def test_softmax_xent_of_large_logits(candidate, numpy_backend, generator, batch):
    logits = random_f32(generator, (2, batch, 10), 100.0)  # exp() would overflow without the max shifted out
    labels = generator.integers(0, 10, (2, batch)).astype(np.int32)
    losses, grad, _ = softmax_on(candidate, logits, labels)
    expected_losses, expected_grad, _ = softmax_on(numpy_backend, logits, labels)
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_softmax_xent_out_of_range_label_gives_nan_not_a_bad_index_and_stops_the_member(candidate, numpy_backend):
    logits = np.zeros((2, 3, 10), np.float32)
    labels = np.array([[1, 10, -1], [1, 2, 3]], np.int32)
    losses, grad, active = softmax_on(candidate, logits, labels)
    expected_losses, expected_grad, expected_active = softmax_on(numpy_backend, logits, labels)
    assert math.isnan(losses[0]) and math.isnan(expected_losses[0]) and losses[1] == pytest.approx(math.log(10))
    np.testing.assert_array_equal(active, [0, 1])
    np.testing.assert_array_equal(expected_active, [0, 1])
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6)
    assert expected_grad[0, 0, 1] == pytest.approx(0.1 / 3 - 1 / 3) and expected_grad[0, 1, 0] == pytest.approx(0.1 / 3)


def test_softmax_xent_stops_a_member_whose_loss_is_not_finite(candidate, numpy_backend, generator):
    logits = random_f32(generator, (4, 5, 10))
    logits[2, 3, 4] = np.inf
    labels = generator.integers(0, 10, (4, 5)).astype(np.int32)
    results = [softmax_on(backend, logits, labels, active=[1, 0, 1, 1]) for backend in (candidate, numpy_backend)]
    for got, expected in zip(results[0], results[1], strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(results[0][2], [1, 0, 0, 1])  # stopped stays stopped; the infinite one stops


def test_a_stopped_member_is_left_exactly_as_it_is_even_by_a_nan_gradient(candidate, numpy_backend, generator):
    """The SGD ops are a select: a stopped member's parameter keeps its bits, whatever its gradient holds (inf
    activations times a zero gradient make NaN); the members that train move."""
    a = random_f32(generator, (3, 4, 6))
    a[1, 0, 0] = np.inf  # member 1's activations overflowed
    b = np.zeros((3, 4, 2), np.float32)
    b[0] = b[2] = 1.0
    parameter, grad = random_f32(generator, (3, 6, 2)), random_f32(generator, (3, 5))
    grad[1, 2] = np.nan
    bias, active, rates = random_f32(generator, (3, 5)), np.array([1, 0, 1], np.int32), np.float32([0.1, 0.1, 0.2])
    for backend in (candidate, numpy_backend):
        weights, biases, flags = (backend.asarray(array.copy()) for array in (parameter, bias, active))
        backend.matmul_sgd(backend.asarray(a), backend.asarray(b), weights, rates, flags, trans_a=True)
        backend.sgd_update(biases, backend.asarray(grad), rates, flags)
        weights, biases = backend.to_host(weights), backend.to_host(biases)
        np.testing.assert_array_equal(weights[1].view(np.uint32), parameter[1].view(np.uint32))
        np.testing.assert_array_equal(biases[1].view(np.uint32), bias[1].view(np.uint32))
        assert not np.array_equal(weights[0], parameter[0]) and not np.array_equal(biases[2], bias[2])


def test_softmax_xent_returns_values_that_later_calls_do_not_change(candidate):
    logits = candidate.asarray(np.zeros((1, 2, 10), np.float32))
    labels = candidate.asarray(np.array([[0, 1]], np.int32), dtype=np.int32)
    grad, active = candidate.empty((1, 2, 10)), candidate.asarray(np.ones(1, np.int32))
    first = candidate.softmax_xent(logits, labels, grad, active)
    candidate.softmax_xent(logits * 0 + candidate.asarray(np.eye(2, 10, dtype=np.float32)[None] * 50), labels, grad,
                           active)
    assert candidate.to_host(first)[0] == pytest.approx(math.log(10), rel=1e-6)


def in_top_k_cases(generator):
    # Small integer logits make ties common; then non-finite values and bad labels; three members.
    logits = generator.integers(0, 3, (3, 37, 10)).astype(np.float32)
    labels = generator.integers(0, 10, 37).astype(np.int32)
    logits[:, 0, labels[0]] = np.nan
    logits[:, 1, (labels[1] + 1) % 10] = np.nan
    logits[:, 2, labels[2]] = np.inf
    logits[:, 3, (labels[3] + 2) % 10] = -np.inf
    labels[4], labels[5] = 10, -1
    return logits, labels


@pytest.mark.parametrize("k", [1, 2, 5])
def test_in_top_k(candidate, numpy_backend, generator, k):
    logits, labels = in_top_k_cases(generator)
    counts = candidate.in_top_k(candidate.asarray(logits), candidate.asarray(labels, dtype=np.int32), k)
    expected = numpy_backend.in_top_k(logits, labels, k)
    np.testing.assert_array_equal(candidate.to_host(counts), expected)
    assert (0 < expected).all() and (expected < 37 - 6).all()  # the case has ties won, rows lost, and rows skipped


@pytest.mark.parametrize("batch, hidden1, hidden2, members", [(3, 5, 4, 1), (1, 33, 5, 3), (3, 5, 4, 5)])
def test_training_steps_match_numpy(candidate, numpy_backend, generator, batch, hidden1, hidden2, members):
    variables = mnist.stacked([mnist.initial_variables(hidden1, hidden2, seed=7 + member) for member in range(members)])
    # Non-zero biases, so that a kernel that ignored them would show.
    for name in variables:
        if name.endswith("biases"):
            variables[name] = (generator.standard_normal(variables[name].shape) * 0.1).astype(np.float32)
    rates = [0.1, 0.1, 0.05, 0.2, 0.1][:members]
    models = [mnist.Model(backend, variables, batch, rates) for backend in (candidate, numpy_backend)]
    for _ in range(3):
        images = generator.random((members, batch, mnist.IMAGE_PIXELS), dtype=np.float32)
        labels = generator.integers(0, 10, (members, batch)).astype(np.int32)
        losses = [model.backend.to_host(mnist.train_step(model, model.backend.asarray(images),
                                                         model.backend.asarray(labels))) for model in models]
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    got, expected = (model.host_variables() for model in models)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert models[0].global_step == models[1].global_step == 3


def test_arrays_keep_integer_types_and_ops_refuse_float_labels(candidate):
    assert candidate.to_host(candidate.asarray(np.array([1, 2, 3]))).dtype == np.int64
    assert candidate.to_host(candidate.asarray(np.array([1.5]))).dtype == np.float32
    logits = candidate.asarray(np.zeros((1, 3, 10), np.float32))
    float_labels = candidate.asarray(np.array([[1.0, 2.0, 3.0]]))
    with pytest.raises(TypeError, match="labels must be an integer array .*, got float32"):
        candidate.softmax_xent(logits, float_labels, candidate.empty((1, 3, 10)),
                               candidate.asarray(np.ones(1, np.int32)))
    with pytest.raises(TypeError, match="labels must be an integer array .*, got float32"):
        candidate.in_top_k(logits, float_labels[0], 1)


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
    """do_eval computes many batches at once, for every member: the same examples and, where a GEMM's rows do not
    depend on how many rows it computes (NumPy's OpenBLAS, the cpu backend, the simulator), the same counts as one
    batch at a time.

    What a GPU guarantees: the same examples; the same count every time for the same batch size (cuBLAS is
    deterministic for given shapes); and the chunked count within the number of near-ties (see near_ties) of
    the batch-by-batch one, since cuBLAS may add a 5000-row chunk's terms in another order than a batch's.
    """
    from mnist_gpu.evaluate import do_eval
    from mnist_gpu.input_data import DataSet
    from mnist_gpu.steps import DeviceSplit

    rows, hidden = (30, (5, 4)) if SIMULATED else (12345, (128, 32))
    data_set = DataSet(generator.integers(0, 256, (rows, mnist.IMAGE_PIXELS), dtype=np.uint8),
                       generator.integers(0, mnist.NUM_CLASSES, rows).astype(np.int32))
    members = [mnist.initial_variables(*hidden, seed=seed) for seed in (4, 5)]
    variables, rates = mnist.stacked(members), [0.01, 0.01]
    on_a_gpu = candidate.name == "cuda" and not SIMULATED
    examples = rows // batch * batch
    all_images = np.empty((examples, mnist.IMAGE_PIXELS), np.float32)
    numpy_backend.gather_images(data_set.pixels, np.arange(examples), all_images)
    reference_logits = mnist.inference(mnist.Model(numpy_backend, variables, examples, rates), all_images)
    ties = [near_ties(logits, data_set.labels[:examples]) for logits in reference_logits]
    for backend in (candidate, numpy_backend):
        model = mnist.Model(backend, variables, batch, rates)
        split = DeviceSplit(backend, data_set)
        images, labels = backend.empty((batch, mnist.IMAGE_PIXELS)), backend.empty((batch,), np.int32)
        correct = np.zeros(2, np.int64)
        for start in range(0, examples, batch):
            split.gather(backend, np.arange(start, start + batch), images, labels)
            correct += backend.to_host(mnist.evaluation(model, mnist.inference(model, images), labels))
        chunked_examples, chunked = do_eval(model, split)
        assert chunked_examples == examples
        if backend is candidate and on_a_gpu:
            assert (np.abs(chunked - correct) <= ties).all(), (chunked, correct, ties)
            np.testing.assert_array_equal(do_eval(model, split)[1], chunked)  # the same counts again
        else:
            np.testing.assert_array_equal(chunked, correct)
        assert examples // batch > 1 and (0 < correct).all() and (correct < examples).all()


def test_evaluation_keeps_the_test_logits_for_the_pictures(candidate, numpy_backend, generator, monkeypatch):
    """do_eval's logits buffer [K, N, C]: every member's logits of every example, written chunk by chunk (the last
    one shorter), the same counts as without it, and the pictures drawn from a member's host logits."""
    from mnist_gpu.confusion import Confusion
    from mnist_gpu.evaluate import EvaluationPictures, do_eval
    from mnist_gpu.input_data import DataSet
    from mnist_gpu.steps import DeviceSplit

    monkeypatch.setattr(mnist, "EVAL_ROWS", 10 if SIMULATED else 3000)  # several chunks, the last one shorter
    rows, batch, hidden = (33, 4, (5, 4)) if SIMULATED else (12345, 100, (128, 32))
    data_set = DataSet(generator.integers(0, 256, (rows, mnist.IMAGE_PIXELS), dtype=np.uint8),
                       generator.integers(0, mnist.NUM_CLASSES, rows).astype(np.int32))
    variables = mnist.stacked([mnist.initial_variables(*hidden, seed=seed) for seed in (4, 5, 6)])
    rates = [0.01] * 3
    examples = rows // batch * batch
    expected = mnist.inference(mnist.Model(numpy_backend, variables, examples, rates), data_set.images[:examples])
    model = mnist.Model(candidate, variables, batch, rates)
    split = DeviceSplit(candidate, data_set)
    _, counted = do_eval(model, split)
    kept = EvaluationPictures(model, split)
    np.testing.assert_array_equal(do_eval(model, split, kept)[1], counted)
    host_logits = kept.host_logits()
    np.testing.assert_allclose(host_logits, expected, rtol=1e-4, atol=1e-4)
    found, drawn, _ = kept.draw(host_logits[1], "at step 1")
    assert found.matrix.sum() == examples
    np.testing.assert_array_equal(found.predicted, Confusion.from_logits(host_logits[1], data_set.labels[:examples])
                                  .predicted)
    assert drawn.confusion_matrix.png.startswith(b"\x89PNG") and drawn.misclassified.png.startswith(b"\x89PNG")
