"""The cpu backend's Numba kernels against the NumPy backend: the shared cases of backend_equivalence.py."""
import os
import subprocess
import sys
import textwrap

import pytest

from mnist_gpu.backends import get_backend
from mnist_gpu.backends.openblas import find_sgemm

from backend_equivalence import *  # noqa: F403 - the shared test cases


@pytest.fixture(scope="session")
def candidate():
    return get_backend("cpu")


@pytest.mark.slow
def test_blas_wrapper_loads_from_the_disk_cache_and_still_computes_right(tmp_path):
    """The sgemm wrappers hold no per-process address, so a second process loads them compiled."""
    if find_sgemm() is None:
        pytest.skip("NumPy's BLAS here is not its bundled OpenBLAS: the cpu backend falls back to NumPy")
    script = textwrap.dedent("""
        import numpy as np
        from mnist_gpu.backends.openblas import find_sgemm
        sgemm = find_sgemm()
        generator = np.random.default_rng(0)
        a, b = generator.random((2, 5, 7), dtype=np.float32), generator.random((2, 5, 3), dtype=np.float32)
        c = generator.random((2, 7, 3), dtype=np.float32)
        expected = c - np.float32([0.5, 0.25])[:, None, None] * (a.transpose(0, 2, 1) @ b)
        sgemm.one(a[0], b[0], c[0], np.float32(-0.5), np.float32(1.0), True, False)
        sgemm.members(a[1:], b[1:], c[1:], np.float32([-0.25]), np.float32(1.0), True, False, np.int32([1]))
        np.testing.assert_allclose(c, expected, rtol=1e-6, atol=1e-6)
        print(sum(sgemm.one.stats.cache_hits.values()) + sum(sgemm.members.stats.cache_hits.values()))
    """)
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    cache_hits = [subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                                 check=True).stdout.strip() for _ in range(2)]
    assert cache_hits == ["0", "2"]
