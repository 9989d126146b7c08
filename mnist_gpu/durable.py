"""Durable file replacement: write a temporary file beside the target, fsync, rename, fsync the folder.

A reader sees either the old complete file or the new complete file, never a partial one,
even if the process is killed or the machine loses power mid-write.
"""
import os
import re
import tempfile
import threading
from contextlib import contextmanager

from .errors import WriteError


def failure_reason(error):
    """Why a write failed, in the OS's words: an OSError's, or that of the OS error a library wrapped in its own type.

    safetensors raises SafetensorError("Error while serializing: I/O error: No space left on device (os error
    28)") for a full disk: the reason is the same "No space left on device" an OSError would give.
    """
    if isinstance(error, OSError):
        return error.strerror or str(error)
    wrapped = re.search(r"\(os error (\d+)\)", str(error))
    return os.strerror(int(wrapped[1])) if wrapped else str(error)


_UMASK_LOCK = threading.Lock()


def _umask():
    """The process's umask, left as it is. os.umask can only read it by setting it: two save threads at once could
    leave 0 in place for the whole process (every later file writable by all). Linux shows it in /proc/self/status;
    elsewhere the set and reset hold a lock."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def fsync_directory(directory):
    """Make a rename inside `directory` itself durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


TEMPORARY_SUFFIX = ".part"


def temporary_target(name):
    """The file name a temporary made by `temporary_beside` was meant to become, or None if `name` is not one."""
    if not (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)):
        return None
    return name[1:].rsplit(".", 2)[0]  # ".<target>.<random>.part" -> "<target>"


@contextmanager
def temporary_beside(path):
    """Yield the name of a fresh temporary file in path's folder; remove it unless it was renamed away."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TEMPORARY_SUFFIX,
                                             dir=directory)
    os.close(descriptor)
    try:
        yield temporary
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def replace_durably(temporary, path, sync=True):
    """fsync `temporary`, rename it over `path`, and fsync the folder (only the rename, without sync)."""
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp made it private (0600); give it a normal file's mode
    if sync:
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
    os.replace(temporary, path)
    if sync:
        fsync_directory(os.path.dirname(os.path.abspath(path)))


def ensure_writable_folder(folder, what):
    """Create `folder` if needed and prove a file can be made in it; else a WriteError saying `what` it is (text, or
    an errors.Flag) and why."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise WriteError(what, f" {folder} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise WriteError(what, f" {folder} cannot be written: {failure_reason(error)}") from None


def write_bytes_durably(path, data):
    """Atomically and durably replace `path` with `data`."""
    write_atomically(path, lambda stream: stream.write(data))


def write_atomically(path, write, sync=True):
    """Replace `path` with what write(stream) writes, atomically: a reader sees the old file or the new one."""
    with temporary_beside(path) as temporary:
        with open(temporary, "wb") as stream:
            write(stream)
        replace_durably(temporary, path, sync)
