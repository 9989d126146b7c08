"""The cpu backend's Numba kernels against the NumPy backend: the shared cases of backend_equivalence.py."""
import pytest

from backend_equivalence import *  # noqa: F401,F403 - the shared test cases
from mnist_gpu.backends import get_backend


@pytest.fixture(scope="session")
def candidate():
    return get_backend("cpu")
