"""The errors mnist_gpu raises on purpose, in one family: `except mnist_gpu.Error` catches every one of them.

Each message names the file, flag or limit at fault, in one line. The command line prints it as
`mnist-gpu: error: ...` and exits with the class's exit_code: 2 for a flag that cannot work, 1 for
anything else. An interruption is not an error: TrainingInterrupted is a KeyboardInterrupt, so
`except Exception` in a notebook lets Ctrl-C through, as Python does for KeyboardInterrupt itself.

A message is written once, as parts: text, and the flags or commands it names (`Flag`, `Command`).
It is rendered for whoever reads it: `str(error)` speaks Python (`log_dir='runs/a'`,
`resume=True`, `mnist_gpu.train(...)`), `error.command_line()` the command line (`--log_dir
runs/a`, `--resume`, `mnist-gpu ...`), which is what cli.py prints.
"""
import os
import shlex

PYTHON, COMMAND_LINE = "python", "command line"
SWITCH = object()  # Flag(name): a switch such as --resume, named as given (`--resume`, `resume=True`)
NAME = object()  # Flag(name, NAME): the flag itself, without a value (`--log_dir`, `log_dir`)


def shell_word(text):
    """`text` as one shell word that a POSIX shell (bash, zsh, dash) reads back exactly.

    Plain text is single-quoted where needed (shlex.quote); a name with control characters or bytes
    that are not UTF-8 (a file name is any bytes) becomes $'...' with each such byte as \\xNN.
    """
    if text.isprintable():
        return shlex.quote(text)
    escaped = []
    for byte in os.fsencode(text):
        character = chr(byte)
        escaped.append(character if 0x20 <= byte < 0x7f and character not in "'\\" else f"\\x{byte:02x}")
    return "$'" + "".join(escaped) + "'"


class Flag:
    """A flag named in a message: `--name value` on the command line, `name=value` from Python."""

    def __init__(self, name, value=SWITCH):
        self.name, self.value = name, value

    def render(self, form):
        if form == PYTHON:
            return self.name if self.value is NAME else \
                f"{self.name}=True" if self.value is SWITCH else f"{self.name}={self.value!r}"
        return f"--{self.name}" if self.value in (NAME, SWITCH) else f"--{self.name} {self.value}"


class Command:
    """A whole training command to run, from keyword flags: `PROGRAM --name value ...` in the shell's words,
    or `mnist_gpu.train(name=value, ...)` (`function`: train or sweep). `program` is how the command line started
    this process (with `sweep` after it for a sweep)."""

    def __init__(self, program, function="train", **flags):
        self.program, self.function, self.flags = program, function, flags

    def render(self, form):
        if form == PYTHON:
            return f"mnist_gpu.{self.function}(" + ", ".join(f"{name}={value!r}" for name, value in
                                                             self.flags.items()) + ")"
        words = [self.program]
        for name, value in self.flags.items():
            words += [f"--{name}"] if value is True else [f"--{name}", shell_word(str(value))]
        return " ".join(words)


class Message:
    """An exception whose message is parts (text, Flag, Command), rendered for Python by str() and for the
    command line by command_line()."""

    def __init__(self, *parts):
        self.parts = parts
        super().__init__(self.render(PYTHON))

    def render(self, form):
        return "".join(part if isinstance(part, str) else part.render(form) for part in self.parts)

    def command_line(self):
        return self.render(COMMAND_LINE)


class Error(Message, Exception):
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


class TrainingInterrupted(Message, KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training; the step it finished is saved (when training had started).

    A KeyboardInterrupt, not an Error: code that catches Exception does not swallow an interruption.
    `parts` is the message (see Message): the step, the checkpoint, and the command that continues
    the run, exactly (trainer.py).
    """

    def __init__(self, signal_number, step=None, saved=None, result=None, parts=("interrupted before training "
                                                                                  "started; nothing was saved",)):
        self.signal_number, self.step, self.saved, self.result = signal_number, step, saved, result
        super().__init__(*parts)

    @property
    def exit_code(self):
        return 128 + self.signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
