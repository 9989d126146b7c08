"""Every bad data file is refused with a message naming it and what was expected; nothing is changed."""
import gzip
import os
import shutil
import subprocess
import sys

import pytest

from mnist_gpu.errors import DataError
from mnist_gpu.input_data import read_data_sets

LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"


def raw(mnist_dir, name):
    with gzip.open(os.path.join(mnist_dir, name)) as stream:
        return bytearray(stream.read())


def write_gz(path, data):
    with gzip.open(path, "wb", compresslevel=1) as stream:
        stream.write(bytes(data))


def corrupted(mnist_dir, name, change):
    data = raw(mnist_dir, name)
    change(data)
    return data


def set_word(offset, value):
    def change(data):
        data[offset:offset + 4] = value.to_bytes(4, "big")
    return change


def flip_byte(offset):
    def change(data):
        data[offset] ^= 0x01
    return change


CASES = {
    # name: (file, how to spoil it, what the message must say)
    "label magic": (LABELS, set_word(0, 2051), r"invalid magic number 2051 in MNIST label file; expected 2049"),
    "image magic": (TEST_IMAGES, set_word(0, 2049), r"invalid magic number 2049 in MNIST image file; expected 2051"),
    "label count": (LABELS, set_word(4, 59999), r"header says 59999 labels; expected 60000"),
    "image count": (TEST_IMAGES, set_word(4, 10001), r"header says 10001 images; expected 10000"),
    "image rows": (TEST_IMAGES, set_word(8, 32), r"images are 32x28; expected 28x28"),
    "checksum": (LABELS, flip_byte(100), r"checksum mismatch: decompressed MD5 is [0-9a-f]{32}; expected a25bea73"),
    "size": (LABELS, lambda data: data.extend(b"\0"), r"decompressed size is more than 60008 bytes; expected 60008"),
}


@pytest.mark.parametrize("case", CASES)
def test_corrupt_file_in_train_dir_is_refused_and_kept(mnist_dir, tmp_path, case):
    name, change, message = CASES[case]
    path = tmp_path / name
    write_gz(path, corrupted(mnist_dir, name, change))
    before = path.read_bytes()
    with pytest.raises(DataError, match=message) as error:
        read_data_sets(str(tmp_path))
    assert str(path) in str(error.value)
    assert path.read_bytes() == before  # never replaced, deleted or silently reused


def test_truncated_gzip_is_refused(mnist_dir, tmp_path):
    data = (open(os.path.join(mnist_dir, LABELS), "rb").read())
    (tmp_path / LABELS).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"not a complete gzip file .*expected a gzip-compressed IDX file"):
        read_data_sets(str(tmp_path))


def test_html_instead_of_gzip_is_refused(tmp_path):
    (tmp_path / LABELS).write_bytes(b"<html><body>403 Forbidden</body></html>")
    with pytest.raises(DataError, match=f"{LABELS}: not a complete gzip file"):
        read_data_sets(str(tmp_path))


def test_valid_files_in_train_dir_are_used(mnist_dir, tmp_path):
    shutil.copy(os.path.join(mnist_dir, LABELS), tmp_path / LABELS)
    assert read_data_sets(str(tmp_path)).train.num_examples == 55000


def test_missing_files_with_no_network(tmp_path):
    # Fashion-MNIST is not shipped, and nothing listens on port 9 of the loopback interface.
    with pytest.raises(DataError) as error:
        read_data_sets(str(tmp_path), dataset="fashion_mnist", source_url="http://127.0.0.1:9/", retry_wait=0)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz: not present and could not be downloaded" in message
    assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz" in message
    assert os.listdir(tmp_path) == []  # no partial file left behind


def run_cli(*flags, cwd):
    return subprocess.run([sys.executable, "-m", "mnist_gpu", *flags], capture_output=True, text=True, cwd=cwd)


def test_command_line_reports_bad_data_in_one_line(mnist_dir, tmp_path):
    write_gz(tmp_path / LABELS, corrupted(mnist_dir, LABELS, set_word(0, 7)))
    result = run_cli("--input_data_dir", str(tmp_path), "--log_dir", str(tmp_path / "logs"),
                     "--backend", "numpy", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mnist-gpu: error: ") and "invalid magic number 7" in lines[0] and LABELS in lines[0]


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A 100 KB file that inflates to 100 MB: refused for its size after reading one byte past the expected size."""
    import tracemalloc
    import zlib

    from mnist_gpu.idx_files import DATASETS, read_verified

    expected = DATASETS["mnist"]["train_labels"]
    compressor, chunk = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(2 ** 20)  # wbits 31: a gzip stream
    with open(tmp_path / LABELS, "wb") as stream:
        stream.write(compressor.compress((2049).to_bytes(4, "big") + (60000).to_bytes(4, "big")))  # a good header
        for _ in range(100):
            stream.write(compressor.compress(chunk))
        stream.write(compressor.flush())
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="decompressed size is more than 60008 bytes; expected 60008"):
            read_verified(str(tmp_path / LABELS), expected)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * expected.size  # not the 100 MB it inflates to
