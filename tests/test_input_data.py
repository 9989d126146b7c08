"""DataSet.next_batch's epoch semantics, fake data, and the real MNIST splits."""
import gzip
import os

import numpy as np
import pytest

from mnist_gpu.input_data import DataSet, read_data_sets


def numbered(count):
    """A DataSet whose one-pixel images and labels are their own index, so batches reveal the order."""
    return DataSet(np.arange(count, dtype=np.uint8)[:, None], np.arange(count, dtype=np.int32), seed=0)


def test_first_epoch_is_a_shuffled_permutation():
    data = numbered(12)
    seen = np.concatenate([data.next_batch(4)[1] for _ in range(3)])
    assert sorted(seen) == list(range(12))
    assert list(seen) != list(range(12))
    assert data.epochs_completed == 0  # a batch that ends exactly at the end does not finish the epoch


def test_images_are_the_pixels_scaled_as_tensorflow_does():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 784), dtype=np.uint8)
    pixels[0, :3] = (0, 1, 255)
    data = DataSet(pixels, np.arange(3, dtype=np.int32), seed=0)
    assert data.num_examples == 3
    images = data.next_batch(3, shuffle=False)[0]
    assert images.dtype == np.float32 and images[0, 0] == 0 and images[0, 2] == 1
    np.testing.assert_array_equal(images, pixels.astype(np.float32) * np.float32(1.0 / 255.0))
    with pytest.raises(ValueError, match="differ in length"):
        DataSet(pixels, np.arange(2, dtype=np.int32))


def test_batch_crossing_an_epoch_takes_the_rest_then_a_fresh_shuffle():
    data = numbered(10)
    first = np.concatenate([data.next_batch(3)[1] for _ in range(3)])  # 9 of 10
    assert data.epochs_completed == 0
    images, labels = data.next_batch(3)
    assert data.epochs_completed == 1
    assert len(labels) == 3
    (left_over,) = set(range(10)) - set(first)
    assert labels[0] == left_over
    assert labels[1] != labels[2]
    np.testing.assert_array_equal(np.rint(images[:, 0] * 255), labels)  # images and labels stay paired
    # The second epoch is a fresh permutation: its next 8 complete it exactly.
    second = np.concatenate([labels[1:], data.next_batch(8)[1]])
    assert sorted(second) == list(range(10))
    assert data.epochs_completed == 1


@pytest.mark.parametrize("batch_size, batches", [(3, 9), (7, 4), (1, 16)])
def test_batches_drawn_ahead_are_next_batch_indices_and_know_each_position(batch_size, batches):
    """draw_batches (the CUDA step program's index windows) against next_batch_indices and position()."""
    ahead, one_by_one = numbered(7), numbered(7)
    ahead.next_batch_indices(batch_size)  # start mid-epoch, the generator already used
    one_by_one.next_batch_indices(batch_size)
    out = np.full((batches, batch_size), -1, np.int32)
    positions = ahead.draw_batches(batch_size, out)
    assert one_by_one.epochs_completed == 0 and ahead.epochs_completed > 1  # the window crosses epochs
    for drawn, (order, fields) in zip(out, positions, strict=True):
        np.testing.assert_array_equal(drawn, one_by_one.next_batch_indices(batch_size))
        expected_order, expected_fields = one_by_one.position()
        np.testing.assert_array_equal(order, expected_order)
        assert fields == expected_fields
    resumed = numbered(7)  # a checkpoint of the window's third batch continues exactly
    resumed.restore_position(*positions[2])
    np.testing.assert_array_equal(resumed.next_batch_indices(batch_size), out[3])


def test_epochs_completed_counts_many_epochs():
    data = numbered(7)
    for _ in range(10):
        data.next_batch(5)
    assert data.epochs_completed == 50 // 7


def test_no_shuffle_keeps_file_order():
    data = numbered(5)
    batches = [list(data.next_batch(2, shuffle=False)[1]) for _ in range(4)]
    assert batches == [[0, 1], [2, 3], [4, 0], [1, 2]]


def test_order_comes_from_its_own_seed_not_numpys_global_rng():
    np.random.seed(123)
    global_state = np.random.get_state()[1].copy()
    first = [numbered(20).next_batch(20)[1] for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)  # untouched
    other = DataSet(np.zeros((20, 1), np.uint8), np.arange(20, dtype=np.int32), seed=1)
    assert list(other.next_batch(20)[1]) != list(first[0])


def test_bad_batch_sizes_are_refused():
    data = numbered(5)
    for batch_size in (0, -1, 6):
        with pytest.raises(ValueError, match="batch_size"):
            data.next_batch(batch_size)


def test_fake_data_is_tensorflows():
    data_sets = read_data_sets("unused", fake_data=True)
    for data in (data_sets.train, data_sets.validation, data_sets.test):
        assert data.num_examples == 10000
        images, labels = data.next_batch(7)
        assert images.shape == (7, 784) and images.dtype == np.float32 and (images == 1).all()
        assert labels.dtype == np.int32 and not labels.any()
        assert (data.pixels == 255).all()


def raw_idx(path, header_bytes):
    with gzip.open(path) as stream:
        return np.frombuffer(stream.read(), np.uint8, offset=header_bytes)


def test_real_mnist_splits(mnist_dir, tmp_path):
    data_sets = read_data_sets(mnist_dir)
    train_labels = raw_idx(os.path.join(mnist_dir, "train-labels-idx1-ubyte.gz"), 8)
    train_images = raw_idx(os.path.join(mnist_dir, "train-images-idx3-ubyte.gz"), 16).reshape(60000, 784)
    test_labels = raw_idx(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"), 8)
    assert (data_sets.train.num_examples, data_sets.validation.num_examples, data_sets.test.num_examples) == \
        (55000, 5000, 10000)
    np.testing.assert_array_equal(data_sets.validation.labels, train_labels[:5000])  # the FIRST 5000
    np.testing.assert_array_equal(data_sets.train.labels, train_labels[5000:])
    np.testing.assert_array_equal(data_sets.test.labels, test_labels)
    assert data_sets.train.images.dtype == np.float32 and data_sets.train.labels.dtype == np.int32
    # TF's input_data multiplies by 1/255 in float32 (not a division: the last bit differs).
    np.testing.assert_array_equal(data_sets.validation.images[:3],
                                  train_images[:3].astype(np.float32) * np.float32(1.0 / 255.0))
    assert data_sets.train.images.min() == 0 and data_sets.train.images.max() == 1
    for split in (data_sets.train, data_sets.validation, data_sets.test):
        np.testing.assert_array_equal(split.pixels * np.float32(1.0 / 255.0), split.images)
        assert not split.pixels.flags.writeable  # data sets are read, never written
    # The copy shipped inside the package is the same data.
    packaged = read_data_sets(str(tmp_path / "empty"))
    np.testing.assert_array_equal(packaged.test.images, data_sets.test.images)
    assert os.listdir(tmp_path / "empty") == ["cache"]  # nothing downloaded: only the decompressed copies


def test_validation_size(mnist_dir):
    data_sets = read_data_sets(mnist_dir, validation_size=0)
    assert data_sets.train.num_examples == 60000 and data_sets.validation.num_examples == 0
    with pytest.raises(ValueError, match="validation_size"):
        read_data_sets(mnist_dir, validation_size=60001)
