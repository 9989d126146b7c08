"""Runs tests/cuda in a separate process under Numba's CUDA simulator (it must be set before numba loads)."""
import os
import subprocess
import sys

import pytest

from conftest import REPOSITORY
from helpers import needs_numba_cuda


@pytest.mark.slow
@needs_numba_cuda  # numba's own deprecated simulator lacks what the backend uses
def test_cuda_kernels_in_the_simulator():
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS="0")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", REPOSITORY,
         os.path.join(REPOSITORY, "tests", "cuda")],
        cwd=os.path.join(REPOSITORY, "tests"), env=environment, capture_output=True, text=True)
    print(result.stdout[-20000:], result.stderr[-5000:])  # shown by pytest when this test fails
    assert result.returncode == 0, "kernel tests failed in the CUDA simulator (output above)"
    assert " passed" in result.stdout.splitlines()[-1]
