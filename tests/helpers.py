"""Helpers shared by the tests."""
import contextlib
import hashlib
import importlib.util
import os
import subprocess

import pytest

from mnist_gpu.backends.gpu_probe import gpu_available
from mnist_gpu.cli import main

# Tests that only a real GPU can run carry this mark; elsewhere they are skipped with the reason.
needs_gpu = pytest.mark.skipif(not gpu_available(),
                               reason="needs an NVIDIA GPU with CuPy (in the checkout: pip install '.[cuda13]')")


def installed(module):
    """Whether `module` can be imported here; a dotted name whose parent package is missing is not."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


PACKAGES = {"numba_cuda": "numba-cuda", "nvmath": "nvmath-python", "cuda.bindings": "cuda-bindings",
            "cuda.core": "cuda-core"}  # module: the package that installs it


def needs_packages(*modules):
    """Skip, naming what is missing, where one of these optional GPU packages (modules) is not installed.

    The [test] extra installs them all, so there these tests run in full; a machine with numba but
    without the GPU packages (`pip install .` plus the test tools) skips them with the reason.
    """
    missing = [PACKAGES.get(module, module) for module in modules if not installed(module)]
    return pytest.mark.skipif(bool(missing), reason=f"needs {' and '.join(missing)}, not installed here (pip install "
                              "'.[test]' brings the GPU packages the tests use; no GPU needed)")


needs_numba_cuda = needs_packages("numba_cuda")  # NVIDIA's CUDA target; numba's own simulator lacks what we use
needs_cuda_packages = needs_packages("numba_cuda", "nvmath")  # what the cuda backend loads besides CuPy
needs_cuda_compiler = needs_packages("numba_cuda", "cuda.bindings")  # NVVM through numba-cuda, nvJitLink


def run_main(capsys, *arguments):
    """Run the command line in-process; returns (exit code, stdout lines, stderr text)."""
    try:
        code = main(list(arguments))
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def snapshot(folder):
    """{file name: SHA-256} of everything in a folder, to prove a command changed nothing."""
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def as_nobody(call):
    """call() in a forked process of the user nobody (uid and gid 65534), for a real permission fault (root has
    none): the text it returns, or "Type: message" of the exception it raises."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and leaves at once
        try:
            os.close(reader)
            os.setgid(65534)
            os.setuid(65534)
            try:
                message = call()
            except Exception as error:  # noqa: BLE001 - its type and text go to the parent
                message = f"{type(error).__name__}: {error}"
            with os.fdopen(writer, "w") as stream:
                stream.write(message)
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as stream:
        message = stream.read()
    os.waitpid(child, 0)
    return message


def without_timings(lines):
    """Log lines with the '(0.001 sec)' durations removed, for comparing runs."""
    return [line.split(" (")[0] for line in lines]


PAGE = 4096  # tmpfs counts its space in pages


@contextlib.contextmanager
def small_filesystem(folder, size="1100k"):
    """A real tmpfs of `size` mounted on `folder` for the block: its full disk is a real ENOSPC, raised by the kernel.

    Mounting needs root, as this machine and CI have; elsewhere the test is skipped with the reason.
    """
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root (CI runs as root)")
    os.makedirs(folder, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:  # lazily: a file still mapped (a cached array) must not keep the mount alive
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def free_bytes(folder):
    status = os.statvfs(folder)
    return status.f_bavail * status.f_frsize


def fill_leaving(folder, pages):
    """Fill the file system of `folder` with one file so that exactly `pages` free pages remain."""
    with open(os.path.join(folder, "filler"), "wb") as stream:
        os.posix_fallocate(stream.fileno(), 0, free_bytes(folder) - pages * PAGE)
    assert free_bytes(folder) == pages * PAGE


def pages(size):
    return -(-size // PAGE)


def one_error_line(error):
    """The last stderr line, checked to be mnist-gpu's one error line with no traceback before it."""
    lines = error.splitlines()
    assert "Traceback" not in error and lines and lines[-1].startswith("mnist-gpu: error: "), error
    return lines[-1]
