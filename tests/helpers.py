"""Helpers shared by the tests."""
import hashlib
import os

import pytest

from mnist_gpu.backends import gpu_available
from mnist_gpu.cli import main

# Tests that only a real GPU can run carry this mark; elsewhere they are skipped with the reason.
needs_gpu = pytest.mark.skipif(not gpu_available(),
                               reason="needs an NVIDIA GPU with CuPy (in the checkout: pip install '.[cuda13]')")


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


def without_timings(lines):
    """Log lines with the '(0.001 sec)' durations removed, for comparing runs."""
    return [line.split(" (")[0] for line in lines]
