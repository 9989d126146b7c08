"""Where a command's lines go: the tutorial's to stdout, mnist_gpu's own (`note`) to stderr; nowhere if silent."""
import os
import sys


class Log:
    """stdout carries exactly the tutorial's lines; what mnist_gpu adds goes to stderr as `mnist-gpu: ...`."""

    def __init__(self, verbose=True):
        self.verbose = verbose

    def line(self, text):
        if not self.verbose:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `mnist-gpu | head`: the reader left; the run goes on and is saved as usual
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.note("stdout was closed; training goes on without printing its lines")

    def note(self, text):
        if self.verbose:
            print(f"mnist-gpu: {text}", file=sys.stderr, flush=True)
