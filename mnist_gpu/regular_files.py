"""Opening a file someone named as a file: only a regular file is read, and never more than a bound.

A path can name a FIFO (reading it waits for a writer, then reads whatever comes, without end), a
device (/dev/zero never ends; a tape rewinds when closed), a socket or a folder. Every reader of
a file a user or another file names (an image, a checkpoint, the state file, a data file, the data
cache) opens it here:

1. the path is looked at first (stat, or lstat where a link must not be followed): anything but a
   regular file is refused without being opened;
2. it is opened with O_NONBLOCK (if a FIFO took its place meanwhile, the open does not wait for a
   writer) and O_NOFOLLOW where a link must not be followed, and the open descriptor is looked at
   again (fstat): it is what is read, whatever the path names by then;
3. its size is checked against the bound for its kind before anything is read, and at most that
   many bytes are read (a file that grows meanwhile is refused for its size).

A refusal is a Refused, whose text says what the file is ("a FIFO, not a regular file; nothing
was read", "1.2 GB, more than an image file may be (400.0 MB); nothing was read"), without the
path: each reader raises its own error type (ImageError, CheckpointError, DataError) naming the
file. A missing or unreadable file is the OSError the OS gave.
"""
import contextlib
import errno
import os
import stat

CHUNK_BYTES = 1 << 20


class Refused(Exception):
    """A path that is not read as a file: not a regular file, or larger than its kind may be. The text is the reason."""


class NotRegular(Refused):
    pass


class TooLarge(Refused):
    pass


def kind(mode):
    """What a file of this st_mode is, in words."""
    for test, words in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISLNK, "a link"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return words
    return "not a regular file"


def not_regular(mode):
    words = kind(mode)
    what = words if words.startswith("a ") else "of an unknown kind"
    return NotRegular(f"{what}, not a regular file; nothing was read")


def size_words(count):
    """A byte count for a person: 812 bytes, 47.0 MB, 2.1 GB."""
    if count < 1000:
        return f"{count} bytes"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        if count < scale * 1000 or unit == "TB":
            return f"{count / scale:.1f} {unit}"


def too_large(size, limit, what):
    return TooLarge(f"{size_words(size)}, more than {what} may be ({size_words(limit)}); nothing was read")


def open_regular(path, follow_links=True):
    """A read-only descriptor of the regular file at `path` and its fstat; Refused or OSError otherwise.

    follow_links=False: a link at `path` itself is refused ("a link"), never followed.
    """
    status = os.stat(path) if follow_links else os.lstat(path)
    if not stat.S_ISREG(status.st_mode):
        raise not_regular(status.st_mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_links else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.ELOOP, errno.EISDIR):  # replaced since the look: a socket, a link, ...
            with contextlib.suppress(OSError):
                mode = os.lstat(path).st_mode
                if not stat.S_ISREG(mode):
                    raise not_regular(mode) from None
        raise
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):  # replaced between the look and the open
            raise not_regular(status.st_mode)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, status


def read_at_most(descriptor, limit, what):
    """The bytes from the descriptor's position to its end; TooLarge (after reading limit + 1) if more than `limit`."""
    chunks, total = [], 0
    while True:
        chunk = os.read(descriptor, min(CHUNK_BYTES, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"more than {what} may be ({size_words(limit)}): it grew while it was read")


def read_exactly(descriptor, count):
    """`count` bytes from the descriptor (fewer only at its end)."""
    chunks, total = [], 0
    while total < count:
        chunk = os.read(descriptor, min(CHUNK_BYTES, count - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_bounded(path, limit, what, follow_links=True):
    """The whole regular file at `path`, refused (Refused) before any read if it is not one or is over `limit` bytes.

    `what` names the kind in a refusal: "an image file" -> "... is more than an image file may be".
    """
    descriptor, status = open_regular(path, follow_links)
    try:
        if status.st_size > limit:
            raise too_large(status.st_size, limit, what)
        return read_at_most(descriptor, limit, what)
    finally:
        os.close(descriptor)
