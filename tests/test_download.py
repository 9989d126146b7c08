"""Downloads from a local HTTP server on 127.0.0.1: mirrors, retries, verification, no partial files."""
import contextlib
import http.server
import os
import shutil
import threading

import pytest

from mnist_gpu import download
from mnist_gpu.errors import DataError
from mnist_gpu.idx_files import DATASETS, gzip_limit
from mnist_gpu.input_data import read_data_sets

LABELS = DATASETS["mnist"]["train_labels"]


def serve(folder, mnist_dir, *names):
    for name in names:
        shutil.copy(os.path.join(mnist_dir, name), folder / name)


def test_download_verifies_then_renames_into_place(http_server, mnist_dir, tmp_path):
    folder, url, server = http_server
    serve(folder, mnist_dir, LABELS.name)
    target = tmp_path / "data"
    labels = download.download(LABELS, str(target), [url], retry_wait=0)
    assert labels.shape == (60000,) and labels[0] == 5
    assert os.listdir(target) == [LABELS.name]
    assert (target / LABELS.name).read_bytes() == (folder / LABELS.name).read_bytes()


def test_next_mirror_is_tried_after_a_missing_file(http_server, mnist_dir, tmp_path):
    folder, url, server = http_server
    (folder / "good").mkdir()
    serve(folder / "good", mnist_dir, LABELS.name)
    download.download(LABELS, str(tmp_path), [url + "missing/", url + "good/"], retry_wait=0)
    assert server.requests == ["/missing/" + LABELS.name, "/good/" + LABELS.name]  # the 404 is not retried
    assert os.listdir(tmp_path) == [LABELS.name]


def test_server_errors_are_retried(http_server, mnist_dir, tmp_path):
    folder, url, server = http_server
    serve(folder, mnist_dir, LABELS.name)
    server.failures_left["/" + LABELS.name] = 2
    download.download(LABELS, str(tmp_path), [url], attempts=3, retry_wait=0)
    assert os.listdir(tmp_path) == [LABELS.name]


def test_corrupt_download_leaves_nothing(http_server, mnist_dir, tmp_path):
    folder, url, server = http_server
    data = open(os.path.join(mnist_dir, LABELS.name), "rb").read()
    (folder / LABELS.name).write_bytes(data[:-100])  # truncated in transit
    with pytest.raises(DataError, match=r"downloaded file is bad .*not a complete gzip file"):
        download.download(LABELS, str(tmp_path), [url], retry_wait=0)
    assert os.listdir(tmp_path) == []


def test_read_data_sets_downloads_what_is_missing_from_source_url(http_server, mnist_dir, tmp_path):
    folder, url, server = http_server
    names = [expected.name for expected in DATASETS["mnist"].values()]
    serve(folder, mnist_dir, *names)
    target = tmp_path / "data"
    data_sets = read_data_sets(str(target), source_url=url, retry_wait=0)
    assert data_sets.test.num_examples == 10000
    assert sorted(os.listdir(target)) == sorted(names + ["cache"])  # and their decompressed, verified copies
    assert sorted(os.listdir(target / "cache" / "mnist")) == sorted(
        name.replace(".gz", suffix) for name in names for suffix in (".npy", ".npy.json"))
    # A second call finds them all in place and asks the server for nothing.
    server.requests.clear()
    read_data_sets(str(target), source_url=url, retry_wait=0)
    assert server.requests == []


def test_fashion_mnist_is_checked_against_its_own_checksums(http_server, mnist_dir, tmp_path):
    folder, url, server = http_server
    serve(folder, mnist_dir, "train-images-idx3-ubyte.gz")  # MNIST bytes served as Fashion-MNIST
    with pytest.raises(DataError, match=r"checksum mismatch: .*expected f4a8712d7a061bf5bd6d2ca38dc4d50a"):
        read_data_sets(str(tmp_path), dataset="fashion_mnist", source_url=url, retry_wait=0)
    assert os.listdir(tmp_path) == []


class EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Sends zeros without a Content-Length until the client hangs up (at most a gigabyte), counting them."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        block = bytes(1 << 20)
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):
                self.wfile.write(block)
                self.server.sent += len(block)

    def log_message(self, *args):
        pass


def test_a_download_larger_than_its_file_can_be_is_refused_as_it_comes(http_server, tmp_path):
    """A server that announces too many bytes is refused before its body is read; one that never stops, once it has
    sent more than the file's gzip can take (they were written to disk to the end, then refused)."""
    limit = gzip_limit(LABELS.size)
    folder, url, server = http_server
    with open(folder / LABELS.name, "wb") as stream:
        stream.truncate(limit + 1)  # sparse: announced as limit + 1 bytes
    with pytest.raises(DataError, match=rf"the server sends more than {limit} bytes, the most a gzip file of this "
                                        rf"data takes \({limit + 1} announced\)"):
        download.download(LABELS, str(tmp_path / "announced"), [url], retry_wait=0)
    endless = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EndlessHandler)
    endless.sent = 0
    threading.Thread(target=endless.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DataError, match=rf"the server sends more than {limit} bytes"):
            download.download(LABELS, str(tmp_path / "endless"), [f"http://127.0.0.1:{endless.server_address[1]}/"],
                              retry_wait=0)
    finally:
        endless.shutdown()
        endless.server_close()
    assert endless.sent < limit + 8 * 2 ** 20  # what the sockets' buffers held when the client hung up
    assert os.listdir(tmp_path / "announced") == os.listdir(tmp_path / "endless") == []
