"""A run's folder (log_dir): which folder a command uses, the lock that gives it to one run, what a run may do to it.

One run per log_dir: a run holds an exclusive flock on its log_dir (the folder itself, opened
read-only: there is no lock file) from its first check to its exit. The OS releases the lock when
the process ends in any way, kill -9 included, so nothing is ever left to clean up. A second run,
or a --resume or --overwrite of a run in progress, is refused at once (LogDirInUse, exit 2), naming
the process that holds the lock where the OS tells (/proc/locks). `eval` and load_checkpoint take
no lock: they read only checkpoints that the state file has committed, which a run never changes.

Without --log_dir every run gets a new folder under the default root, a folder of the user's own
(`$XDG_DATA_HOME/mnist-gpu/runs`, else `~/.local/share/mnist-gpu/runs`: locations.py makes it
private and checks it on every use), named by its start time in UTC to the millisecond
(`2026-12-01_08-16-03.123Z`) and made with an exclusive mkdir: a second run in the same
millisecond takes the next one. So the names sort by start time and the newest run is the last
name: `--resume` without --log_dir continues the newest run that has a checkpoint, `eval`
without --checkpoint evaluates the newest valid checkpoint, and `tensorboard --logdir ROOT`
shows each folder as one run.

A command refused before training writes anything leaves the file system as it found it: the
folders it made to hold its lock are removed again (unless another run took the lock on them first:
that run works in them).
"""
import contextlib
import fcntl
import os
import re
import stat
import time

from . import checkpoint as checkpoints
from . import locations
from . import population as populations
from .durable import ensure_writable_folder, failure_reason, temporary_target
from .errors import NAME, Flag, FlagError, LogDirInUse, WriteError
from .study_journal import STUDY_JOURNAL
from .summaries import EVENT_FILE_PREFIX

RUN_FOLDER = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{3}Z")
LOCK_ATTEMPTS = 20  # a folder removed and made again between opening and locking it (a refused run's): try again




def default_root():
    """The folder that holds one folder per run started without --log_dir (its path; locations.runs_root checks it)."""
    return locations.default_runs_root()


def run_folder_name(milliseconds):
    """The folder name of a run started at `milliseconds` since the epoch (UTC): names sort by start time."""
    seconds, fraction = divmod(milliseconds, 1000)
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime(seconds)) + f".{fraction:03d}Z"


def run_folders(root, note=lambda text: None):
    """Paths of the run folders under root, oldest first ([] when there is no root).

    Only real folders (not links) of the user running count; anything else named like a run folder
    is skipped with a note, never opened.
    """
    try:
        names = os.listdir(root)
    except OSError:
        return []
    folders = []
    for name in sorted(name for name in names if RUN_FOLDER.fullmatch(name)):
        path = os.path.join(root, name)
        try:
            status = os.lstat(path)
        except OSError:  # removed since the listing
            continue
        if stat.S_ISDIR(status.st_mode) and status.st_uid == os.geteuid():
            folders.append(path)
        else:
            what = "a link" if stat.S_ISLNK(status.st_mode) else \
                "not a folder" if not stat.S_ISDIR(status.st_mode) else f"owned by user {status.st_uid}"
            note(f"skipping {path}: {what}, not a run folder of this user's")
    return folders


POPULATION_FILES = (populations.POPULATION_FILE, populations.RESULTS_CSV, populations.RESULTS_MD)


def is_run_file(name):
    """A checkpoint, the state file or an event file; a population's file or results."""
    return (name == checkpoints.STATE_FILE or name.startswith(EVENT_FILE_PREFIX) or name in POPULATION_FILES
            or checkpoints.NAME_PATTERN.fullmatch(name) is not None)


def run_files(log_dir):
    """Names of the files in log_dir that belong to a run, with temporaries of a save that was killed."""
    if not os.path.isdir(log_dir):
        return []
    return sorted(name for name in os.listdir(log_dir)
                  if (is_run_file(name) or is_run_file(temporary_target(name) or ""))
                  and not os.path.isdir(os.path.join(log_dir, name)))


def member_folders(log_dir):
    """Names of the population members' folders in log_dir: real folders (not links) named like a member."""
    if not os.path.isdir(log_dir):
        return []
    return sorted(name for name in os.listdir(log_dir) if populations.MEMBER_NAME.fullmatch(name)
                  and stat.S_ISDIR(os.lstat(os.path.join(log_dir, name)).st_mode))


def make_member_folder(path):
    """A member's folder inside the population's (locked) folder: made, or an existing real folder of this user's."""
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        pass
    except OSError as error:
        raise WriteError(f"the member folder {path} cannot be made: {failure_reason(error)}") from None
    status = os.lstat(path)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
        raise WriteError(f"{path} is not a member folder of this user's (a link, a file, or another user's); "
                         "not written")


def plural(count, noun):
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class Run:
    """The log_dir a training run uses, locked for it, and the checkpoint it resumes from (None for a new run).

    (A plain class: making a dataclass costs a millisecond of every command's start-up.)
    """

    def __init__(self, log_dir, resume_from=None):
        self.log_dir, self.resume_from = log_dir, resume_from
        self.writing = False

    def start_writing(self, overwrite):
        """Every check has passed: from here on the log_dir is written, and kept whatever happens.

        --overwrite deletes the old run's files (only those: checkpoints, state file, event files; a population's
        file, results and its member folders' run files, then each member folder left empty). Every folder is listed
        before anything is deleted: one that cannot be read is a WriteError with nothing deleted. Temporaries of a
        save that was killed are deleted in any case.
        """
        self.writing = True
        folders = [self.log_dir] + ([os.path.join(self.log_dir, name) for name in member_folders(self.log_dir)]
                                    if overwrite else [])
        doomed = []
        for folder in folders:
            try:
                doomed.append((folder, [name for name in run_files(folder) if overwrite or temporary_target(name)]))
            except OSError as error:
                raise WriteError(f"{'--overwrite' if overwrite else 'cleaning up'}: {folder} cannot be listed "
                                 f"({failure_reason(error)}); nothing was deleted") from None
        for folder, names in doomed:
            for name in names:
                path = os.path.join(folder, name)
                try:
                    os.remove(path)
                except OSError as error:
                    raise WriteError(f"deleting {path} failed: {failure_reason(error)}") from None
            if folder != self.log_dir:
                with contextlib.suppress(OSError):  # a file of someone else's left in it: the folder stays
                    os.rmdir(folder)


@contextlib.contextmanager
def claim(log_dir, resume=False, overwrite=False, note=None, population=False):
    """Choose the run's log_dir, lock it until the block ends, and check it may be used; yields a Run.

    log_dir None: a new run folder under the default root (checked: locations.runs_root), or with
    resume the newest run there.
    Refusals (an existing run without --resume or --overwrite, nothing to resume, a log_dir in
    use) are FlagErrors; a checkpoint that cannot be used is a CheckpointError. A population's
    run (`sweep`) resumes from its population file (population.read) instead of a checkpoint.
    """
    note = note or (lambda text: None)
    if resume and overwrite:
        raise FlagError(Flag("resume"), " and ", Flag("overwrite"), " exclude each other")
    if log_dir == "":
        raise FlagError(Flag("log_dir", NAME), " is empty: name a folder, or leave it out for a new run folder")
    if log_dir is None and resume:
        log_dir = newest_run(locations.runs_root(create=False), note, population)
    if log_dir is not None and os.path.exists(log_dir) and not os.path.isdir(log_dir):
        raise WriteError(Flag("log_dir", NAME), f" {log_dir} is a file, not a folder")
    if resume and not os.path.isdir(log_dir):
        raise FlagError(Flag("resume"), ": ", Flag("log_dir", log_dir), " has no checkpoint to continue from")
    created = []  # folders this command made, parents first: removed again if it stops before writing
    run, lock, population_lock = None, None, None
    try:
        if log_dir is None:
            log_dir = new_run_folder(locations.runs_root(), created)
        try:
            lock = locked_folder(log_dir, created, note)
        except LogDirInUse:
            # The run holding the lock works in the folders this command made (it found them made and took
            # them): they are that run's now.
            created.clear()
            raise
        if not population:
            population_lock = locked_population(log_dir)
        ensure_writable_folder(log_dir, Flag("log_dir", NAME))
        run = Run(log_dir, checked_for_use(log_dir, resume, overwrite, note, population))
        yield run
    finally:
        # A command that stops before writing takes back the folders it made (parents too), removed while it
        # still holds the lock on its log_dir, so that no other run locks one of them meanwhile.
        if run is None or not run.writing:
            remove_folders(created)
        for held in (lock, population_lock):
            if held is not None:
                os.close(held)  # releases the flock


def remove_folders(created):
    """Remove the folders this command made, deepest first; a folder someone else put a file in stays."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty after all (a file of someone else's): keep it
            os.rmdir(folder)


def checked_for_use(log_dir, resume, overwrite, note, population=False):
    """The checkpoint (a population: its population file) to resume from (None without --resume); refuses a log_dir
    holding a run unless asked to."""
    existing = run_files(log_dir) + [f"{name}/" for name in member_folders(log_dir)]
    other = what_else(log_dir, population)
    if other and not overwrite:  # a sweep where a run goes, or the reverse: neither --resume nor a bare refusal fits
        raise FlagError(Flag("log_dir", log_dir), f" holds {other}; pass another ", Flag("log_dir", NAME), ", or ",
                        Flag("overwrite"), " to delete it" + (" (every member folder too)" if not population else ""))
    if existing and not (resume or overwrite):
        files = f"({plural(len(existing), 'file')}: {', '.join(existing[:4])}{', ...' if len(existing) > 4 else ''})"
        committed = populations.POPULATION_FILE if population else checkpoints.STATE_FILE
        if not os.path.exists(os.path.join(log_dir, committed)):  # a run that never saved (diverged)
            raise FlagError(Flag("log_dir", log_dir), f" holds a run that saved no checkpoint {files}: nothing to "
                            "resume; pass ", Flag("overwrite"), " to delete it and start fresh, or another ",
                            Flag("log_dir", NAME))
        raise FlagError(Flag("log_dir", log_dir), f" already holds a run {files}; pass ", Flag("resume"),
                        " to continue it from its latest checkpoint, or ", Flag("overwrite"),
                        " to delete it and start fresh")
    if not resume:
        return None
    if population:
        found = populations.read(log_dir)
        if found is None:
            raise FlagError(Flag("resume"), ": ", Flag("log_dir", log_dir), " has no population to continue (no "
                            f"{populations.POPULATION_FILE})")
        return found
    if not checkpoints.read_state(log_dir):
        raise FlagError(Flag("resume"), ": ", Flag("log_dir", log_dir), " has no checkpoint to continue from")
    return latest_checkpoint(log_dir, note)


def holds_a_sweep(folder):
    """Whether `folder` is a sweep's (a population's) folder: it has a population file."""
    return os.path.exists(os.path.join(folder, populations.POPULATION_FILE))


def holds_a_study(folder):
    """Whether `folder` is an Optuna study's folder (search.py): it has a study journal, even a dangling link."""
    return os.path.lexists(os.path.join(folder, STUDY_JOURNAL))


def what_else(log_dir, population):
    """What `log_dir` holds if it is the other kind of run folder: a sweep's (its population file) where a training
    run goes, or a training run's (its state file) where a sweep goes; else None."""
    if not population and holds_a_sweep(log_dir):
        return ("a sweep, not a run (continue it with `mnist-gpu sweep` and its flags with --resume; each of its "
                "member folders is a run of its own)")
    if population and os.path.exists(os.path.join(log_dir, checkpoints.STATE_FILE)):
        return "a training run, not a sweep"
    return None


def latest_checkpoint(log_dir, note):
    """The newest valid checkpoint of log_dir, noting each newer one that was skipped and why."""
    checkpoint, skipped = checkpoints.Saver(log_dir).latest()
    for reason in skipped:
        note(f"skipping a damaged checkpoint: {reason}")
    return checkpoint


def make_folders(path, created, what=None):
    """Create `path` and its missing parents, appending each folder this call made to `created`.

    `what` names the path in an error (text, or an errors.Flag; --log_dir by default).
    """
    what = what or Flag("log_dir", NAME)
    missing, folder = [], os.path.abspath(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:  # made by another process meanwhile (or a file: the lock's open says so)
            continue
        except OSError as error:
            raise WriteError(what, f" {path} cannot be written: {failure_reason(error)}") from None
        created.append(folder)


def new_run_folder(root, created):
    """Make a new run folder under root named by the time now (the next free millisecond); returns its path."""
    make_folders(root, [], "the folder of the runs made without --log_dir,")  # it stays: other runs live in it
    milliseconds = time.time_ns() // 1_000_000
    while True:
        path = os.path.join(root, run_folder_name(milliseconds))
        try:
            os.mkdir(path)
        except FileExistsError:  # another run started in the same millisecond
            milliseconds += 1
            continue
        except OSError as error:
            raise WriteError(f"a new run folder in {root} cannot be made: {failure_reason(error)}") from None
        created.append(path)
        return path


def locked_folder(log_dir, created, note):
    """A descriptor of the folder log_dir (made if missing) holding its exclusive flock; LogDirInUse if another has."""
    for _ in range(LOCK_ATTEMPTS):
        make_folders(log_dir, created)
        try:
            descriptor = os.open(log_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # removed since: a refused run took its folder away; make it again
            continue
        except OSError as error:
            raise WriteError(Flag("log_dir", log_dir), f" cannot be opened: {failure_reason(error)}") from None
        try:
            flock_or_refuse(descriptor, lambda holder: LogDirInUse(
                Flag("log_dir", log_dir), f" is in use by {holder}: one run writes a log_dir at a time; wait for it "
                "to end, or pass another ", Flag("log_dir", NAME)))
        except OSError as error:  # a file system without flock on folders (NFS's needs a file open for writing)
            note(f"--log_dir {log_dir} cannot be locked ({failure_reason(error)}): a second run into it would "
                 "not be refused")
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(log_dir)):
                return descriptor
        os.close(descriptor)  # we locked a folder that was removed while we waited: lock the one there now
    raise WriteError(Flag("log_dir", log_dir), " keeps being removed and made again by another process")


def locked_population(log_dir):
    """A member's folder (a member's name in a folder holding a population file): a descriptor of the population's
    folder holding its flock too, so that no run writes a member while its sweep does (LogDirInUse); else None."""
    folder = os.path.dirname(os.path.abspath(log_dir))
    if not (populations.MEMBER_NAME.fullmatch(os.path.basename(os.path.abspath(log_dir)))
            and os.path.isfile(os.path.join(folder, populations.POPULATION_FILE))):
        return None
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None  # not ours to open: the member folder's own lock is all there is
    try:
        flock_or_refuse(descriptor, lambda holder: LogDirInUse(
            Flag("log_dir", log_dir), f" is a member of the population in {folder}, which is in use by {holder}; wait "
            "for it to end"))
    except OSError:  # no flock there (NFS): as for the log_dir itself
        pass
    return descriptor


def flock_or_refuse(descriptor, refusal):
    """Take the folder's exclusive flock without waiting; where another process holds it, close the descriptor and
    raise refusal(its holder, in words). An OSError is a file system without flock: the caller's to handle."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(descriptor)
        os.close(descriptor)
        raise refusal(holder or "another process") from None


def lock_holder(descriptor):
    """'process PID (its command line)' holding a flock on the file open as `descriptor`, where /proc/locks tells."""
    status = os.fstat(descriptor)
    device = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as stream:
            lines = stream.read().splitlines()
    except OSError:  # not Linux
        return None
    for line in lines:  # "3: FLOCK  ADVISORY  WRITE 5011 fe:00:2156353 0 EOF"; a waiter has "->" after the "3:"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            pid = fields[4]
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as stream:
                    command = stream.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                return f"process {pid}"
            return f"process {pid} ({command[:120]}{'...' if len(command) > 120 else ''})"
    return None


def newest_run(root, note, population=False):
    """The newest run folder under root that has a checkpoint, or for a population its population file (for
    --resume without --log_dir), saying which."""
    folders = run_folders(root, note)
    committed = populations.POPULATION_FILE if population else checkpoints.STATE_FILE
    for age, folder in enumerate(reversed(folders)):
        if os.path.exists(os.path.join(folder, committed)):
            newer = f" ({plural(age, 'newer folder')} without a {'sweep' if population else 'run'}'s checkpoint)" \
                if age else ""
            note(f"--resume without --log_dir: continuing the newest run under {root}, {os.path.basename(folder)}"
                 f"{newer}")
            return folder
    raise FlagError(Flag("resume"), " without ", Flag("log_dir", NAME), f": no run under {root} has a checkpoint to "
                    "continue from")


def newest_checkpoint(root, note):
    """The newest valid checkpoint under root (for eval without --checkpoint), noting what was skipped.

    The newest run's latest valid checkpoint; if it has none, the next older run's; and so on.
    """
    refused = []
    for folder in reversed(run_folders(root, note)):
        if not os.path.exists(os.path.join(folder, checkpoints.STATE_FILE)):
            if holds_a_sweep(folder):
                note(f"skipping {folder}: a sweep (pass --checkpoint with one of its member folders)")
            continue
        try:
            return latest_checkpoint(folder, note)
        except checkpoints.CheckpointError as error:
            note(f"skipping a run with no valid checkpoint: {error}")
            refused.append(str(error))
    if refused:
        raise checkpoints.CheckpointError(f"{root}: no run holds a valid checkpoint ({'; '.join(refused)})")
    raise FlagError("no ", Flag("checkpoint", NAME), f" given, and no run under {root} has a checkpoint; pass ",
                    Flag("checkpoint", NAME), " with a checkpoint file or a log_dir")


def find_checkpoint(path_or_log_dir, note):
    """What a --checkpoint flag names (a file, or a log_dir's newest valid checkpoint), or without one the newest
    valid checkpoint of the runs under the default root; noting each newer checkpoint skipped, and why."""
    if path_or_log_dir is None:
        return newest_checkpoint(locations.runs_root(create=False), note)
    if os.path.isdir(path_or_log_dir):
        if holds_a_sweep(path_or_log_dir):
            members = member_folders(path_or_log_dir)
            example = f" (such as {os.path.join(path_or_log_dir, members[0])})" if members else ""
            raise FlagError(Flag("checkpoint", path_or_log_dir), " is a sweep's folder: pass one of its member "
                            f"folders{example}")
        if holds_a_study(path_or_log_dir):
            raise FlagError(Flag("checkpoint", path_or_log_dir), " is a study's folder: pass one of its members' "
                            "folders, pop<N>/trial<T>_..., as its results.md names them")
        return latest_checkpoint(path_or_log_dir, note)
    return checkpoints.read(path_or_log_dir)

