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


def test_blas_wrapper_loads_from_the_disk_cache_and_still_computes_right(tmp_path):
    """The sgemm wrapper holds no per-process address, so a second process loads it compiled."""
    if find_sgemm() is None:
        pytest.skip("NumPy's BLAS here is not its bundled OpenBLAS: the cpu backend falls back to NumPy")
    script = textwrap.dedent("""
        import numpy as np
        from mnist_gpu.backends.openblas import find_sgemm
        sgemm = find_sgemm()
        generator = np.random.default_rng(0)
        a, b = generator.random((5, 7), dtype=np.float32), generator.random((5, 3), dtype=np.float32)
        c = generator.random((7, 3), dtype=np.float32)
        expected = c - np.float32(0.5) * (a.T @ b)
        sgemm(a, b, c, np.float32(-0.5), np.float32(1.0), True, False)
        np.testing.assert_allclose(c, expected, rtol=1e-6, atol=1e-6)
        print(sum(sgemm.stats.cache_hits.values()))
    """)
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    cache_hits = [subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                                 check=True).stdout.strip() for _ in range(2)]
    assert cache_hits == ["0", "1"]
