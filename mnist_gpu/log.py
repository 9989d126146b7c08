"""Where a command's lines go: the tutorial's to stdout, mnist_gpu's own (`note`) to stderr; nowhere if silent.

A standard stream can go away while a command runs, or be gone from the start: its reader leaves
(`mnist-gpu | head`, a closed pipe), it was closed (`>&-`), or it cannot take more (`>/dev/full`).
None of that stops a command or raises: the stream is marked lost, its descriptor is pointed at
/dev/null (so that nothing else that writes to it fails later, and no file opened later can take
its number), and one note says so on stderr, when stderr is still there and is not the very
pipe that broke (`2>&1 | head`). `lost` tells the command line what was lost, and why.

Every line is printed with its control characters and undecodable bytes escaped (`printable`): a
file name holding a newline or a terminal escape code stays one visible line, and a name that is
not UTF-8 prints as its bytes (`\\xff`) instead of raising UnicodeEncodeError.
"""
import errno
import json
import os
import sys

lost = {}  # stream name -> why it is gone: "closed", "was closed by its reader" or "cannot be written (REASON)"


def printable(text):
    """`text` with every character that is not printable escaped: one line, safe for a terminal, any encoding.

    A byte of a name that is not UTF-8 (Python's surrogate escape) becomes \\xNN, as it was on disk.
    """
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else
                   f"\\x{ord(character) - 0xdc00:02x}" if "\udc80" <= character <= "\udcff" else
                   repr(character)[1:-1] for character in text)


def printable_value(value, limit=None):
    """A value read from a file or a study's storage as one printable line: text as printable() shows it, anything
    else as JSON; at most `limit` characters when given (a log line naming a worker, say)."""
    text = printable(value if isinstance(value, str) else json.dumps(value))
    return text if limit is None else text[:limit]


def _descriptor(stream):
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # a stream without a descriptor (a test's capture)
        return None


def _same_file(first, second):
    one, other = _descriptor(first), _descriptor(second)
    if one is None or other is None:
        return False
    try:
        return os.path.samestat(os.fstat(one), os.fstat(other))
    except OSError:
        return False


def _lose(name, why):
    """Mark the stream `name` gone and point its descriptor at /dev/null: later writes (ours, a library's) vanish."""
    lost[name] = why
    stream = getattr(sys, name)
    descriptor = _descriptor(stream) if stream is not None else None
    if descriptor is not None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)


def why_lost(error):
    if isinstance(error, BrokenPipeError):
        return "was closed by its reader"
    if isinstance(error, ValueError) or getattr(error, "errno", None) == errno.EBADF:
        return "is closed"
    return f"cannot be written ({error.strerror or error})"


def write_line(name, text):
    """Print `text` as one line on the standard stream `name`; False if that stream is gone (then nothing is raised)."""
    if name in lost:
        return False
    stream = getattr(sys, name)
    if stream is None:  # closed when the process started (`>&-`): Python has no stream for it
        _lose(name, "is closed")
        return False
    try:
        stream.write(printable(text) + "\n")
        stream.flush()
        return True
    except (OSError, ValueError) as error:  # ValueError: a stream closed in this process
        other = getattr(sys, "stderr" if name == "stdout" else "stdout")
        if isinstance(error, BrokenPipeError) and other is not None and _same_file(stream, other):
            _lose("stderr" if name == "stdout" else "stdout", why_lost(error))  # `2>&1 | head`: one pipe, both gone
        _lose(name, why_lost(error))
        return False


def write_text(name, text):
    """Print several lines (help, usage) on the stream `name`, each as write_line prints one."""
    for line in text.rstrip("\n").split("\n"):
        if not write_line(name, line):
            return


def lost_output():
    """Why stdout was lost, if it was and not because its reader left (a closed pipe is the reader's choice)."""
    why = lost.get("stdout")
    return None if why is None or why == "was closed by its reader" else why


class Log:
    """stdout carries exactly the tutorial's lines; what mnist_gpu adds goes to stderr as `mnist-gpu: ...`."""

    def __init__(self, verbose=True):
        self.verbose, self.told = verbose, False

    def line(self, text):
        if self.verbose and not write_line("stdout", text) and not self.told:
            self.told = True
            self.note(f"stdout {lost['stdout']}; the command goes on without printing its lines")

    def note(self, text):
        if self.verbose:
            write_line("stderr", f"mnist-gpu: {text}")
