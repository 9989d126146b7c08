"""The cpu backend's Numba kernels against the NumPy backend: the shared cases of backend_equivalence.py."""
import os
import subprocess
import sys
import textwrap

import numpy as np
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


@pytest.mark.parametrize("shape", [((100, 784), (784, 128), False), ((100, 784), (100, 128), True),
                                   ((257, 784), (784, 128), False), ((3, 784), (784, 128), False)])
def test_a_product_in_row_blocks_does_not_depend_on_the_thread_counts(shape):
    """The tutorial's large products (images @ W1, W1's gradient) and odd ones: a solo call on Numba's threads,
    the same call on one Numba thread, and a member of a population of 3 give the same bits; with OpenBLAS on
    two threads (its blocks one after the other) the product is still right, against NumPy."""
    import numba

    from mnist_gpu.backends import blas_library

    sgemm = find_sgemm()
    if sgemm is None:
        pytest.skip("NumPy's BLAS here is not its bundled OpenBLAS: the cpu backend falls back to NumPy")
    (a_shape, b_shape, trans_a) = shape
    generator = np.random.default_rng(7)
    a = generator.standard_normal((3, *a_shape), dtype=np.float32)
    b = generator.standard_normal((3, *b_shape), dtype=np.float32)
    rows = a_shape[1] if trans_a else a_shape[0]
    start = generator.standard_normal((3, rows, b_shape[1]), dtype=np.float32)
    alpha, beta = np.float32(-0.25), np.float32(1.0)

    def solo(threads):
        c = start[1].copy()
        numba.set_num_threads(threads)
        try:
            sgemm.one(a[1], b[1], c, alpha, beta, trans_a, False)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        return c

    with blas_library.threads_for(1):
        on_all_threads, on_one_thread = solo(numba.config.NUMBA_NUM_THREADS), solo(1)
        members = start.copy()
        sgemm.members(a, b, members, np.float32([0.5, alpha, 2.0]), beta, trans_a, False, np.int32([1, 1, 1]))
    np.testing.assert_array_equal(on_all_threads, on_one_thread)
    np.testing.assert_array_equal(members[1], on_all_threads)
    with blas_library.threads_for(2):
        blas_threads = solo(numba.config.NUMBA_NUM_THREADS)
    product = (a[1].T if trans_a else a[1]).astype(np.float64) @ b[1]
    np.testing.assert_allclose(blas_threads, start[1] + alpha * product, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("given, spins", [({}, "3000"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "a while"),
                                          ({"OMP_WAIT_POLICY": "PASSIVE"}, "0"), ({"GOMP_SPINCOUNT": "1000"}, "1000")])
def test_the_cpu_backends_threads_spin_briefly_when_they_wait_unless_the_user_chose(tmp_path, given, spins):
    """How long OpenMP's threads spin before they sleep, as OpenMP itself reports it (OMP_DISPLAY_ENV) in a real cpu
    run: 3,000 times, not GNU OpenMP's 300,000 (a spinning thread held a core that another run on the machine
    needed: two runs at once took 3-4x as long), unless the user set the wait policy or GNU OpenMP's spin count."""
    environment = {name: value for name, value in os.environ.items() if name not in ("OMP_WAIT_POLICY",
                                                                                     "GOMP_SPINCOUNT")}
    ran = subprocess.run([sys.executable, "-m", "mnist_gpu", "--fake_data", "--backend", "cpu", "--max_steps", "2",
                          "--hidden1", "8", "--log_dir", str(tmp_path / "run")], capture_output=True, text=True,
                         env={**environment, **given, "OMP_DISPLAY_ENV": "VERBOSE"}, timeout=300)
    assert ran.returncode == 0, ran.stderr
    found = [line.split("=")[1].strip(" '") for line in ran.stderr.splitlines() if "GOMP_SPINCOUNT =" in line]
    if not found:
        pytest.skip("this Numba's threads are not GNU OpenMP's (its threading layer: tbb or workqueue)")
    assert len(found) == 1 and (int(found[0]) > 1000 if spins == "a while" else found[0] == spins), found
