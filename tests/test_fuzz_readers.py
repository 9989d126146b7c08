"""Every reader against hostile files (hypothesis): valid files mutated, truncated, extended, or rewritten field by
field. Each read either gives the valid data or raises that reader's own one-line error, never anything else:
the IDX reader DataError, the checkpoint and state-file readers CheckpointError; the cache never raises (None).

Bounded for CI: a fixed number of examples each, about ten seconds in all on the 2-core machine.
"""
import gzip
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import data_cache
from mnist_gpu import model as mnist
from mnist_gpu.backends.numpy_backend import NumpyBackend
from mnist_gpu.errors import CheckpointError, DataError
from mnist_gpu.idx_files import DATASETS, read_verified
from mnist_gpu.input_data import DataSet, read_data_sets

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LABELS = DATASETS["mnist"]["test_labels"]  # the smallest file: 10008 bytes inflated


@st.composite
def mutated(draw, data, header=256):
    """`data` with a few bytes flipped (mostly in its first `header` bytes, where parsing happens), or cut short,
    or extended, or with a stretch replaced."""
    data = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    anywhere = st.integers(0, len(data) - 1)
    position = st.one_of(st.integers(0, min(header, len(data)) - 1), anywhere)
    if kind == "flip":
        for index in draw(st.lists(position, min_size=1, max_size=6)):
            data[index] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[draw(anywhere):]
    elif kind == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    else:
        start = draw(position)
        data[start:start + draw(st.integers(0, 16))] = draw(st.binary(max_size=16))
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def labels_gz(mnist_dir):
    with open(os.path.join(mnist_dir, LABELS.name), "rb") as stream:
        data = stream.read()
    return data, read_verified(os.path.join(mnist_dir, LABELS.name), LABELS)


def read_idx_bytes(folder, data):
    path = folder / LABELS.name
    path.write_bytes(data)
    try:
        return read_verified(str(path), LABELS)
    except DataError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return None


@FUZZ
@given(data=st.data())
def test_the_idx_reader_on_mutated_gzip_files(folder, labels_gz, data):
    compressed, labels = labels_gz
    result = read_idx_bytes(folder, data.draw(mutated(compressed, header=32)))
    assert result is None or np.array_equal(result, labels)


@FUZZ
@given(data=st.data())
def test_the_idx_reader_on_mutated_idx_contents(folder, labels_gz, data):
    """Inflated, spoiled, compressed again: the gzip layer passes and the IDX checks must catch it."""
    _, labels = labels_gz
    raw = (2049).to_bytes(4, "big") + (10000).to_bytes(4, "big") + labels.tobytes()
    result = read_idx_bytes(folder, gzip.compress(data.draw(mutated(raw, header=16)), compresslevel=1))
    assert result is None or np.array_equal(result, labels)


def small_checkpoint():
    """A checkpoint of a 784-5-4-10 network on fake data (10000 rows), as a run writes it."""
    generator = np.random.default_rng(7)
    order = generator.permutation(10000)
    position = {"index_in_epoch": 30, "epochs_completed": 1, "generator": generator.bit_generator.state}
    flags = {"hidden1": 5, "hidden2": 4, "batch_size": 10, "learning_rate": 0.01, "seed": 7, "dataset": "mnist",
             "fake_data": True}
    return checkpoints.Checkpoint(mnist.initial_variables(5, 4, seed=7), 1003, flags, order, position)


@pytest.fixture(scope="module")
def checkpoint_file(folder):
    path = folder / "model.ckpt-1002.safetensors"
    checkpoints.write(str(path), small_checkpoint())
    return path.read_bytes()


def usable(checkpoint):
    """What the trainer and eval do with a checkpoint that loads: build the model, infer, restore the data position."""
    flags = checkpoint.flags
    model = mnist.Model(NumpyBackend(), mnist.stacked([checkpoint.variables]), flags["batch_size"],
                        [flags["learning_rate"]], checkpoint.global_step)
    logits = mnist.inference(model.resized(1), np.zeros((1, mnist.IMAGE_PIXELS), np.float32))
    assert logits.shape == (1, 1, mnist.NUM_CLASSES)
    data_set = DataSet(np.zeros((10000, mnist.IMAGE_PIXELS), np.uint8), np.zeros(10000, np.int32))
    data_set.restore_position(checkpoint.data_order, checkpoint.data_position)
    assert len(data_set.next_batch_indices(flags["batch_size"])) == flags["batch_size"]


def read_checkpoint_bytes(folder, data):
    path = folder / "fuzzed.safetensors"
    path.write_bytes(data)
    try:
        return checkpoints.read(str(path))
    except CheckpointError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{path}: ")
        return None


@FUZZ
@given(data=st.data())
def test_the_checkpoint_reader_on_mutated_files(folder, checkpoint_file, data):
    loaded = read_checkpoint_bytes(folder, data.draw(mutated(checkpoint_file, header=1200)))
    if loaded is not None:  # only a change the hash does not cover (the header's layout): the same checkpoint
        original = small_checkpoint()
        assert loaded.global_step == original.global_step and loaded.flags == original.flags
        np.testing.assert_array_equal(loaded.data_order, original.data_order)
        for name, value in original.variables.items():
            np.testing.assert_array_equal(loaded.variables[name], value)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children,
                                                                                         max_size=3), max_leaves=6)
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8])


@st.composite
def rewritten(draw, metadata, tensors):
    """The checkpoint with some fields replaced by plausible or absurd values, and its hash recomputed."""
    metadata, tensors = dict(metadata), dict(tensors)
    for field in ("flags", "data_position"):
        value = json.loads(metadata[field])
        for key in draw(st.lists(st.sampled_from(sorted(value) + ["extra"]), max_size=2, unique=True)):
            near = value.get(key, 0)
            value[key] = draw(st.one_of(JSON, st.integers(-2, 2).map(lambda step, near=near: near + step
                                                                     if type(near) is int else step)))
            if draw(st.booleans()) and key in value and key != "extra":
                del value[key]
        if field == "data_position" and isinstance(value.get("generator"), dict) and draw(st.booleans()):
            words = value["generator"].get("state")
            if isinstance(words, dict):
                words[draw(st.sampled_from(["state", "inc"]))] = draw(st.integers(-1, 2 ** 130))
        metadata[field] = json.dumps(value)
    if draw(st.booleans()):
        metadata[draw(st.sampled_from(["provenance", "format", "other"]))] = draw(JSON.map(json.dumps))
    for name in draw(st.lists(st.sampled_from(sorted(tensors) + ["extra/weights"]), max_size=2, unique=True)):
        if draw(st.booleans()) and name in tensors:
            del tensors[name]
            continue
        shape = tensors[name].shape if name in tensors and draw(st.booleans()) else \
            tuple(draw(st.lists(st.integers(0, 12), max_size=2)))
        values = draw(st.sampled_from(["zeros", "range", "nan", "negative"]))
        array = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) if values == "range" else \
            np.full(shape, {"zeros": 0, "nan": np.nan, "negative": -3}[values])
        dtype = draw(DTYPES)
        tensors[name] = np.asarray(np.nan_to_num(array) if values == "nan" and dtype not in (
            np.float32, np.float64, np.float16) else array, dtype=dtype)
    metadata["sha256"] = checkpoints.content_hash(tensors, metadata)
    return metadata, tensors


@FUZZ
@given(data=st.data())
def test_the_checkpoint_reader_on_rewritten_fields_with_a_correct_hash(folder, checkpoint_file, data):
    (folder / "original.safetensors").write_bytes(checkpoint_file)
    with safe_open(str(folder / "original.safetensors"), framework="numpy") as opened:
        metadata = dict(opened.metadata())
        tensors = {name: opened.get_tensor(name) for name in opened.keys()}
    del metadata["sha256"]
    metadata, tensors = data.draw(rewritten(metadata, tensors))
    path = folder / "fuzzed.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    try:
        loaded = checkpoints.read(str(path))
    except CheckpointError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{path}: ")
        event(f"refused: {str(error).split(': ')[1].split(' ')[0]}")  # the field (see --hypothesis-show-statistics)
        return
    event("accepted")
    usable(loaded)  # accepted: then it must work wherever a checkpoint is used


STATE_LINES = st.one_of(
    st.builds('all_model_checkpoint_paths: "{}"'.format, st.one_of(
        st.integers(0, 10 ** 6).map(checkpoints.checkpoint_name), st.text(max_size=30),
        st.sampled_from(["/etc/passwd", "../model.ckpt-1.safetensors", "model.ckpt-1.safetensors/.."]))),
    st.builds('model_checkpoint_path: "{}"'.format, st.integers(0, 3).map(checkpoints.checkpoint_name)),
    st.text(max_size=40))


@FUZZ
@given(data=st.data())
def test_the_state_file_reader(folder, data):
    names = [checkpoints.checkpoint_name(step) for step in (0, 1, 2, 3)]
    text = checkpoints.state_text(names)
    if data.draw(st.booleans()):
        lines = text.splitlines()
        for _ in range(data.draw(st.integers(1, 3))):
            lines.insert(data.draw(st.integers(0, len(lines))), data.draw(STATE_LINES))
        spoiled = "\n".join(lines).encode("utf-8", "surrogatepass")
    else:
        spoiled = data.draw(mutated(text.encode(), header=len(text)))
    log_dir = folder / "state"
    log_dir.mkdir(exist_ok=True)
    (log_dir / "checkpoint").write_bytes(spoiled)
    try:
        read = checkpoints.read_state(str(log_dir))
    except CheckpointError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{log_dir / 'checkpoint'}: ")
        event("refused")
        return
    event("accepted")
    assert all(checkpoints.NAME_PATTERN.fullmatch(name) for name in read) and len(set(read)) == len(read)


@pytest.fixture(scope="module")
def cached_labels(folder, mnist_dir):
    """An input_data_dir whose cache holds the training labels, and a pristine copy of that cache."""
    data_dir = folder / "data"
    data_dir.mkdir()
    for expected in DATASETS["mnist"].values():
        os.symlink(os.path.join(mnist_dir, expected.name), data_dir / expected.name)
    read_data_sets(str(data_dir))
    expected = DATASETS["mnist"]["train_labels"]
    path = data_cache.cache_path(str(data_dir), "mnist", expected)
    pristine = {suffix: open(path + suffix, "rb").read() for suffix in ("", data_cache.RECORD_SUFFIX)}
    source = str(data_dir / expected.name)
    return path, source, expected, pristine, read_verified(source, expected)


@FUZZ
@given(data=st.data())
def test_the_cache_reader_on_mutated_caches_and_records(cached_labels, data):
    path, source, expected, pristine, labels = cached_labels
    spoiled = data.draw(st.sampled_from(sorted(pristine)))
    for suffix, content in pristine.items():
        with open(path + suffix, "wb") as stream:
            stream.write(data.draw(mutated(content, header=160)) if suffix == spoiled else content)
    array = data_cache.load(path, source, expected)
    assert array is None or np.array_equal(array, labels)
