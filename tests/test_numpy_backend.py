"""Every NumPy backend op against a closed form worked out by hand, each member of a population on its own."""
import math

import numpy as np
import pytest

from mnist_gpu.backends.numpy_backend import NumpyBackend


@pytest.fixture
def backend():
    return NumpyBackend()


def f32(values):
    return np.array(values, dtype=np.float32)


def test_matmul_with_and_without_transposes_member_by_member(backend):
    a = f32([[[1, 2], [3, 4], [5, 6]], [[0, 1], [1, 0], [2, 2]]])  # [K=2, 3, 2]
    b = f32([[[1, 0, 2], [0, 1, 3]], [[1, 1, 1], [0, 0, 0]]])  # [2, 2, 3]
    out = backend.empty((2, 3, 3))
    backend.matmul(a, b, out)
    np.testing.assert_array_equal(out[0], [[1, 2, 8], [3, 4, 18], [5, 6, 28]])
    np.testing.assert_array_equal(out[1], [[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    out = backend.empty((2, 2, 2))
    backend.matmul(a, a, out, trans_a=True)  # a^T a
    np.testing.assert_array_equal(out[0], [[35, 44], [44, 56]])
    np.testing.assert_array_equal(out[1], [[5, 4], [4, 5]])
    out = backend.empty((2, 3, 3))
    backend.matmul(a, a, out, trans_b=True)  # a a^T
    np.testing.assert_array_equal(out[0], [[5, 11, 17], [11, 25, 39], [17, 39, 61]])


def test_a_two_dimensional_a_is_every_members(backend):
    shared = f32([[1, 2], [3, 4]])
    b = f32([[[1, 0], [0, 1]], [[2, 0], [0, 2]], [[0, 1], [1, 0]]])  # three members
    out = backend.empty((3, 2, 2))
    backend.matmul(shared, b, out)
    np.testing.assert_array_equal(out, [[[1, 2], [3, 4]], [[2, 4], [6, 8]], [[2, 1], [4, 3]]])


def test_matmul_sgd_subtracts_the_product_scaled_by_each_members_learning_rate(backend):
    a = f32([[[1, 2], [3, 4], [5, 6]]] * 2)  # two members, the same a
    parameter = f32([[[10, 10], [10, 10]]] * 2)
    backend.matmul_sgd(a, a, parameter, f32([0.5, 0.25]), np.ones(2, np.int32), trans_a=True)  # a^T a = [[35, 44], ...
    np.testing.assert_array_equal(parameter[0], [[-7.5, -12], [-12, -18]])
    np.testing.assert_array_equal(parameter[1], [[1.25, -1], [-1, -4]])
    parameter = f32([[[1, 1, 1]]])
    backend.matmul_sgd(f32([[[1, 2]]]), f32([[[1, 0], [0, 1], [1, 1]]]), parameter, f32([1.0]), np.ones(1, np.int32),
                       trans_b=True)
    np.testing.assert_array_equal(parameter, [[[0, -1, -2]]])


def test_bias_relu_and_bias_add_take_each_members_bias(backend):
    x = f32([[[-1, 0.5, 2], [3, -4, 0]]] * 2)
    bias = f32([[0.5, -1, 0], [0, 0, -3]])
    out = backend.empty((2, 2, 3))
    backend.bias_relu(x, bias, out)
    np.testing.assert_array_equal(out, [[[0, 0, 2], [3.5, 0, 0]], [[0, 0.5, 0], [3, 0, 0]]])
    backend.bias_add(x, bias, out)
    np.testing.assert_array_equal(out, [[[-0.5, -0.5, 2], [3.5, -5, 0]], [[-1, 0.5, -1], [3, -4, -3]]])


def test_relu_backward_masks_where_activation_is_not_positive(backend):
    grad = f32([[[1, 2, 3], [4, 5, 6]]])
    activation = f32([[[0, 0.1, 0], [7, 0, 1e-30]]])
    out = backend.empty((1, 2, 3))
    backend.relu_backward(grad, activation, out)
    np.testing.assert_array_equal(out, [[[0, 2, 0], [4, 0, 6]]])


def test_relu_backward_is_a_select_so_a_nan_gradient_where_the_relu_was_off_gives_zero(backend):
    grad = f32([[[np.nan, np.inf, np.nan], [-np.inf, 1, 2]]])
    activation = f32([[[0, 1, -1], [0, np.nan, 3]]])
    out = backend.empty((1, 2, 3))
    backend.relu_backward(grad, activation, out)
    np.testing.assert_array_equal(out, [[[0, np.inf, 0], [0, 0, 2]]])  # NaN only where the ReLU let it through


def test_bias_grad_is_each_members_column_sums(backend):
    grad = f32([[[1, 2], [3, 4], [5, 6]], [[1, 0], [1, 0], [1, 1]]])
    out = backend.empty((2, 2))
    backend.bias_grad(grad, out)
    np.testing.assert_array_equal(out, [[9, 12], [3, 1]])


def softmax_xent(backend, logits, labels, active=None):
    """(losses, grad, active after) of one softmax_xent call."""
    grad = backend.empty(logits.shape)
    active = np.ones(len(logits), np.int32) if active is None else np.array(active, np.int32)
    losses = backend.softmax_xent(logits, labels, grad, active)
    return losses, grad, active


def test_softmax_xent_uniform_logits(backend):
    # Equal logits: softmax is 1/C everywhere, the loss is ln C, grad = (1/C - onehot) / B.
    batch, classes = 4, 10
    logits = np.full((1, batch, classes), 3.0, np.float32)
    labels = np.array([[0, 9, 3, 3]], np.int32)
    losses, grad, _ = softmax_xent(backend, logits, labels)
    assert losses[0] == pytest.approx(math.log(10), rel=1e-6)
    expected = np.full((batch, classes), 0.1 / batch, np.float32)
    expected[np.arange(batch), labels[0]] -= 1 / batch
    np.testing.assert_allclose(grad[0], expected, rtol=1e-6, atol=1e-7)


def test_softmax_xent_is_stable_for_huge_logits(backend):
    # Two classes 1000 apart: softmax is (1, e^-1000 = 0); the loss is 0 or 1000 by label.
    logits = f32([[[1000, 0], [1000, 0]]])
    losses, grad, _ = softmax_xent(backend, logits, np.array([[0, 1]], np.int32))
    assert losses[0] == pytest.approx((0 + 1000) / 2)
    np.testing.assert_allclose(grad[0], [[0, 0], [0.5, -0.5]], atol=1e-7)


def test_softmax_xent_two_classes_closed_form_and_each_members_own_mean(backend):
    # logits (0, ln 3): softmax (1/4, 3/4); a second member with label 1 has loss ln(4/3).
    logits = f32([[[0, math.log(3)]], [[0, math.log(3)]]])
    losses, grad, _ = softmax_xent(backend, logits, np.array([[0], [1]], np.int32))
    np.testing.assert_allclose(losses, [math.log(4), math.log(4 / 3)], rtol=1e-6)
    np.testing.assert_allclose(grad[0], [[0.25 - 1, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(grad[1], [[0.25, 0.75 - 1]], rtol=1e-6)


def test_softmax_xent_stops_a_member_whose_loss_is_not_finite(backend):
    logits = f32([[[0, 1]], [[np.inf, 0]], [[0, 1]]])
    labels = np.array([[1], [0], [1]], np.int32)
    losses, _, active = softmax_xent(backend, logits, labels, active=[1, 1, 0])
    assert math.isfinite(losses[0]) and not math.isfinite(losses[1]) and math.isfinite(losses[2])
    np.testing.assert_array_equal(active, [1, 0, 0])  # a stopped member stays stopped


def test_sgd_leaves_a_stopped_member_as_it_is_even_with_a_nan_gradient(backend):
    parameter = f32([[1, 2], [3, 4]])
    backend.sgd_update(parameter, f32([[1, 1], [np.nan, np.inf]]), f32([1.0, 1.0]), np.array([1, 0], np.int32))
    np.testing.assert_array_equal(parameter, [[0, 1], [3, 4]])
    weights = f32([[[5]], [[6]]])
    backend.matmul_sgd(f32([[[np.inf]], [[np.inf]]]), f32([[[0]], [[0]]]), weights, f32([1.0, 1.0]),
                       np.array([1, 0], np.int32), trans_a=True)
    assert np.isnan(weights[0, 0, 0]) and weights[1, 0, 0] == 6  # inf * 0 = NaN, but only for a member that trains


def test_sgd_update_in_place_at_each_members_rate(backend):
    parameter = f32([[1, 2, 3], [1, 2, 3]])
    alias = parameter
    backend.sgd_update(parameter, f32([[10, -10, 0], [10, -10, 0]]), f32([0.5, 0.1]), np.ones(2, np.int32))
    assert alias is parameter
    np.testing.assert_array_equal(parameter, [[-4, 7, 3], [0, 3, 3]])


def test_in_top_k_ties_count_as_correct(backend):
    logits = f32([[[1, 5, 5], [1, 5, 5], [9, 5, 5], [2, 2, 2]]])
    labels = np.array([1, 2, 1, 0], np.int32)
    # rows 0, 1: tie with the max (correct); row 2: 9 > 5 (wrong); row 3: all tied (correct)
    assert backend.in_top_k(logits, labels, 1).tolist() == [3]
    assert backend.in_top_k(logits, labels, 2).tolist() == [4]


def test_in_top_k_counts_each_member_on_the_same_labels(backend):
    logits = f32([[[1, 0], [1, 0]], [[0, 1], [1, 0]], [[0, 1], [0, 1]]])
    assert backend.in_top_k(logits, np.array([0, 0], np.int32), 1).tolist() == [2, 1, 0]


def test_in_top_k_non_finite_rows_and_bad_labels_count_as_wrong(backend):
    logits = f32([[
        [np.nan, 1, 0],   # NaN target
        [np.inf, 1, 0],   # +inf target would win, but TF says a non-finite row cannot be judged
        [0, np.nan, 5],   # NaN elsewhere in the row
        [0, -np.inf, 5],  # -inf elsewhere in the row
        [0, 1, 5],        # label out of range
        [0, 1, 5],        # the one correct row
    ]])
    labels = np.array([0, 0, 2, 2, 3, 2], np.int32)
    assert backend.in_top_k(logits, labels, 1).tolist() == [1]
    assert backend.in_top_k(logits, np.array([0, 0, 2, 2, -1, 2], np.int32), 1).tolist() == [1]


def test_gather_rows_with_each_members_indices(backend):
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = backend.empty((2, 3, 3))
    backend.gather_rows(table, np.array([[3, 0, 3], [1, 1, 2]]), out)
    np.testing.assert_array_equal(out[0], [[9, 10, 11], [0, 1, 2], [9, 10, 11]])
    np.testing.assert_array_equal(out[1], [[3, 4, 5], [3, 4, 5], [6, 7, 8]])
    labels = np.array([7, 8, 9, 6], np.int32)
    out_labels = backend.empty((2,), np.int32)  # evaluation's rows: the same for every member
    backend.gather_rows(labels, np.array([2, 1]), out_labels)
    np.testing.assert_array_equal(out_labels, [9, 8])


def test_gather_images_scales_like_tensorflow(backend):
    pixels = np.array([[0, 255, 128], [1, 2, 3], [51, 102, 204]], np.uint8)
    out = backend.empty((1, 2, 3))
    backend.gather_images(pixels, np.array([[2, 0]]), out)
    np.testing.assert_allclose(out[0], [[0.2, 0.4, 0.8], [0, 1, 128 / 255]], rtol=1e-7)
    assert out[0, 1, 1] == 1.0  # 255 / 255 is exactly one


def test_arrays_are_float32_by_default_and_integers_stay_integers(backend):
    assert backend.empty((2, 2)).dtype == np.float32
    assert backend.zeros(3).dtype == np.float32
    assert backend.asarray([1.5, 2]).dtype == np.float32
    assert backend.asarray(np.array([1, 2], np.float64)).dtype == np.float32
    assert backend.asarray(np.array([1, 2], np.int32)).dtype == np.int32
    assert backend.asarray(np.array([1, 2], np.uint8)).dtype == np.uint8
