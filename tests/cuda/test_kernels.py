"""The CUDA kernels against the NumPy backend: the shared cases of tests/backend_equivalence.py."""
import pytest

from mnist_gpu.backends import get_backend

from backend_equivalence import *  # noqa: F403 - the shared test cases


@pytest.fixture(scope="session")
def candidate():
    return get_backend("cuda")
