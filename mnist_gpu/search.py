"""Sweeps on Optuna: `mnist-gpu sweep` as a study whose trials are configurations, trained in populations by workers
on one machine or many, any of which may die (docs/sweeps.md says how to run them and why it works this way).

A sweep runs as a study when a flag asks for one (a range, several hidden or batch sizes, --trials, --sampler,
--prune, --population, --storage, --study, --heartbeat) or its --log_dir holds a study's journal; else it is the
grid of --seed and --learning_rate trained as one population (trainer.run_sweep), with or without Optuna installed.

    a trial       one configuration (learning_rate, hidden1, hidden2, batch_size: each a flag's value, a grid
                  point of its list, or a draw from its range), trained once with each --seed; its objective is
                  its members' mean validation precision at the last evaluation (maximised), the rest are its
                  user attributes (train and test means, each member's precisions, folder and checkpoint)
    the queue     the study's creator enqueues every trial the study will have (each grid point, or --trials
                  empty tickets whose parameters the sampler draws when a worker takes one): taking a WAITING
                  trial is atomic in every Optuna storage, so no trial is trained twice and the study never
                  has more than --trials (Optuna's GridSampler and MaxTrialsCallback can overshoot with
                  several workers: their own documentation says so)
    a population  up to --population members (trials x seeds) of one shape, taken together and trained in
                  one step program (trainer.train) in a folder `pop<first trial>` of the sweep's folder,
                  locked by its worker (runs.claim) while it trains: each member an ordinary run folder
                  trial<T>_h<hidden1>x<hidden2>_b<batch>_lr<rate>_seed<seed>
    a worker      `mnist-gpu sweep` with the study's flags, as many as you like at once, on any machine that
                  reaches the storage: takes trials, trains them, tells Optuna, until none is left, and
                  waits meanwhile for trials of other workers that might die

Workers die. Each beats (a system attribute of each trial it holds, every --heartbeat seconds, from a
thread): a RUNNING trial whose beat has not changed for 3 of its worker's beats, as seen by another worker
(no clocks compared), or that its worker marked interrupted (Ctrl-C, an error), is stale. Stale trials whose
population folder this worker can lock are taken over in place (the lock is free only when no process holds
it: the dead worker's died with it) and resume from the population's last commit, exactly; the others (no
folder yet, a folder on another machine) are failed and retried as new WAITING trials, as Optuna's
RetryFailedTrialCallback does. Nothing we read is trusted: the journal, the definition, a trial's parameters
and attributes are checked before use, and a folder named by an attribute must match our pattern and be a
real folder of ours inside the sweep's folder.
"""
import contextlib
import copy
import fcntl
import itertools
import json
import math
import os
import re
import secrets
import socket
import stat
import threading
import time
import warnings

import numpy as np

from . import checkpoint as checkpoints
from . import population as populations
from . import runs
from .errors import (
    NAME,
    CheckpointError,
    Error,
    Flag,
    FlagError,
    LogDirInUse,
    StudyError,
    TrainingInterrupted,
    WriteError,
)
from .flag_values import MAX_MEMBERS, Range
from .flags import SEARCH_INSTALL
from .log import Log, printable_value
from .population import Member
from .stop_signals import StopSignals
from .study_journal import STUDY_JOURNAL, check_journal, journal_storage

DEFAULT_STUDY = "mnist-gpu"
DEFAULT_POPULATION = 16
DEFAULT_HEARTBEAT = 30.0
STALE_BEATS = 3  # a running trial is stale when its beat has not changed for this many of its worker's beats
MAX_BEAT = 3600.0  # seconds: a beat interval read from the storage beyond this is not ours
SEARCHED = ("hidden1", "hidden2", "batch_size", "learning_rate")  # shape first: a grid's equal shapes sit together
SHAPE = SEARCHED[:3]
STUDY_FLAGS = ("trials", "sampler", "storage", "study", "population", "heartbeat")
FORMAT = "mnist_gpu study 1"
MAX_CELL = 1000  # characters of a value read from the storage shown in a table cell (a member's checkpoint path)
POPULATION_FOLDER = re.compile(r"pop(?P<trial>0|[1-9][0-9]*)(?:-[1-9][0-9]*)?")
SWEEP_KEY, QUEUED_KEY = "mnist_gpu:sweep", "mnist_gpu:queued"  # study user attributes
WORKER, BEAT = "mnist_gpu:worker", "mnist_gpu:heartbeat"  # trial system attributes
FOLDER, INTERRUPTED = "mnist_gpu:population", "mnist_gpu:interrupted"
FAILED_TRIAL, RETRY_HISTORY = "failed_trial", "retry_history"  # Optuna's retry attributes, kept compatible
QUEUE_WAIT = 60.0  # seconds a worker waits for a study being made by another to get its queue


# -- which sweep ----------------------------------------------------------------------------------------------
def wanted(flags):
    """Whether `mnist-gpu sweep` runs as an Optuna study (see the module's docstring)."""
    if any(isinstance(getattr(flags, name), Range) for name in SEARCHED):
        return True
    if any(isinstance(getattr(flags, name), tuple) and len(getattr(flags, name)) > 1 for name in SHAPE):
        return True
    if any(getattr(flags, name) is not None for name in STUDY_FLAGS) or flags.prune != "none":
        return True
    if not (flags.log_dir and runs.holds_a_study(flags.log_dir)):
        return False
    if flags.overwrite:  # it would delete the study only to make it again from flags that describe no study
        raise FlagError(Flag("log_dir", flags.log_dir), " holds an Optuna study, and these flags make a grid "
                        "population (no range, no several shapes, no study flag): ", Flag("overwrite"), " would "
                        "start the study again, not the grid; pass another ", Flag("log_dir", NAME), ", or the "
                        "study's flags")
    return True  # a study's folder: its workers continue it


def run(flags, log=None):
    """`mnist-gpu sweep` and mnist_gpu.sweep: a study where the flags ask for one, else the grid population."""
    from .trainer import run_sweep

    return run_search(flags, log or Log()) if wanted(flags) else run_sweep(flags, log or Log())


def why_a_study(flags):
    for name in SEARCHED:
        value = getattr(flags, name)
        if isinstance(value, Range) or (name in SHAPE and isinstance(value, tuple) and len(value) > 1):
            return f"--{name} {describe_value(value)}"
    given = [f"--{name}" for name in STUDY_FLAGS if getattr(flags, name) is not None]
    return given[0] if given else ("--prune" if flags.prune != "none" else f"--log_dir {flags.log_dir} (a study's)")


def import_optuna(flags):
    """Optuna, quietened (its log lines and warnings would mix with ours), or a StudyError saying what to install."""
    try:
        import optuna
    except ImportError:
        raise StudyError(f"{why_a_study(flags)} makes this sweep an Optuna study, and Optuna is not installed: "
                         f"{SEARCH_INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", module=r"optuna(\.|$)")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_errors(optuna):
    """What a storage raises when it is unreachable or holds something else (caught, named, never a traceback)."""
    # AssertionError: Optuna's journal replay asserts on operations it does not know ("Should not reach");
    # AttributeError: it reads an operation's fields as the types it wrote (a list where a dict was).
    found = [optuna.exceptions.OptunaError, OSError, ValueError, KeyError, TypeError, RuntimeError, AssertionError,
             AttributeError]
    with contextlib.suppress(ImportError):
        import sqlalchemy.exc

        found.append(sqlalchemy.exc.SQLAlchemyError)
    return tuple(found)


def describe_value(value):
    if isinstance(value, Range):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return ",".join(repr(item) if isinstance(item, float) else str(item) for item in value)
    return repr(value) if isinstance(value, float) else str(value)


# -- the search space and the study's definition ------------------------------------------------------------
class Space:
    """The flags a study searches (a list: grid points; a Range: drawn) and those it holds fixed."""

    def __init__(self, flags):
        self.params, self.fixed = {}, {}
        for name in SEARCHED:
            value = getattr(flags, name)
            if value is None:  # --learning_rate's default
                value = 0.01
            if isinstance(value, Range) or (isinstance(value, tuple) and len(value) > 1):
                self.params[name] = value
            else:
                self.fixed[name] = value[0] if isinstance(value, tuple) else value

    @property
    def ranges(self):
        return [name for name, value in self.params.items() if isinstance(value, Range)]

    def grid_points(self):
        """Every point of the lists, shapes outermost (so the points of one shape are taken together)."""
        names = list(self.params)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.params.values())]

    def describe(self):
        return {name: value.describe() if isinstance(value, Range) else list(value)
                for name, value in self.params.items()}

    def largest(self, name):
        value = self.params.get(name, self.fixed.get(name))
        return value.high if isinstance(value, Range) else max(value) if isinstance(value, tuple) else value

    def suggest(self, trial):
        """The trial's parameters (drawn by the study's sampler, or the grid point it was queued with)."""
        params = {}
        for name, value in self.params.items():
            if not isinstance(value, Range):
                params[name] = trial.suggest_categorical(name, list(value))
            elif value.kind is int:
                params[name] = trial.suggest_int(name, value.low, value.high, log=value.log)
            else:
                params[name] = trial.suggest_float(name, value.low, value.high, log=value.log)
        return params

    def check(self, number, params):
        """A trial's parameters as read from the storage: every searched flag, each a value of its list or in its
        range, of the flag's type; anything else was not written by a worker of this study."""
        if not isinstance(params, dict) or set(params) != set(self.params):
            raise StudyError(f"trial {number} has parameters {sorted(params) if isinstance(params, dict) else '?'}, "
                             f"not this study's {sorted(self.params)}: the storage was changed by something else")
        for name, value in params.items():
            allowed = self.params[name]
            kind = allowed.kind if isinstance(allowed, Range) else type(allowed[0])
            fits = (type(value) is kind and math.isfinite(value)
                    and (allowed.low <= value <= allowed.high if isinstance(allowed, Range) else value in allowed))
            if not fits:
                raise StudyError(f"trial {number}'s {name} is {json.dumps(value)[:40]}, outside this study's "
                                 f"{describe_value(allowed)}: the storage was changed by something else")
        return params

    def value(self, params, name):
        return params[name] if name in params else self.fixed[name]

    def shape(self, params):
        return tuple(self.value(params, name) for name in SHAPE)


def definition(flags, space, seeds, trials, sampler):
    """What makes two sweeps the same study (JSON data): the searched and fixed flags, seeds, trials, sampler,
    pruner, and what trains a member (its steps, data, evaluation points)."""
    return json.loads(json.dumps({
        "format": FORMAT, "space": space.describe(), "fixed": space.fixed, "seeds": list(seeds),
        "trials": trials, "sampler": sampler, "prune": flags.prune, "max_steps": flags.max_steps,
        "eval_every": flags.eval_every, "dataset": flags.dataset, "fake_data": flags.fake_data}))


def first_difference(ours, theirs):
    """(flag, this sweep's value, the study's value) of the first part of two definitions that differs, or None."""
    if not isinstance(theirs, dict):
        return "the sweep", "a definition", json.dumps(theirs)[:60]
    for key, value in ours.items():
        other = theirs.get(key)
        if key in ("space", "fixed") and isinstance(other, dict):
            for name in sorted(set(value) | set(other)):
                if value.get(name) != other.get(name):
                    return f"--{name}", shown(value.get(name)), shown(other.get(name))
        elif value != other:
            return {"seeds": "--seed", "format": "the format"}.get(key, f"--{key}"), shown(value), shown(other)
    return None


def shown(value):
    """A definition's value as a flag would be typed (a value read from a storage: any JSON, cut short)."""
    if value is None:
        return "(none)"
    if isinstance(value, dict) and set(value) == {"low", "high", "log", "type"}:
        return f"{value['low']}:{value['high']}{':log' if value['log'] is True else ''}"[:60]
    if isinstance(value, list):
        return ",".join(json.dumps(item) for item in value)[:60]
    return json.dumps(value)[:60]


# -- storage --------------------------------------------------------------------------------------------------
def redacted(url):
    """A storage URL without its password, for messages and the records a run keeps."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def rdb_storage(optuna, url):
    """Optuna's RDB storage at `url`, connected (its tables made if new), or one line saying why not."""
    if "://" not in url:
        raise FlagError(Flag("storage", url), ": expected a database URL such as postgresql://user@host/db (the "
                        "journal file needs no flag: it is made in ", Flag("log_dir", NAME), ")")
    given, options = url, {"pool_pre_ping": True}
    if url.startswith("postgresql://"):  # SQLAlchemy < 2.1 reads it as psycopg2's; the extra brings psycopg (3)
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith(("postgresql", "mysql")):
        options["connect_args"] = {"connect_timeout": 10}
    try:
        # Through Optuna's own cache, as a Study uses it: trials taken here and told through a Study stay in one view.
        return optuna.storages.get_storage(optuna.storages.RDBStorage(url, engine_kwargs=options))
    except ImportError:
        raise StudyError(f"--storage {redacted(given)}: the database's Python driver is missing (PostgreSQL: "
                         f"{SEARCH_INSTALL} brings psycopg)") from None
    except storage_errors(optuna) as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        if "dialect" in reason or "Could not parse" in reason:
            raise FlagError(Flag("storage", redacted(given)), f" is not a database URL Optuna can use: {reason}") \
                from None
        raise StudyError(f"--storage {redacted(given)} cannot be reached: {reason}") from None


# -- the sweep's folder ---------------------------------------------------------------------------------------
def held_shared(folder, exclusive=False):
    """A descriptor of `folder` holding its flock, shared by the study's workers (a run's exclusive claim is
    refused meanwhile, and so is a worker while such a run holds it); exclusive for --overwrite."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = runs.lock_holder(descriptor)
        os.close(descriptor)
        raise LogDirInUse(f"--log_dir {folder} is in use by {holder or 'another process'}"
                          f"{': --overwrite waits for every worker of its study to end' if exclusive else ''}")\
            from None
    except OSError:  # no flock here (some NFS): the population folders' own locks still hold
        pass
    return descriptor


def holds_a_run(folder):
    """What in `folder` is a run or a grid population's (not a study's), or None."""
    names = [name for name in runs.run_files(folder) if name not in (populations.RESULTS_CSV, populations.RESULTS_MD)]
    names += [f"{name}/" for name in runs.member_folders(folder)]
    return names or None


def population_folders(folder):
    """Names of the real folders in the sweep's folder named like a population's."""
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with contextlib.suppress(OSError):
            if POPULATION_FOLDER.fullmatch(name) and stat.S_ISDIR(os.lstat(os.path.join(folder, name)).st_mode):
                found.append(name)
    return found


def erase(folder):
    """--overwrite of a study in its folder (no worker in it): the journal, the results, every population's run files
    and folders; only names of ours."""
    for name in population_folders(folder):
        path = os.path.join(folder, name)
        runs.Run(path).start_writing(overwrite=True)
        for leftover in runs.run_files(path):
            os.remove(os.path.join(path, leftover))
        with contextlib.suppress(OSError):
            os.rmdir(path)
    for name in (STUDY_JOURNAL, STUDY_JOURNAL + ".lock", populations.RESULTS_CSV, populations.RESULTS_MD):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, name))


# -- the study --------------------------------------------------------------------------------------------------
def choose_sampler(flags, space):
    if flags.sampler == "grid" and space.ranges:
        name = space.ranges[0]
        raise FlagError(Flag("sampler", "grid"), " takes lists; ", Flag(name, describe_value(space.params[name])),
                        " is a range (pass ", Flag("sampler", "tpe"), " or random)")
    return flags.sampler or ("tpe" if space.ranges else "grid")


def queue_of(flags, space, sampler):
    """The parameters of every trial the study will have ({} where the sampler draws them)."""
    if sampler != "grid":
        if flags.trials is None:
            what = (Flag(space.ranges[0], describe_value(space.params[space.ranges[0]])), " is a range") \
                if space.ranges else (Flag("sampler", sampler), " draws configurations")
            raise FlagError(*what, ": pass ", Flag("trials", NAME), ", how many configurations to try")
        return [{}] * flags.trials
    points = space.grid_points()
    if flags.trials is not None and flags.trials > len(points):
        lists = " x ".join(f"{len(values)} --{name}" for name, values in space.params.items()) or "no list"
        raise FlagError(Flag("trials", flags.trials), f" is more than the grid has: {len(points)} point"
                        f"{'' if len(points) == 1 else 's'} ({lists})")
    return points[:flags.trials] if flags.trials is not None else points


def make_sampler(optuna, sampler, seed):
    if sampler in ("grid", "random"):  # grid: every point is queued with its parameters, no sampler draws one
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(optuna, flags):
    if flags.prune == "median":
        return optuna.pruners.MedianPruner()
    if flags.prune == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=flags.eval_every)
    return optuna.pruners.NopPruner()


def trial_seed(base, number):
    """The sampler's seed for trial `number`: one worker's study repeats exactly, and no two trials draw alike."""
    return int(np.random.SeedSequence([base, number]).generate_state(1)[0])


def slot_of(frozen):
    """A trial's first number: a retried trial keeps its first trial's (Optuna's `failed_trial`), and so its folders."""
    first = frozen.system_attrs.get(FAILED_TRIAL, frozen.number)
    return first if type(first) is int and 0 <= first <= frozen.number else frozen.number


class Study:
    """The study in its storage, checked against this sweep's definition; made (with its queue) if it is new."""

    def __init__(self, optuna, flags, folder, log):
        self.optuna, self.flags, self.log = optuna, flags, log
        self.space = Space(flags)
        self.sampler_name = choose_sampler(flags, self.space)
        self.queue = queue_of(flags, self.space, self.sampler_name)
        self.name = flags.study or DEFAULT_STUDY
        self.folder = folder
        self.journal = None if flags.storage else os.path.join(folder, STUDY_JOURNAL)
        self.where = self.journal or redacted(flags.storage)
        self.errors = storage_errors(optuna)
        self.storage, self.study_id, self.seeds = None, None, flags.seed

    def definition(self, seeds):
        return definition(self.flags, self.space, seeds, len(self.queue), self.sampler_name)

    def open_existing(self):
        """Connect and load the study if it exists, checking its definition (adopting its seeds when the command
        gave none). Writes nothing. Returns whether it exists."""
        if self.journal is not None:
            if not check_journal(self.journal):
                return False
            self.storage = self.guarded(journal_storage, self.journal)
        else:
            self.storage = rdb_storage(self.optuna, self.flags.storage)
        if self.name not in {study.study_name for study in self.guarded(self.storage.get_all_studies)}:
            return False
        self.study_id = self.guarded(self.storage.get_study_id_from_name, self.name)
        stored = self.wait_for(SWEEP_KEY, "definition")
        seeds = list(self.seeds) if self.seeds is not None else stored.get("seeds") if isinstance(stored, dict) \
            else None
        if not (isinstance(seeds, list) and 0 < len(seeds) <= MAX_MEMBERS
                and all(type(seed) is int and seed >= 0 for seed in seeds)):
            raise StudyError(f"study {self.name!r} in {self.where} holds no seeds mnist-gpu wrote; not a study of ours")
        difference = first_difference(self.definition(seeds), stored)
        if difference:
            flag, ours, theirs = difference
            raise FlagError(f"study {self.name!r} in {self.where} is another sweep's: its {flag} is {theirs}, this "
                            f"command's {ours}; repeat that sweep's flags to continue it, or pass another "
                            f"{'--study' if self.flags.storage else '--log_dir'}")
        self.seeds = tuple(seeds)
        directions = self.guarded(self.storage.get_study_directions, self.study_id)
        if [direction.name for direction in directions] != ["MAXIMIZE"]:
            raise StudyError(f"study {self.name!r} in {self.where} does not maximise one objective; not a study of "
                             "ours")
        return True

    def create(self, seeds):
        """Make the study (another worker may have just made it: then it is checked as any existing one)."""
        optuna = self.optuna
        if self.storage is None:
            self.storage = self.guarded(journal_storage, self.journal)
        try:
            self.guarded(optuna.create_study, storage=self.storage, study_name=self.name, direction="maximize")
        except StudyError as error:
            if isinstance(error.__cause__, optuna.exceptions.DuplicatedStudyError):
                if not self.open_existing():
                    raise
                return
            raise
        self.study_id = self.guarded(self.storage.get_study_id_from_name, self.name)
        self.seeds = tuple(seeds)
        study = self.handle(trial_seed(self.seeds[0], 0))
        self.guarded(study.set_user_attr, SWEEP_KEY, self.definition(self.seeds))
        for params in self.queue:
            self.guarded(study.enqueue_trial, params)
        self.guarded(study.set_user_attr, QUEUED_KEY, len(self.queue))
        self.log.note(f"made study {self.name!r} in {self.where}: {len(self.queue)} trial"
                      f"{'' if len(self.queue) == 1 else 's'} queued ({self.sampler_name} sampler)")

    def wait_for(self, key, what):
        """A study attribute that its maker writes just after making it (a worker may look in between)."""
        deadline = time.monotonic() + QUEUE_WAIT
        while True:
            found = self.guarded(self.storage.get_study_user_attrs, self.study_id)
            if key in found:
                return found[key]
            if time.monotonic() > deadline:
                other = "--study" if self.flags.storage else "--log_dir (or --overwrite to make it again)"
                raise StudyError(f"study {self.name!r} in {self.where} has no {what} after {QUEUE_WAIT:.0f} s: it was "
                                 f"not made by mnist-gpu sweep, or its maker stopped while making it; pass another "
                                 f"{other}")
            time.sleep(0.2)

    def handle(self, seed):
        """An optuna.Study on this storage, with this sweep's pruner and a sampler seeded with `seed` (< 2**32)."""
        return self.guarded(self.optuna.load_study, study_name=self.name, storage=self.storage,
                            sampler=make_sampler(self.optuna, self.sampler_name, seed),
                            pruner=make_pruner(self.optuna, self.flags))

    def guarded(self, call, *arguments, **keywords):
        """call(...), its storage's failures as one line (a StudyError naming the storage)."""
        try:
            return call(*arguments, **keywords)
        except Error:
            raise
        except self.errors as error:
            reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200] or type(error).__name__
            raise StudyError(f"study {self.name!r} in {self.where}: {type(error).__name__}: {reason}") from error

    def trials(self, states=None):
        return self.guarded(self.storage.get_all_trials, self.study_id, deepcopy=False, states=states)

    def trial_id(self, number):
        return self.guarded(self.storage.get_trial_id_from_study_id_trial_number, self.study_id, number)


# -- workers --------------------------------------------------------------------------------------------------
class Heartbeat(threading.Thread):
    """Every `every` seconds, a new beat on each trial the worker holds (held: {trial_id: number})."""

    def __init__(self, study, every, held, note):
        super().__init__(name="mnist-gpu heartbeat", daemon=True)
        self.study, self.every, self.held, self.note = study, every, held, note
        self.count, self.halt, self.failing = 0, threading.Event(), False

    def beat(self, trial_id):
        self.study.storage.set_trial_system_attr(trial_id, BEAT, {"count": self.count, "every": self.every})

    def run(self):
        while not self.halt.wait(self.every):
            self.count += 1
            for trial_id in list(self.held):
                try:
                    self.beat(trial_id)
                    self.failing = False
                except self.study.errors as error:  # the storage is away: try again at the next beat
                    if not self.failing:
                        self.note(f"a heartbeat could not be written ({type(error).__name__}: "
                                  f"{' '.join(str(error).split())[:120]}); trying again")
                    self.failing = True

    def stop(self):
        self.halt.set()
        if self.is_alive():
            self.join()


def marked_interrupted(frozen):
    """Whether the trial's own worker marked it interrupted (Worker.release: Ctrl-C), rather than dying with it."""
    attrs = frozen.system_attrs
    return attrs.get(INTERRUPTED) is not None and attrs.get(INTERRUPTED) == attrs.get(WORKER)


class Watch:
    """Which RUNNING trials of other workers are stale: their worker marked them interrupted, or their beat has not
    changed for STALE_BEATS of its interval, as this process saw it (no two machines' clocks are compared)."""

    def __init__(self, default_every):
        self.default_every, self.seen = default_every, {}

    def stale(self, frozen, now):
        attrs = frozen.system_attrs
        worker, beat = attrs.get(WORKER), attrs.get(BEAT)
        if marked_interrupted(frozen):
            return True
        every = beat.get("every") if isinstance(beat, dict) else None
        if not (type(every) is float and 0 < every <= MAX_BEAT):
            every = self.default_every
        key = json.dumps([worker, beat], sort_keys=True, default=str)
        seen = self.seen.get(frozen.number)
        if seen is None or seen[0] != key:
            self.seen[frozen.number] = (key, now)
            return False
        return now - seen[1] >= STALE_BEATS * every


class Slot:
    """A trial this worker holds: its optuna Trial, number, first number (its folders'), and parameters."""

    def __init__(self, trial_id, trial, number, slot, params):
        self.trial_id, self.trial, self.number, self.slot, self.params = trial_id, trial, number, slot, params
        self.told = False


class Worker:
    """One `mnist-gpu sweep` process's part of the study: take trials, train them in populations, tell, repeat."""

    def __init__(self, optuna, study, flags, log, signals):
        self.optuna, self.study, self.flags, self.log, self.signals = optuna, study, flags, log, signals
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.space, self.seeds, self.folder = study.space, study.seeds, study.folder
        self.every = flags.heartbeat or DEFAULT_HEARTBEAT
        self.population = flags.population or DEFAULT_POPULATION
        self.held = {}  # trial_id -> number, of the trials this worker holds (RUNNING, beating)
        self.watch = Watch(self.every)
        self.jobs = []  # populations taken, not yet trained
        self.trained = []  # every member this worker trained
        self.heartbeat = Heartbeat(study, self.every, self.held, log.note)
        self.backend = None

    # -- holding trials ---------------------------------------------------------------------------------------
    def hold(self, trial_id, number):
        self.study.guarded(self.study.storage.set_trial_system_attr, trial_id, WORKER, self.id)
        self.held[trial_id] = number
        self.study.guarded(self.heartbeat.beat, trial_id)

    def slot_for(self, trial_id, frozen=None):
        """The Slot of a held trial: an optuna Trial on a study handle whose sampler is seeded for it."""
        frozen = frozen or self.study.guarded(self.study.storage.get_trial, trial_id)
        handle = self.study.handle(trial_seed(self.seeds[0], frozen.number))
        trial = self.study.guarded(self.optuna.trial.Trial, handle, trial_id)
        params = self.study.guarded(self.space.suggest, trial)
        self.space.check(frozen.number, params)
        slot = Slot(trial_id, trial, frozen.number, slot_of(frozen), params)
        slot.handle = handle
        return slot

    def take_queued(self):
        """Take WAITING trials (each atomically: Optuna's own queue), up to a population's worth of trials."""
        wanted = max(1, self.population // len(self.seeds))
        taken = []
        for frozen in self.study.trials(states=(self.optuna.trial.TrialState.WAITING,)):
            if len(taken) >= wanted:
                break
            trial_id = self.study.trial_id(frozen.number)
            try:
                won = self.study.storage.set_trial_state_values(trial_id, self.optuna.trial.TrialState.RUNNING)
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue
            except self.study.errors as error:
                self.study.guarded(_raise, error)
            if won:
                self.hold(trial_id, frozen.number)
                taken.append(self.slot_for(trial_id))
        return taken

    def release(self):
        """Mark every trial still held as interrupted: another worker (or --resume) takes it over at once."""
        for trial_id in list(self.held):
            with contextlib.suppress(*self.study.errors):
                self.study.storage.set_trial_system_attr(trial_id, INTERRUPTED, self.id)
        self.held.clear()

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self):
        try:
            self.heartbeat.start()
        except RuntimeError as error:  # "can't start new thread": without its beat, others would take its trials
            raise StudyError(f"this worker cannot start its heartbeat thread ({error}: an address-space or thread "
                             "limit); it took no trial") from None
        try:
            while True:
                self.check_signals()
                job = self.next_job()
                if job is not None:
                    job.run()
                    continue
                if not self.others_running():
                    return
                self.wait()
        finally:
            self.heartbeat.stop()
            self.release()

    def check_signals(self):
        if self.signals.received is not None:
            raise TrainingInterrupted(self.signals.received, parts=("interrupted between populations; the trials "
                                      "this worker held are marked for another worker (or --resume) to take over",))

    def wait(self):
        deadline = time.monotonic() + min(self.every, 5.0)
        while time.monotonic() < deadline:
            self.check_signals()
            time.sleep(0.05)

    def others_running(self):
        held = set(self.held.values())
        running = self.study.trials(states=(self.optuna.trial.TrialState.RUNNING,))
        return any(frozen.number not in held for frozen in running) or \
            bool(self.study.trials(states=(self.optuna.trial.TrialState.WAITING,)))

    def next_job(self):
        if self.jobs:
            return self.jobs.pop(0)
        job = self.take_over()
        if job is not None:
            return job
        slots = self.take_queued()
        if not slots:
            return None
        self.jobs = self.group(slots)
        return self.jobs.pop(0)

    def group(self, slots):
        """Populations of the taken trials: equal shapes together, each up to --population members (or what the
        backend's memory holds)."""
        from .memory import members_that_fit

        shapes = {}
        for slot in slots:
            shapes.setdefault(self.space.shape(slot.params), []).append(slot)
        jobs = []
        for shape, group in shapes.items():
            fits = members_that_fit(self.get_backend(), self.shape_flags(shape))
            per = max(1, min(self.population, fits) // len(self.seeds))
            jobs += [Job(self, shape, group[start:start + per]) for start in range(0, len(group), per)]
        return jobs

    def get_backend(self):
        if self.backend is None:
            from .numba_cache import get_backend

            self.backend = get_backend(self.flags.backend, self.log.note)
        return self.backend

    def shape_flags(self, shape, folder=None):
        """The flags of a population of this shape in `folder`: the command's, with one value each; the storage's
        password is not kept (a member's provenance records its flags)."""
        flags = copy.copy(self.flags)
        flags.hidden1, flags.hidden2, flags.batch_size = shape
        flags.learning_rate, flags.seed, flags.resume, flags.overwrite = None, None, False, False
        flags.log_dir = folder
        flags.storage = redacted(flags.storage) if flags.storage else STUDY_JOURNAL
        flags.study, flags.population = self.study.name, self.population
        flags.heartbeat = self.every
        return flags

    # -- taking over --------------------------------------------------------------------------------------------
    def take_over(self):
        """A population of stale trials to train (resumed in its own folder), or None; stale trials no folder of
        ours holds are failed and queued again."""
        now, held = time.monotonic(), set(self.held.values())
        running = self.study.trials(states=(self.optuna.trial.TrialState.RUNNING,))
        stale = [frozen for frozen in running if frozen.number not in held and self.watch.stale(frozen, now)]
        by_folder = {}
        for frozen in stale:
            by_folder.setdefault(folder_name(frozen), []).append(frozen)
        for name, group in by_folder.items():
            job = self.resume_job(name) if name is not None else None
            if job == SKIP:
                continue
            if job is not None:
                return job
            self.retry(group)
        return None

    def retry(self, stale):
        """Fail each stale trial (atomic: one worker wins) and queue it again with its parameters, as Optuna's
        RetryFailedTrialCallback does (its `failed_trial` and `retry_history` attributes)."""
        optuna = self.optuna
        state = optuna.trial.TrialState
        for frozen in stale:
            trial_id = self.study.trial_id(frozen.number)
            try:
                won = self.study.storage.set_trial_state_values(trial_id, state.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            except self.study.errors as error:
                self.study.guarded(_raise, error)
            if not won:
                continue
            attrs = {FAILED_TRIAL: slot_of(frozen),
                     RETRY_HISTORY: [*_int_list(frozen.system_attrs.get(RETRY_HISTORY)), frozen.number]}
            if isinstance(frozen.system_attrs.get("fixed_params"), dict):
                attrs["fixed_params"] = frozen.system_attrs["fixed_params"]
            again = self.study.guarded(self.study.storage.create_new_trial, self.study.study_id,
                                       template_trial=optuna.trial.create_trial(
                                           state=state.WAITING, params=frozen.params,
                                           distributions=frozen.distributions, system_attrs=attrs,
                                           intermediate_values=frozen.intermediate_values))
            number = self.study.guarded(self.study.storage.get_trial_number_from_id, again)
            what = "was interrupted" if marked_interrupted(frozen) else "stopped beating"
            what += " before it trained" if folder_name(frozen) is None else \
                " and its population folder cannot be resumed here"
            self.log.note(f"trial {frozen.number} (worker {printable_value(frozen.system_attrs.get(WORKER), 80)}) "
                          f"{what}: failed, and queued again as trial {number} (its folders will keep the name "
                          f"trial{slot_of(frozen)})")

    def resume_job(self, name):
        """The population in folder `name`, locked and checked, when its trials are all stale or finished; SKIP while
        another process holds its lock (or its trials beat again); None when it cannot be resumed here."""
        path = os.path.join(self.folder, name)
        try:
            status = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
            return None
        committed = os.path.lexists(os.path.join(path, populations.POPULATION_FILE))
        stack = contextlib.ExitStack()
        try:
            run_ = stack.enter_context(runs.claim(path, resume=committed, overwrite=not committed, note=self.log.note,
                                                  population=True))
        except LogDirInUse:
            return SKIP
        except Error as error:
            self.log.note(f"cannot resume {path}: {error}")
            return None
        job = None
        try:
            job = self.checked_resume(name, path, run_)
        finally:
            if not isinstance(job, Job):
                stack.close()
        if isinstance(job, Job):
            job.stack = stack
        return job

    def checked_resume(self, name, path, run_):
        """The Job resuming the locked population `name`; SKIP when its trials are finished or beat again; None when
        its folder and the study disagree."""
        state = self.optuna.trial.TrialState
        now = time.monotonic()
        current = {}  # slot -> its newest trial
        for frozen in self.study.trials():
            if current.get(slot_of(frozen)) is None or frozen.number > current[slot_of(frozen)].number:
                current[slot_of(frozen)] = frozen
        ours = {slot: frozen for slot, frozen in current.items() if folder_name(frozen) == name}
        running = {slot: frozen for slot, frozen in ours.items() if frozen.state == state.RUNNING}
        if not running or not all(self.watch.stale(frozen, now) for frozen in running.values()):
            return SKIP
        found = run_.resume_from
        shapes = {self.space.shape(self.space.check(frozen.number, frozen.params)) for frozen in ours.values()}
        listed = {member.get("trial") for member in found["members"]} if found is not None else set(running)
        if len(shapes) != 1 or not set(running) <= listed or not listed <= set(ours) or (
                found is not None and shapes != {tuple(found["flags"][name] for name in SHAPE)}):
            self.log.note(f"{path}'s population file does not list the trials that name it; not resumed")
            return None
        shape = shapes.pop()
        finished = {slot: frozen for slot, frozen in ours.items() if slot not in running}
        rates = {slot: float(self.space.value(frozen.params, "learning_rate")) for slot, frozen in running.items()}
        saved = None
        try:  # every member's committed checkpoint, before anything is taken: one that fails its checks is a restart
            members = population_members(path, shape, rates, self.seeds, found, finished)
            if found is not None:
                from .trainer import read_member_checkpoint

                saved = [read_member_checkpoint(member, found) for member in members]
        except CheckpointError as error:
            self.log.note(f"{path} cannot be resumed ({error}); its trials start again")
            return None
        slots = []
        for _, frozen in sorted(running.items()):
            trial_id = self.study.trial_id(frozen.number)
            self.hold(trial_id, frozen.number)
            slots.append(self.slot_for(trial_id))
        step = f"from step {found['global_step']}" if found is not None else "from the start (nothing committed)"
        worker = printable_value(next(iter(running.values())).system_attrs.get(WORKER), 80)
        self.log.note(f"taking over {name} (trial{'s' if len(slots) > 1 else ''} "
                      f"{', '.join(str(slot.number) for slot in slots)}; worker {worker} stopped): resuming {step}")
        job = Job(self, shape, slots, run=run_, found=found)
        job.members, job.saved = members, saved
        return job


SKIP = "skip"  # Worker.resume_job: leave these trials for now


def population_members(path, shape, rates, seeds, found=None, finished=None):
    """A population's members: each trial ({first number: learning rate}) with each seed, or (resumed) its
    population file's. A member whose trial is finished already (told by the worker that died) stays stopped."""
    if found is None:
        names = [(populations.member_name(seed, rates[trial], trial, shape), seed, trial)
                 for trial in rates for seed in seeds]
        return [Member(name, seed, rates[trial], os.path.join(path, name), trial) for name, seed, trial in names]
    members = [Member(saved["name"], saved["seed"], saved["learning_rate"], os.path.join(path, saved["name"]),
                      saved.get("trial")) for saved in found["members"]]
    for member in members:
        if member.trial in rates:
            if member.learning_rate != rates[member.trial] or member.seed not in seeds:
                raise CheckpointError(f"{path}: {member.name} is not a member of trial {member.trial} (learning "
                                      f"rate {rates[member.trial]!r}, seeds {describe_value(seeds)})")
            continue
        state = (finished or {}).get(member.trial)
        member.stopped = {"step": max(found["global_step"] - 1, 0), "noted": True,
                          "why": f"{populations.PRUNED}: its trial finished ({state.state.name if state else 'gone'})"
                                 " before this population resumed"}
    return members


def folder_name(frozen):
    """The population folder a trial's attribute names, if it is a name of ours (never a path), else None."""
    name = frozen.system_attrs.get(FOLDER)
    return name if isinstance(name, str) and POPULATION_FOLDER.fullmatch(name) else None


def _raise(error):
    raise error


def _int_list(value):
    return [item for item in value if type(item) is int] if isinstance(value, list) else []


class Job:
    """A population to train: trials of one shape (Slots), in a new folder or resumed in its own (`run` locked)."""

    def __init__(self, worker, shape, slots, run=None, found=None):
        self.worker, self.shape, self.slots = worker, shape, slots
        self.run_, self.found = run, found
        self.members, self.saved = None, None  # a taken-over population's, read before its trials were taken
        self.stack = contextlib.ExitStack()

    def new_folder(self):
        first = min(slot.slot for slot in self.slots)
        for index in itertools.count():
            name = f"pop{first}" + (f"-{index}" if index else "")
            try:
                os.mkdir(os.path.join(self.worker.folder, name))
                return name
            except FileExistsError:
                continue
            except OSError as error:
                raise WriteError(f"a population folder in {self.worker.folder} cannot be made: "
                                 f"{error.strerror}") from None

    def run(self):
        from .trainer import take_back_stops, train

        worker = self.worker
        study = worker.study
        with self.stack:
            taken_over = self.run_ is not None
            if not taken_over:
                name = self.new_folder()
                self.run_ = self.stack.enter_context(runs.claim(os.path.join(worker.folder, name),
                                                                note=worker.log.note, population=True))
            path = self.run_.log_dir
            name = os.path.basename(path)
            for slot in self.slots:
                study.guarded(study.storage.set_trial_system_attr, slot.trial_id, FOLDER, name)
            flags = worker.shape_flags(self.shape, path)
            flags.overwrite = taken_over and self.found is None  # a dead worker's uncommitted files: start afresh
            members = self.members or population_members(
                path, self.shape, {slot.slot: float(worker.space.value(slot.params, "learning_rate"))
                                   for slot in self.slots}, worker.seeds)
            resumed = None
            if self.found is not None:
                resumed = (self.found["global_step"], self.saved)
                if self.found["global_step"] >= flags.max_steps:  # trained: only its trials are left to tell
                    take_back_stops(members, self.saved)
                    self.evaluate_saved(flags, members, self.saved)
                    self.tell(members)
                    return
            try:
                loop = train(flags, members, self.run_, resumed, worker.signals, worker.log, time.time(), True,
                             on_evaluation=self.on_evaluation)
            except TrainingInterrupted as interrupted:
                where = os.path.join(name, os.path.basename(interrupted.saved)) if interrupted.saved else name
                raise TrainingInterrupted(interrupted.signal_number, interrupted.step, interrupted.saved, None,
                                          (f"interrupted at step {interrupted.step}; saved {where}; the same "
                                           "mnist-gpu sweep command with --resume continues the study (or another "
                                           "worker takes its trials over)",)) from None
            if loop is not None:
                worker.trained += loop.results()
            self.tell(members)

    def evaluate_saved(self, flags, members, saved):
        """Every member's evaluation of its last checkpoint (a population that finished training but whose worker
        died before telling every trial)."""
        from . import model as mnist
        from .evaluate import SPLITS, evaluate_quietly
        from .input_data import read_data_sets
        from .steps import DeviceSplit

        backend = self.worker.get_backend()
        data_sets = read_data_sets(flags.input_data_dir, flags.fake_data, dataset=flags.dataset,
                                   source_url=flags.source_url)
        splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}
        evaluate_quietly(backend, splits, mnist.stacked([checkpoint.variables for checkpoint in saved]), members,
                         flags.batch_size, saved[0].global_step - 1)

    # -- Optuna ---------------------------------------------------------------------------------------------------
    def groups(self, members):
        """{slot: (Slot, its members)} of the trials this job trains."""
        return {slot.slot: (slot, [member for member in members if member.trial == slot.slot])
                for slot in self.slots}

    def on_evaluation(self, step, members):
        """Report each trial's mean validation precision at this evaluation; prune those the pruner stops."""
        worker = self.worker
        flags = worker.flags
        stops = {}
        for slot, group in self.groups(members).values():
            if slot.told:
                continue
            value = mean_precision(group, "validation")
            if value is None:
                continue
            with contextlib.suppress(*worker.study.errors):
                slot.trial.report(value, step + 1)
            if flags.prune == "none" or step + 1 >= flags.max_steps:
                continue
            try:
                prune = slot.trial.should_prune()
            except worker.study.errors:
                prune = False
            if prune:
                why = f"{populations.PRUNED} at step {step} by the {flags.prune} pruner (validation precision " \
                      f"{value:.4f})"
                for member in group:
                    if member.stopped is None:
                        stops[member.name] = why
                self.tell_trial(slot, group, pruned_at=step)
                worker.log.note(f"trial {slot.number} {why}: its members stop training, the others train on")
        return stops

    def tell(self, members):
        for slot, group in self.groups(members).values():
            if not slot.told:
                self.tell_trial(slot, group)

    def tell_trial(self, slot, group, pruned_at=None):
        worker = self.worker
        study, state = worker.study, worker.optuna.trial.TrialState
        slot.told = True
        worker.held.pop(slot.trial_id, None)
        value = mean_precision(group, "validation")
        records = [member_record(member, worker.folder, pruned_at) for member in group]
        try:
            for key, item in (("members", records), ("train_precision", mean_precision(group, "train")),
                              ("test_precision", mean_precision(group, "test")),
                              ("population", os.path.relpath(os.path.dirname(group[0].log_dir), worker.folder))):
                slot.trial.set_user_attr(key, item)
            if pruned_at is not None:
                slot.handle.tell(slot.trial, state=state.PRUNED)
            elif value is None:
                slot.handle.tell(slot.trial, state=state.FAIL)
            else:
                slot.handle.tell(slot.trial, value)
        except (worker.optuna.exceptions.UpdateFinishedTrialError, ValueError):
            worker.log.note(f"trial {slot.number} was finished by another worker meanwhile (its heartbeat was late); "
                            "this worker's result is kept in its folder only")
        except study.errors as error:
            study.guarded(_raise, error)


def mean_precision(members, split):
    """The members' mean precision on `split` at their last evaluation, or None before any."""
    values = []
    for member in members:
        if not member.evaluations:
            return None
        examples, correct = member.evaluations[max(member.evaluations)][split]
        values.append(correct / examples)
    return float(np.mean(values))


def member_record(member, folder, pruned_at):
    """What a trial's user attributes say of one member (JSON): where it is, how it ended."""
    last = max(member.evaluations) if member.evaluations else None
    precisions = {split: correct / examples for split, (examples, correct)
                  in (member.evaluations[last].items() if last is not None else ())}
    diverged = member.stopped["step"] if member.stopped is not None and \
        not populations.was_pruned(member.stopped) else None
    final = last is not None and pruned_at is None  # a pruned member's last checkpoints rotate on: name its folder
    return {"name": member.name, "seed": member.seed, "folder": os.path.relpath(member.log_dir, folder),
            "checkpoint": os.path.relpath(os.path.join(member.log_dir, checkpoints.checkpoint_name(last)), folder)
            if final else None,
            **precisions, "final_loss": member.last_loss if math.isfinite(member.last_loss) else None,
            "diverged_at_step": diverged, "pruned_at_step": pruned_at}


# -- the study's results ------------------------------------------------------------------------------------------
RESULT_COLUMNS = ("trial", "state", "value", "learning_rate", "hidden1", "hidden2", "batch_size", "member", "seed",
                  "train", "validation", "test", "final_loss", "diverged_at_step", "pruned_at_step", "checkpoint")


def study_rows(study, trials):
    """One row per member of each finished trial (read from the storage: every value checked, text made safe)."""
    rows = []
    for frozen in sorted(trials, key=lambda frozen: frozen.number):
        if not frozen.state.is_finished() or frozen.state.name == "FAIL":
            continue
        params = {name: study.space.value(frozen.params, name) if name in frozen.params or name in study.space.fixed
                  else "" for name in SEARCHED}
        members = frozen.user_attrs.get("members")
        for record in members if isinstance(members, list) else [{}]:
            record = record if isinstance(record, dict) else {}
            row = {"trial": frozen.number, "state": frozen.state.name.lower(), "value": _number(frozen.value),
                   **{name: _safe(value) for name, value in params.items()},
                   "member": _safe(record.get("folder")), "seed": _safe(record.get("seed")),
                   **{key: _number(record.get(key)) for key in ("train", "validation", "test", "final_loss")},
                   "diverged_at_step": _safe(record.get("diverged_at_step")),
                   "pruned_at_step": _safe(record.get("pruned_at_step")), "checkpoint": _safe(record.get("checkpoint"))}
            rows.append({key: row[key] for key in RESULT_COLUMNS})
    return rows


def _number(value):
    return value if type(value) in (int, float) and math.isfinite(value) else ""


def _safe(value):
    if value is None:
        return ""
    if type(value) in (int, float):
        return value
    return printable_value(value, MAX_CELL).replace("|", "/").replace(",", ";")


def write_study_results(study, trials, best):
    import csv
    import io

    rows = study_rows(study, trials)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    intact = "every trial is recorded in the study's storage (this command again writes the table)"
    populations.write_durably(os.path.join(study.folder, populations.RESULTS_CSV), text.getvalue().encode(), intact)
    markdown = study_markdown(study, trials, rows, best)
    populations.write_durably(os.path.join(study.folder, populations.RESULTS_MD), markdown.encode(), intact)
    return markdown


def study_markdown(study, trials, rows, best):
    counts = {}
    for frozen in trials:
        counts[frozen.state.name.lower()] = counts.get(frozen.state.name.lower(), 0) + 1
    lines = [f"# Study {_safe(study.name)}", "",
             f"{len(trials)} trials: " + ", ".join(f"{count} {state}" for state, count in sorted(counts.items())) +
             f" (in {_safe(study.where)})."]
    if best is not None:
        lines.append(f"Best: trial {best.number}, validation precision {best.value:.4f} (" +
                     ", ".join(f"{name} {describe_value(value)}" for name, value in sorted(best.params.items()))
                     + ").")
    lines += ["", "| " + " | ".join(RESULT_COLUMNS) + " |", "|" + "---|" * len(RESULT_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f"{value:.4f}" if isinstance(value, float) and key != "learning_rate"
                                       else repr(value) if isinstance(value, float) else str(value)
                                       for key, value in row.items()) + " |")
    return "\n".join(lines) + "\n"


# -- the command ------------------------------------------------------------------------------------------------
def sweep_folder(flags, log):
    """The sweep's folder (--log_dir; with --resume and none, the newest run folder holding a study journal), or None
    for a new run folder, made later."""
    if flags.log_dir is not None:
        if os.path.lexists(flags.log_dir) and not os.path.isdir(flags.log_dir):
            raise WriteError(f"--log_dir {flags.log_dir} is a file, not a folder")
        return flags.log_dir
    if not flags.resume:
        return None
    from . import locations

    root = locations.runs_root(create=False)
    for folder in reversed(runs.run_folders(root, log.note)):
        if runs.holds_a_study(folder):
            log.note(f"--resume without --log_dir: continuing the newest study under {root}, "
                     f"{os.path.basename(folder)}")
            return folder
    raise FlagError(Flag("resume"), " without ", Flag("log_dir", NAME), f": no run folder under {root} holds a study "
                    "to continue")


def check_flags(flags, study):
    """What can be refused before anything is written: the steps, the batch and memory of the largest shape."""
    from .input_data import split_sizes
    from .memory import check_memory

    if flags.max_steps == 0:
        raise FlagError(Flag("max_steps", 0), " trains nothing: a study needs steps to compare its trials")
    if flags.resume and flags.overwrite:
        raise FlagError(Flag("resume"), " and ", Flag("overwrite"), " exclude each other")
    if flags.overwrite and flags.storage:
        raise FlagError(Flag("overwrite"), f" would delete study {study.name!r} from a database other workers may "
                        "share; delete it with `optuna delete-study` first, or pass another ", Flag("study", NAME))
    smallest = min(split_sizes(flags.dataset, flags.fake_data).items(), key=lambda item: item[1])
    if study.space.largest("batch_size") > smallest[1]:
        given = study.space.params.get("batch_size", study.space.largest("batch_size"))
        raise FlagError(Flag("batch_size", describe_value(given)), f" reaches {study.space.largest('batch_size')}, "
                        f"larger than the {smallest[0]} set ({smallest[1]} examples)")
    largest = copy.copy(flags)
    largest.hidden1, largest.hidden2, largest.batch_size = (study.space.largest(name) for name in SHAPE)
    from .numba_cache import get_backend

    check_memory(get_backend(flags.backend, study.log.note), largest, len(flags.seed) if flags.seed else 1)


def run_search(flags, log):
    """A worker of the study these flags describe (made if new). Returns a SweepResult: the members this worker
    trained, and `trials`, the study's rows (results.csv's)."""
    from .trainer import SweepResult, random_seed

    optuna = import_optuna(flags)
    folder = sweep_folder(flags, log)
    study = Study(optuna, flags, folder or "", log)
    check_flags(flags, study)
    exists = False
    if folder is not None and os.path.isdir(folder):
        what = holds_a_run(folder)
        if what:
            raise FlagError(Flag("log_dir", folder), f" holds a run, not a study ({', '.join(what[:4])}); pass "
                            "another ", Flag("log_dir", NAME))
        if flags.overwrite and runs.holds_a_study(folder):
            descriptor = held_shared(folder, exclusive=True)
            try:
                erase(folder)
            finally:
                os.close(descriptor)
            log.note(f"--overwrite: deleted the study in {folder}")
        exists = study.open_existing()
    elif flags.storage:
        exists = study.open_existing()
    if not exists and flags.resume:
        raise FlagError(Flag("resume"), f": no study {study.name!r} in {study.where or folder} to continue")
    created = []
    if folder is None:
        from . import locations

        folder = runs.new_run_folder(locations.runs_root(), created)
    else:
        runs.make_folders(folder, created)
    study.folder = folder
    if study.journal is not None:
        study.journal = os.path.join(folder, STUDY_JOURNAL)
        study.where = study.journal
    descriptor = None
    try:
        from .durable import ensure_writable_folder

        ensure_writable_folder(folder, "--log_dir")
        descriptor = held_shared(folder)
        if not exists:
            study.create(flags.seed if flags.seed else (random_seed(),))
        else:
            study.wait_for(QUEUED_KEY, "queue")
        created.clear()  # the study is written: its folder stays
        return work(optuna, study, flags, log, SweepResult)
    finally:
        if descriptor is not None:
            os.close(descriptor)
        for made in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(made)


def work(optuna, study, flags, log, result_class):
    log.note(f"worker of study {study.name!r} in {study.where}: seeds {describe_value(study.seeds)}, populations of "
             f"up to {runs.plural(flags.population or DEFAULT_POPULATION, 'member')}, heartbeat every "
             f"{flags.heartbeat or DEFAULT_HEARTBEAT:g} s, log_dir {study.folder}")
    with StopSignals() as signals:
        signals.deferring = True  # a signal is handled between steps and between populations, never mid-write
        worker = Worker(optuna, study, flags, log, signals)
        worker.run()
    trials = study.trials()
    complete = [frozen for frozen in trials if frozen.state.name == "COMPLETE" and _number(frozen.value) != ""]
    best = max(complete, key=lambda frozen: frozen.value) if complete else None  # a value read back is a number
    markdown = write_study_results(study, trials, best)
    for line in markdown.splitlines():
        log.line(line)
    return result_class(members=worker.trained, groups=[], log_dir=study.folder, trials=study_rows(study, trials))
