"""Kernel tests run where CUDA code can run: Numba's simulator (CPU) or a real GPU.

The main test run starts them in a separate process with NUMBA_ENABLE_CUDASIM=1
(tests/test_cuda_simulator.py); on a GPU machine `pytest tests/cuda` runs them on the GPU.
"""
import pytest

from mnist_gpu.backends import get_backend


@pytest.fixture(scope="session")
def cuda_backend():
    return get_backend("cuda")
