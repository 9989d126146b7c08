"""numba-cuda 0.30.x with NumPy 2.5, which removed np.row_stack (kernels/numba_cuda.py's stand-in).

numba-cuda 0.30.0-0.30.4 overload np.row_stack in numba/cuda/np/arrayobj.py whatever NumPy's version,
and that module loads at the first compile: under NumPy 2.5 every kernel compile fails. The stand-in
is given for that one import, only where NumPy lacks row_stack and numba-cuda is one of those
releases. Here: the decision; and in fresh processes, NumPy 2.5's removal (row_stack deleted before
anything loads, where this NumPy still has it) with and without the stand-in, compiling a real
kernel through NVVM. CI also runs the whole compile tier under NumPy 2.5 (.ci/run, Python 3.12).
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import needs_cuda_compiler, needs_numba_cuda

COMPILE = """
from numba import types
from mnist_gpu.kernels import sgd_update
ptx, _ = sgd_update.cuda.compile_ptx(sgd_update.sgd_update_kernel.py_func,
                                     (types.float32[:, ::1], types.float32[:, ::1],
                                      types.float32[::1], types.int32[::1]), cc=(9, 0))
print("compiled", len(ptx) > 0)
"""


def run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("numpy_has_row_stack, numba_cuda_version, needed", [
    (False, "0.30.4", True),  # NumPy 2.5 and the newest numba-cuda: the case it is for
    (False, "0.30.0", True),
    (False, "0.30.4.post1", True),  # a rebuild of a known release
    (True, "0.30.4", False),  # NumPy 2.4 and older have row_stack: nothing to do
    (False, "0.30.5", False),  # a later release is not known to need it: CI's compile tier would say
    (False, "0.31.0rc1", False),
    (False, "0.29.9", False),
    (False, None, False),  # numba-cuda is not installed
    (False, "unknown", False),
])
@needs_numba_cuda  # the decision lives in the kernels' module, which refuses numba's built-in target
def test_the_stand_in_is_given_only_where_numpy_lacks_row_stack_and_numba_cuda_is_known_to_need_it(
        numpy_has_row_stack, numba_cuda_version, needed):
    from mnist_gpu.kernels.numba_cuda import row_stack_stand_in_needed

    assert row_stack_stand_in_needed(numpy_has_row_stack, numba_cuda_version) is needed


@needs_cuda_compiler
def test_importing_the_kernels_leaves_numpy_as_it_was():
    result = run("""
        import sys
        import numpy as np
        before = hasattr(np, "row_stack")
        from mnist_gpu.kernels import numba_cuda
        print(before, hasattr(np, "row_stack"), numba_cuda.ROW_STACK_STAND_IN, "numba.cuda.np.arrayobj" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    before, after, given, loaded = result.stdout.split()
    assert after == before  # NumPy gains or loses nothing
    assert given == ("False" if hasattr(np, "row_stack") else "True") and loaded == given


@needs_cuda_compiler
@pytest.mark.slow
def test_a_kernel_compiles_under_numpy_2_5_with_the_stand_in_and_not_without():
    remove_row_stack = "import numpy as np\nif hasattr(np, 'row_stack'):\n    del np.row_stack  # as NumPy 2.5 did\n"
    without = run(remove_row_stack + """
from numba import cuda, types
def kernel(values):
    values[0] = values[0] + 1
cuda.compile_ptx(kernel, (types.float32[::1],), cc=(9, 0))
""")
    assert without.returncode != 0 and "module 'numpy' has no attribute 'row_stack'" in without.stderr, \
        without.stderr[-2000:]  # numba-cuda as released: the failure the stand-in is for
    with_it = run(remove_row_stack + COMPILE + "from mnist_gpu.kernels import numba_cuda\n"
                  "print('stand-in', numba_cuda.ROW_STACK_STAND_IN, 'row_stack', hasattr(np, 'row_stack'))\n")
    assert with_it.returncode == 0, with_it.stderr[-3000:]
    assert with_it.stdout.splitlines()[-2:] == ["compiled True", "stand-in True row_stack False"]
