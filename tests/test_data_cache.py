"""The decompressed cache: used only while it verifies, rebuilt silently when it does not, never trusted blindly."""
import gzip
import json
import os
import shutil

import numpy as np
import pytest

from mnist_gpu import data_cache, input_data
from mnist_gpu.errors import DataError
from mnist_gpu.idx_files import DATASETS

LABELS = DATASETS["mnist"]["train_labels"]
IMAGES = DATASETS["mnist"]["train_images"]


@pytest.fixture
def data_dir(tmp_path, mnist_dir):
    """An input_data_dir holding its own copy of the four files."""
    for expected in DATASETS["mnist"].values():
        shutil.copy(os.path.join(mnist_dir, expected.name), tmp_path / expected.name)
    return tmp_path


@pytest.fixture
def decompressions(monkeypatch):
    """Counts the gzip files read and verified (the work the cache saves)."""
    names = []
    read_verified = input_data.read_verified

    def counting(path, expected):
        names.append(expected.name)
        return read_verified(path, expected)

    monkeypatch.setattr(input_data, "read_verified", counting)
    return names


def original(data_dir, expected):
    with gzip.open(data_dir / expected.name) as stream:
        return np.frombuffer(stream.read(), np.uint8, offset=16 if expected.kind == "images" else 8)


def cached_file(data_dir, expected):
    return data_cache.cache_path(str(data_dir), "mnist", expected)


def test_the_first_read_caches_and_the_next_reads_only_the_cache(data_dir, decompressions):
    first = input_data.read_data_sets(str(data_dir))
    assert len(decompressions) == 4
    second = input_data.read_data_sets(str(data_dir))
    assert len(decompressions) == 4  # nothing decompressed again
    np.testing.assert_array_equal(second.train.pixels, first.train.pixels)
    np.testing.assert_array_equal(second.test.labels, first.test.labels)
    assert not second.train.pixels.flags.writeable


@pytest.mark.parametrize("damage", ["deleted", "truncated", "flipped byte", "record edited", "record deleted",
                                    "record not an object", "not an npy"])
def test_a_damaged_cache_is_rebuilt_and_never_used(data_dir, decompressions, damage):
    input_data.read_data_sets(str(data_dir))
    path = cached_file(data_dir, IMAGES)
    if damage == "deleted":
        os.remove(path)
    elif damage == "truncated":
        with open(path, "r+b") as stream:
            stream.truncate(os.path.getsize(path) - 784)
    elif damage == "flipped byte":
        with open(path, "r+b") as stream:
            stream.seek(os.path.getsize(path) - 1000)
            value = stream.read(1)[0]
            stream.seek(-1, os.SEEK_CUR)
            stream.write(bytes([value ^ 0x10]))
    elif damage == "record edited":
        record = json.load(open(path + ".json"))
        record["crc32"] = "00000000"
        json.dump(record, open(path + ".json", "w"))
    elif damage == "record deleted":
        os.remove(path + ".json")
    elif damage == "record not an object":
        json.dump([], open(path + ".json", "w"))
    else:
        with open(path, "wb") as stream:
            stream.write(b"not an npy file at all")
    decompressions.clear()
    data_sets = input_data.read_data_sets(str(data_dir))
    assert decompressions == [IMAGES.name]  # only the damaged one was read from its gzip again
    pixels = np.concatenate([data_sets.validation.pixels, data_sets.train.pixels]).reshape(-1)
    np.testing.assert_array_equal(pixels, original(data_dir, IMAGES))
    decompressions.clear()
    input_data.read_data_sets(str(data_dir))
    assert decompressions == []  # and the rebuilt cache verifies


def test_a_replaced_source_is_verified_again_not_served_from_the_cache(data_dir, decompressions):
    input_data.read_data_sets(str(data_dir))
    labels = data_dir / LABELS.name
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[100] ^= 1  # a different label: the file no longer matches MNIST's checksum
    labels.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="checksum mismatch"):
        input_data.read_data_sets(str(data_dir))


def test_a_cache_of_other_data_is_not_used(data_dir, decompressions):
    input_data.read_data_sets(str(data_dir))
    path = cached_file(data_dir, LABELS)
    record = json.load(open(path + ".json"))
    record["md5"] = DATASETS["fashion_mnist"]["train_labels"].md5
    json.dump(record, open(path + ".json", "w"))
    decompressions.clear()
    input_data.read_data_sets(str(data_dir))
    assert decompressions == [LABELS.name]


def test_the_shipped_copy_is_cached_in_the_input_data_dir(tmp_path, decompressions):
    input_data.read_data_sets(str(tmp_path))
    input_data.read_data_sets(str(tmp_path))
    assert len(decompressions) == 4
    assert os.listdir(tmp_path) == ["cache"]
    record = json.load(open(cached_file(tmp_path, LABELS) + ".json"))
    assert [origin["source"] for origin in record["origins"]] == [os.path.realpath(
        os.path.join(input_data.PACKAGED_DIRECTORY, "mnist", LABELS.name))]


def test_two_sources_sharing_one_cache_do_not_rebuild_it_for_each_other(data_dir, decompressions, tmp_path_factory):
    """A checkout and an installed copy use the same default input_data_dir: each source is verified once."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")

    def move_sources(source, target):  # os.replace keeps each file's size and modification time
        for expected in DATASETS["mnist"].values():
            os.replace(os.path.join(source, expected.name), os.path.join(target, expected.name))

    input_data.read_data_sets(str(data_dir))  # the copies in data_dir
    move_sources(data_dir, elsewhere)
    input_data.read_data_sets(str(data_dir))  # the shipped copies
    assert len(decompressions) == 8
    for _ in range(2):
        move_sources(elsewhere, data_dir)
        input_data.read_data_sets(str(data_dir))
        move_sources(data_dir, elsewhere)
        data_sets = input_data.read_data_sets(str(data_dir))
    assert len(decompressions) == 8  # neither source was read again
    np.testing.assert_array_equal(data_sets.test.labels, original(elsewhere, DATASETS["mnist"]["test_labels"]))
    move_sources(elsewhere, data_dir)
    labels = data_dir / LABELS.name
    os.utime(labels, ns=(os.stat(labels).st_atime_ns, os.stat(labels).st_mtime_ns + 1))  # touched: verify again
    decompressions.clear()
    input_data.read_data_sets(str(data_dir))
    assert decompressions == [LABELS.name]


def test_cache_files_hold_no_pickle(data_dir):
    input_data.read_data_sets(str(data_dir))
    for expected in DATASETS["mnist"].values():
        array = np.load(cached_file(data_dir, expected), allow_pickle=False)  # raises if it needed pickle
        assert array.dtype == np.uint8 and len(array) == expected.count


@pytest.mark.parametrize("foreign", ["", data_cache.RECORD_SUFFIX])
def test_a_cache_another_user_wrote_is_not_used(data_dir, decompressions, foreign):
    """The labels' cached array, or its record, given to the user nobody (a real chown, as root): rebuilt from the
    gzip file, the other caches still used."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    input_data.read_data_sets(str(data_dir))
    os.chown(cached_file(data_dir, LABELS) + foreign, 65534, 65534)
    decompressions.clear()
    data_sets = input_data.read_data_sets(str(data_dir))
    assert decompressions == [LABELS.name]
    np.testing.assert_array_equal(data_sets.train.labels, original(data_dir, LABELS)[5000:])


@pytest.mark.parametrize("record", [
    "[" * 100000,  # JSON nested deeper than Python's stack: json raises RecursionError, not ValueError
    '{"md5": "%s", "origins": [{"source": "relative/path", "size": 1, "mtime_ns": 1}], "crc32": "00000000"}',
    '{"md5": "%s", "origins": [], "crc32": "00000000"}',
    '{"md5": "%s", "origins": [{"source": "/x", "size": 1, "mtime_ns": 1}], "crc32": 7}',
    '{"md5": "%s", "origins": [{"source": "/x", "size": 1, "mtime_ns": 1}], "crc32": "00000000", "more": 1}',
])
def test_a_malformed_record_means_rebuild_never_an_error(data_dir, decompressions, record):
    input_data.read_data_sets(str(data_dir))
    path = cached_file(data_dir, LABELS)
    with open(path + ".json", "w") as stream:
        stream.write(record.replace("%s", LABELS.md5))
    assert data_cache.read_record(path, LABELS) is None
    decompressions.clear()
    data_sets = input_data.read_data_sets(str(data_dir))
    assert decompressions == [LABELS.name]
    np.testing.assert_array_equal(data_sets.train.labels, original(data_dir, LABELS)[5000:])


@pytest.mark.parametrize("spoil", ["empty", "header"])
def test_an_npy_that_numpy_cannot_parse_means_rebuild(data_dir, decompressions, spoil):
    """Found by the fuzzing (test_fuzz_readers.py): np.load raises EOFError for an empty file and SyntaxError for a
    spoiled header, neither an OSError nor a ValueError."""
    input_data.read_data_sets(str(data_dir))
    path = cached_file(data_dir, LABELS)
    data = open(path, "rb").read()
    with open(path, "wb") as stream:
        stream.write(b"" if spoil == "empty" else data.replace(b"{'descr'", b"'descr'", 1))
    decompressions.clear()
    data_sets = input_data.read_data_sets(str(data_dir))
    assert decompressions == [LABELS.name]
    np.testing.assert_array_equal(data_sets.train.labels, original(data_dir, LABELS)[5000:])
