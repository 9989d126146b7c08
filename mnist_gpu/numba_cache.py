"""Numba's on-disk cache of compiled kernels where it can have one; else a private temporary one, said in one line.

The cpu kernels (kernels/cpu.py), the OpenBLAS call (backends/openblas.py) and the CUDA kernels are
`cache=True`: Numba keeps their machine code beside the source (`__pycache__`) or in its
user-wide folder (`$XDG_CACHE_HOME` or `~/.cache`, or `NUMBA_CACHE_DIR` when set). Where none of
those can be written (an installation owned by root, run by a user whose HOME is read-only),
Numba refuses to define the kernels at all ("cannot cache function ...: no locator available").
Then the backend is made again with Numba's cache in a new private folder (mkdtemp: mode 0700,
this process's own, so no other user can plant code in it), removed when the process exits; the
kernels are compiled once per run instead of loaded: `--fake_data --max_steps 2` on the cpu
backend took 12.8-15.5 s instead of 3.7-4.3 s (2026-12-02, the 2-core VM at load 7, 3 runs each).
"""
import atexit
import os
import shutil
import sys
import tempfile

private_folder = None  # the temporary cache folder this process uses, when it needed one


def cannot_cache(error):
    """Whether `error` is Numba refusing a `cache=True` function for want of a writable cache folder."""
    return isinstance(error, RuntimeError) and "cannot cache function" in str(error)


def get_backend(name="auto", note=None):
    """The backend called `name` ("numpy", "cpu", "cuda", or "auto": cuda when a GPU is usable, else cpu), as
    backends.get_backend makes it, with a private cache folder when Numba finds no writable one (said to `note`)."""
    from .backends import get_backend as make

    try:
        return make(name)
    except RuntimeError as error:
        if not cannot_cache(error) or private_folder is not None:
            raise
    use_private_folder(note or (lambda text: None))
    return make(name)


def use_private_folder(note):
    global private_folder
    private_folder = tempfile.mkdtemp(prefix="mnist_gpu-numba-cache-")
    atexit.register(remove_private_folder)  # a Python caller's process (the command line's skips atexit: cli.py)
    os.environ["NUMBA_CACHE_DIR"] = private_folder  # read by a Numba configuration loaded later (numba-cuda's)
    for module in ("numba.core.config", "numba.cuda.core.config"):
        if module in sys.modules:
            sys.modules[module].CACHE_DIR = private_folder
    note(f"Numba cannot keep compiled kernels here: no writable cache folder beside mnist_gpu's kernels or under "
         f"{os.path.expanduser('~')}; compiling them into {private_folder} for this run only (set NUMBA_CACHE_DIR "
         "to a writable folder to keep them)")


def remove_private_folder():
    """Remove the private cache folder, if this process made one (the command line calls this before it exits)."""
    if private_folder is not None:
        shutil.rmtree(private_folder, ignore_errors=True)
