"""Numba's environment settings (mnist_gpu/numba_environment.py) are in force whatever imports numba first.

Numba reads its NUMBA_* variables when it is first imported and again only when it compiles, so
a process whose kernels all come from Numba's cache keeps what it read first. Each case runs in
a fresh process without the variables (this process has them: it imported mnist_gpu).
"""
import json
import os
import subprocess
import sys

import pytest

from mnist_gpu.numba_environment import DEFAULTS

from helpers import needs_numba_cuda

READ_SETTINGS = """
import json
from numba.core import config
print(json.dumps([config.CUDA_ARRAY_INTERFACE_SYNC, config.CUDA_LOW_OCCUPANCY_WARNINGS]))
"""

FIRST_IMPORTS = {
    # mnist-gpu check's versions come first, and used to import numba.cuda before the kernels set the defaults
    "check's versions": "import mnist_gpu.check as check\ncheck.versions()\nfrom mnist_gpu.kernels import numba_cuda\n",
    "the cpu backend": "from mnist_gpu.backends import get_backend\nget_backend('cpu')\n",
    "numba before mnist_gpu": "import numba.cuda\nimport mnist_gpu\n",
}


def settings_after(first_imports, **environment):
    clean = {name: value for name, value in os.environ.items() if name not in DEFAULTS}
    result = subprocess.run([sys.executable, "-c", first_imports + READ_SETTINGS], env=dict(clean, **environment),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("first", [pytest.param(first, marks=needs_numba_cuda) if "numba_cuda" in code else first
                                   for first, code in FIRST_IMPORTS.items()])  # the kernels' module needs numba-cuda
def test_numba_reads_the_project_settings_whatever_imports_it_first(first):
    assert settings_after(FIRST_IMPORTS[first]) == [0, 0]


@needs_numba_cuda
def test_a_setting_the_user_made_is_kept():
    assert settings_after(FIRST_IMPORTS["check's versions"], NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS="1") == [0, 1]
