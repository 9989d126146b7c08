"""Shared fixtures: where the real MNIST files live, and a local HTTP server for download tests."""
import os

# One BLAS thread in the test process and the processes it starts. No test measures threading, and
# on a busy 2-core machine OpenBLAS's spinning threads fight every other process: the same 300
# NumPy steps took 0.27-6.95 s with its default threads and 0.23-0.32 s with one. The processes
# the tests start read the variable when their NumPy loads; this process is pinned through
# OpenBLAS's own call below, because NumPy may be loaded already: a pytest plugin that imports it
# (jaxtyping's does) runs before any conftest. The benchmarks (bench/) run without this file and
# keep the default.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import functools
import http.server
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mnist_gpu.backends import blas_library
from mnist_gpu.backends.gpu_probe import gpu_available
from mnist_gpu.backends.numpy_backend import NumpyBackend
from mnist_gpu.input_data import PACKAGED_DIRECTORY

blas_library.set_threads(1)  # where NumPy has another BLAS, its own thread setting stays (no test depends on it)

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def find_mnist():
    """Real MNIST: $MNIST_DATA_DIR if set, else ../shared/data/mnist beside the checkout, else the shipped copy."""
    shared = os.path.join(os.path.dirname(REPOSITORY), "shared", "data", "mnist")
    if os.environ.get("MNIST_DATA_DIR"):
        return os.environ["MNIST_DATA_DIR"]
    return shared if os.path.isdir(shared) else os.path.join(PACKAGED_DIRECTORY, "mnist")


def pytest_ignore_collect(collection_path, config):
    """tests/cuda runs in this process only where CUDA code can: the simulator or a real GPU.

    Elsewhere test_cuda_simulator.py runs it in a subprocess with NUMBA_ENABLE_CUDASIM=1.
    """
    if collection_path.name == "cuda" and collection_path.parent == Path(__file__).parent:
        return not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or gpu_available())
    return None


@pytest.fixture(scope="session", autouse=True)
def own_default_folders(tmp_path_factory):
    """The per-user default folders (mnist_gpu/locations.py: the data cache, the runs made without --log_dir) in a
    folder of the test session's own, for this process and the ones it starts: no test writes the real home."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        patch.setenv("XDG_DATA_HOME", str(home / "data"))
        yield home


@pytest.fixture(scope="session")
def numpy_backend():
    return NumpyBackend()


@pytest.fixture
def generator():
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A folder with links to the four real MNIST files (see find_mnist). Missing is a failure, never a skip.

    Links in a folder of the test session's own: runs given it as --input_data_dir keep their
    decompressed copies (input_data_dir/cache) here, not beside the shared or installed files.
    """
    source = find_mnist()
    missing = [name for name in MNIST_FILES if not os.path.exists(os.path.join(source, name))]
    if missing:
        pytest.fail(f"real MNIST is needed at {source}; missing {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("mnist")
    for name in MNIST_FILES:
        os.symlink(os.path.join(source, name), folder / name)
    return str(folder)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    failures_left = {}  # path -> how many more requests get a 500, per server

    def log_message(self, *args):
        pass

    def do_GET(self):
        remaining = self.server.failures_left.get(self.path, 0)
        if remaining:
            self.server.failures_left[self.path] = remaining - 1
            self.send_error(500, "injected failure")
            return
        self.server.requests.append(self.path)
        super().do_GET()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hangs up mid-file (a download stopped by a full disk, say) is the client's business:
        the standard server prints a traceback to stderr, which would land in the output the test checks."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def http_server(tmp_path_factory):
    """Serve a fresh folder (outside tmp_path) on 127.0.0.1; yields (folder, base URL, server)."""
    folder = tmp_path_factory.mktemp("served")
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    server.failures_left = {}
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()
