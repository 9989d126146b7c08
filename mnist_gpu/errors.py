"""The errors mnist_gpu raises on purpose, in one family: `except mnist_gpu.Error` catches every one of them.

Each message names the file, flag or limit at fault, in one line. The command line prints it as
`mnist-gpu: error: ...` and exits with the class's exit_code: 2 for a flag that cannot work, 1 for
anything else. An interruption is not an error: TrainingInterrupted is a KeyboardInterrupt, so
`except Exception` in a notebook lets Ctrl-C through, as Python does for KeyboardInterrupt itself.
"""


class Error(Exception):
    """Base of every error mnist_gpu raises on purpose; the message names the file, flag or limit."""

    exit_code = 1


class FlagError(Error, ValueError):
    """A flag's value cannot work (with the data, the log_dir, the memory); the message names the flag."""

    exit_code = 2


class LogDirInUse(FlagError):
    """Another process holds the log_dir's lock: a run is writing it."""


class DataError(Error):
    """A data file is missing, unreadable or not what was expected; the message names it."""


class CheckpointError(Error):
    """A checkpoint is missing, damaged, or does not fit the flags; the message names the file."""


class StudyError(Error):
    """A sweep's Optuna study cannot be used: Optuna is missing, its storage is unreachable or holds something that is
    not a study of ours; the message names the storage."""


class WriteError(Error):
    """A file could not be written; the message names it, says why, and what is still intact."""


class ImageError(Error, ValueError):
    """An image file cannot be read or holds no digit; the message names the file and why."""


class BackendUnavailable(Error):
    """The asked-for backend cannot run here; the message says what is missing and how to get it."""


class CudaGraphError(Error, RuntimeError):
    """--cuda_graph on, and the training step cannot run as a CUDA graph (or it disagrees with the eager step)."""


class TrainingDiverged(Error, RuntimeError):
    """The loss became NaN or infinite, or blew up and stayed up."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training; the step it finished is saved (when training had started).

    A KeyboardInterrupt, not an Error: code that catches Exception does not swallow an interruption.
    """

    def __init__(self, signal_number, step=None, saved=None, result=None, message=None):
        self.signal_number, self.step, self.saved, self.result = signal_number, step, saved, result
        super().__init__(message or "interrupted before training started; nothing was saved")

    @property
    def exit_code(self):
        return 128 + self.signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
