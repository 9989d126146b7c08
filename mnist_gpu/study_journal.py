"""A study's journal file (--log_dir's study.journal): checked before Optuna reads it, each append whole or nothing.

Optuna's JournalFileBackend keeps a study as one JSON line per operation, appended under a lock (a
symlink beside the file, which works on NFS). An append cut short (a full disk, `ulimit -f`, a writer
killed mid-line) leaves a torn last line. Optuna reads past a torn last line, but the next append
lands after it, and from then on every read of the study fails (JSONDecodeError): one full disk
would end the study for every worker. So WholeLines, under the same lock, first cuts a torn tail
that a dead writer left, then appends, and cuts its own lines back if it cannot write them all. A
torn line is an operation that never happened: its writer failed before it could go on.
"""
import json
import os
import stat

from .errors import StudyError
from .regular_files import size_words

STUDY_JOURNAL = "study.journal"
# Optuna replays the whole journal into memory (~2.5x its size). A beat is ~160 bytes: 64 trials held for a week at
# the default heartbeat are ~30 MB; a larger file is refused, unread (a study that large belongs in a database).
MAX_JOURNAL_BYTES = 256 * 2 ** 20
TAIL_CHUNK = 2 ** 16  # bytes read at a time, from the end, looking for the last whole line


def check_journal(path):
    """The journal file as found: absent, or a regular file of this user's (never a link, FIFO or another's) of at
    most MAX_JOURNAL_BYTES."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StudyError(f"{path} cannot be read ({error.strerror}); not a study journal") from None
    if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
        what = "a link" if stat.S_ISLNK(status.st_mode) else "not a regular file" \
            if not stat.S_ISREG(status.st_mode) else f"owned by user {status.st_uid}"
        raise StudyError(f"{path} is {what}; not a study journal of this user's")
    if status.st_size > MAX_JOURNAL_BYTES:
        raise StudyError(f"{path} is {size_words(status.st_size)}, more than a study journal may be "
                         f"({size_words(MAX_JOURNAL_BYTES)}); nothing was read (a study this large needs --storage)")
    return True


def journal_storage(path):
    """Optuna's JournalStorage on the journal file at `path` (made if absent), appending through WholeLines."""
    from optuna.storages import JournalStorage

    return JournalStorage(WholeLines(path))


def whole_lines_end(descriptor):
    """Where the file's last whole line ends: its size, or the byte after its last newline (0 if it has none)."""
    end = os.fstat(descriptor).st_size
    if end == 0 or os.pread(descriptor, 1, end - 1) == b"\n":
        return end
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        newline = os.pread(descriptor, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


class WholeLines:
    """Optuna's journal backend interface (read_logs, append_logs) on one file whose appends are whole lines or none.

    Reads are Optuna's own JournalFileBackend's; appends take its lock, as its appends do, so this file
    and a worker running plain Optuna on it exclude each other."""

    def __init__(self, path):
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        # Absolute: the lock is a symlink to this path, read from the journal's folder. A relative one dangles there,
        # and a lock its holder left when it was killed then never ages out (Optuna stats the link's target): every
        # other worker waited for it forever.
        self.path = os.path.abspath(path)
        self.lock = JournalFileSymlinkLock(self.path)
        self.file = JournalFileBackend(self.path, lock_obj=self.lock)  # makes the file if it is absent

    def read_logs(self, log_number_from):
        return self.file.read_logs(log_number_from)

    def append_logs(self, logs):
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        self.lock.acquire()
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                end = whole_lines_end(descriptor)
                os.ftruncate(descriptor, end)  # a torn tail left by a writer that died is cut (else: no change)
                try:
                    written = 0
                    while written < len(text):
                        written += os.pwrite(descriptor, text[written:], end + written)
                    os.fsync(descriptor)
                except BaseException:
                    os.ftruncate(descriptor, end)  # the file as it was: nothing of these operations was recorded
                    raise
            finally:
                os.close(descriptor)
        finally:
            self.lock.release()
