"""Whatever the cuda backend's libraries raise while loading is one line: `cuda: not usable: ...` in
`mnist-gpu check`, `mnist-gpu: error: ...` (exit 1) in training; never a traceback.

No GPU here, so a stand-in for CuPy says there is one, and the real numba-cuda and nvmath-python
then fail as they do without a driver, each with its own error type; stand-ins raise the errors
a broken install raises (a RuntimeError from nvmath's import, CuPy's CUDARuntimeError).
"""
import ctypes
import sys
from types import SimpleNamespace

import pytest

from mnist_gpu.check import usable_backends

from helpers import needs_cuda_packages, run_main

# Each case loads the real numba-cuda, and the real nvmath-python where it is not stood in.
pytestmark = needs_cuda_packages


class CUDARuntimeError(RuntimeError):
    """What CuPy raises for a failing CUDA runtime call (cupy_backends.cuda.api.runtime.CUDARuntimeError)."""


def cupy_that_sees_a_gpu(stream_error=None):
    class Stream:
        ptr = 0x5EA

        def __init__(self, non_blocking=False):
            if stream_error:
                raise stream_error

    return SimpleNamespace(is_available=lambda: True, cuda=SimpleNamespace(Stream=Stream))


def real_numba_cuda_without_a_driver(monkeypatch, tmp_path):
    """Nothing stood in: numba-cuda's external_stream initialises the driver, and raises CudaSupportError."""


def numba_cuda_on_a_stand_in_stream(monkeypatch, tmp_path):
    """numba-cuda's part stood in, so that loading reaches cuBLAS: the real nvmath's cublas.create() fails."""
    from mnist_gpu.kernels import numba_cuda

    monkeypatch.setattr(numba_cuda.cuda, "external_stream", lambda pointer: object())


def nvmath_that_raises_while_importing(monkeypatch, tmp_path):
    numba_cuda_on_a_stand_in_stream(monkeypatch, tmp_path)
    package = tmp_path / "nvmath"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise RuntimeError("nvmath-python needs cuda-pathfinder >= 1.5.1, found 1.3.0")\n')
    for name in [name for name in sys.modules if name == "nvmath" or name.startswith("nvmath.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))


def has_a_cuda_driver():
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


NO_DRIVER = {"numba-cuda: no driver", "nvmath: no driver"}  # the real libraries' own errors without a driver

CASES = {
    "numba-cuda: no driver": (None, real_numba_cuda_without_a_driver,
                              "--backend cuda could not load numba-cuda on CuPy's stream: CudaSupportError: Error at "
                              "driver init: CUDA driver library cannot be found."),
    "nvmath: no driver": (None, numba_cuda_on_a_stand_in_stream,
                          "--backend cuda could not load cuBLAS through nvmath-python: NotSupportedError: CUDA driver "
                          "is not found"),
    "nvmath: its import fails": (None, nvmath_that_raises_while_importing,
                                 "--backend cuda could not load cuBLAS through nvmath-python: RuntimeError: "
                                 "nvmath-python needs cuda-pathfinder >= 1.5.1, found 1.3.0"),
    "CuPy: its stream fails": (CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient\n"
                                                "for CUDA runtime version"), real_numba_cuda_without_a_driver,
                               "--backend cuda could not load CuPy: CUDARuntimeError: cudaErrorInsufficientDriver: "
                               "CUDA driver version is insufficient for CUDA runtime version"),
}


@pytest.fixture(params=list(CASES))
def failing_load(request, monkeypatch, tmp_path):
    """A machine where CuPy sees a GPU and one part of the cuda backend fails to load; yields the expected line."""
    if request.param in NO_DRIVER and has_a_cuda_driver():
        pytest.skip("shows what numba-cuda and nvmath raise without a CUDA driver; this machine has one")
    stream_error, arrange, expected = CASES[request.param]
    monkeypatch.setitem(sys.modules, "cupy", cupy_that_sees_a_gpu(stream_error))
    arrange(monkeypatch, tmp_path)
    return expected


def test_check_says_cuda_is_not_usable_in_one_line(failing_load):
    lines = []
    backends = usable_backends(lines.append)
    assert [backend.name for backend in backends] == ["numpy", "cpu"]
    cuda_lines = [line for line in lines if line.startswith("backend cuda: ")]
    assert len(cuda_lines) == 1 and cuda_lines[0].startswith(f"backend cuda: not usable: {failing_load}"), lines
    assert all("\n" not in line for line in lines)


def test_training_on_cuda_stops_with_one_error_line(failing_load, capsys, tmp_path):
    code, stdout, stderr = run_main(capsys, "--backend", "cuda", "--max_steps", "1", "--log_dir",
                                    str(tmp_path / "run"))
    assert code == 1 and stdout == []
    assert stderr.startswith(f"mnist-gpu: error: {failing_load}") and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "run").exists()
