"""The suite runs where a pytest plugin imports NumPy before any conftest (jaxtyping's does, on the GPU image).

tests/conftest.py pins OpenBLAS to one thread through OpenBLAS's own call: OPENBLAS_NUM_THREADS
alone is read once, when NumPy loads, which may be before any conftest. Here part of the suite
runs in a pytest whose first plugin imports NumPy, with
OpenBLAS started on two threads: it must pass, and still run on one.
"""
import os
import subprocess
import sys

import pytest

from mnist_gpu.backends import blas_library

from conftest import REPOSITORY
from helpers import needs_cuda_packages


def test_blas_runs_on_one_thread_in_the_test_process():
    plugin = sys.modules.get("numpy_first_plugin")
    if plugin is not None:  # run by the test below: NumPy was loaded before conftest could set the variable
        assert plugin.LOADED_BEFORE_CONFTEST
    assert blas_library.threads() == 1


@pytest.mark.slow
@needs_cuda_packages  # it runs test_check.py, whose first test needs them, and wants no skip
def test_part_of_the_suite_passes_with_a_numpy_importing_plugin_loaded_first():
    environment = dict(os.environ, OPENBLAS_NUM_THREADS="2")  # what NumPy's OpenBLAS starts with there
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "numpy_first_plugin", "-q", "-p", "no:cacheprovider",
         "--rootdir", REPOSITORY, f"{__file__}::test_blas_runs_on_one_thread_in_the_test_process",
         os.path.join(REPOSITORY, "tests", "test_check.py")],
        cwd=os.path.join(REPOSITORY, "tests"), env=environment, capture_output=True, text=True)  # cwd: -p finds it
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    summary = result.stdout.splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "deselected" not in summary, summary
