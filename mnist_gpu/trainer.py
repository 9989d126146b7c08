"""The tutorial's driver (fully_connected_feed.py): train, log, checkpoint, evaluate, and resume, for a population.

A population is K members (population.py) trained by one step program; the tutorial's run
(`mnist-gpu`, run_training) is a population of one, `mnist-gpu sweep` (run_sweep) the grid of its
seeds and learning rates. Each member's files are its checkpoints (checkpoint.py) and TensorBoard
event files (summaries.py) in its own folder; which folder, its lock, and what may be done to it
are runs.py's. An existing run is never deleted silently: --resume continues it exactly,
--overwrite replaces it. Every check happens before the first write, so a refused command changes
nothing. SIGINT and SIGTERM during training finish the step, save it, and stop.

A member whose loss is not finite stops updating at that very step (the step program's loss op
gates it on the device), and one whose loss blew up and stayed up (above 10 ln 10 at two reads)
is stopped by the trainer; either is reported as diverged with its step, and the others train on.
A population of one that diverges is a TrainingDiverged error, as the tutorial's run always was.

stdout carries exactly the tutorial's lines (in a population, each after its member's name);
what mnist_gpu adds (the run's description, notes) goes to stderr. Both go through a Log.
"""
import contextlib
import copy
import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as checkpoints
from . import model as mnist
from . import population as populations
from . import runs
from .backends import blas_library, resolve_backend_name
from .errors import CheckpointError, Flag, FlagError, TrainingDiverged, TrainingInterrupted, WriteError
from .evaluate import SPLITS, EvaluationPictures, check_batch_size, evaluate_all, evaluate_quietly
from .hints import continuation
from .input_data import DataSet, read_data_sets, train_order_seed
from .log import Log, printable_value
from .memory import check_memory, share_one_malloc_arena
from .numba_cache import get_backend
from .open_files import allow_open_files
from .population import Member
from .steps import DeviceSplit
from .stop_signals import StopSignals
from .summaries import Summaries

SEED_DIGITS = 10  # a seed chosen at random has at most this many digits: a person can retype it
SAVE_THREADS = 16  # members saved at once: their fsyncs overlap (their serialising holds the GIL)
BLAS_THREADS = 1  # OpenBLAS on one thread while training (its results change with its thread count); large
# products run in row blocks on Numba's threads instead (openblas.py): no number depends on the machine's cores


@dataclass
class TrainingResult:
    """What a run (or a member of a population) printed, as numbers, and for a run of one the trained model."""

    losses: dict = field(default_factory=dict)  # step -> loss
    evaluations: dict = field(default_factory=dict)  # step -> {"train"|"validation"|"test": (examples, correct)}
    model: mnist.Model = None
    log_dir: str = ""  # where the run's checkpoints and events are (a new folder per run without --log_dir); "" if none
    seed: int = None
    learning_rate: float = None
    diverged_at_step: int = None  # a member that stopped training because its loss diverged
    pruned_at_step: int = None  # a study's member that a pruner stopped (search.py)
    trial: int = None  # a study's member: its trial's number

    @property
    def precision(self):
        """Precision @ 1 of the last evaluation, {split: float} ({} when the run evaluated nothing)."""
        if not self.evaluations:
            return {}
        last = self.evaluations[max(self.evaluations)]
        return {split: correct / examples for split, (examples, correct) in last.items()}


@dataclass
class SweepResult:
    """A population's results: one TrainingResult per member, and one row per learning rate (results.md's)."""

    members: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    log_dir: str = ""
    trials: list = field(default_factory=list)  # a study's (search.py): one row per member of each finished trial

    @property
    def diverged(self):
        return [member for member in self.members if member.diverged_at_step is not None]


def model_flags(flags, seed, learning_rate):
    """The flags a checkpoint records: what shapes the model and what an exact resume must repeat."""
    return {"hidden1": flags.hidden1, "hidden2": flags.hidden2, "batch_size": flags.batch_size,
            "learning_rate": learning_rate, "seed": seed, "dataset": flags.dataset, "fake_data": flags.fake_data}


def check_resumable(flags, checkpoint, log):
    """Refuse flags that cannot continue this checkpoint; note those that make the run differ."""
    saved = checkpoint.flags
    # --resume takes the run's shape and data from its flags, not from the checkpoint: say which to repeat.
    repeat = "; repeat the run's " + " ".join(
        [f"--hidden1 {saved['hidden1']}", f"--hidden2 {saved['hidden2']}"]
        + ([f"--dataset {saved['dataset']}"] if saved["dataset"] != "mnist" else [])
        + (["--fake_data"] if saved["fake_data"] else []))
    for flag in ("hidden1", "hidden2"):
        if getattr(flags, flag) != saved[flag]:
            raise FlagError(Flag(flag, getattr(flags, flag)), f" does not match the checkpoint {checkpoint.path}, "
                            f"which has {flag} = {saved[flag]}{repeat}")
    if flags.dataset != saved["dataset"] or flags.fake_data != saved["fake_data"]:
        raise FlagError(Flag("dataset", flags.dataset), *((" ", Flag("fake_data")) if flags.fake_data else ()),
                        f" does not match the checkpoint {checkpoint.path}, trained on {saved['dataset']}"
                        f"{' fake data' if saved['fake_data'] else ''}{repeat}")
    if flags.seed is not None and flags.seed != saved["seed"]:
        raise FlagError(Flag("seed", flags.seed), f" does not match the checkpoint {checkpoint.path} "
                        f"(seed {saved['seed']})")
    for flag in ("learning_rate", "batch_size"):
        if getattr(flags, flag) != saved[flag]:
            log.note(f"resuming with --{flag} {getattr(flags, flag)} (the checkpoint used {saved[flag]}); "
                     "the run will differ from an uninterrupted one")


def check_population_resumable(flags, found, path):
    """Refuse a sweep --resume whose flags do not describe the population in `found` (its population file)."""
    for flag in populations.SHARED_FLAGS:
        if getattr(flags, flag) != found["flags"][flag]:
            raise FlagError(Flag(flag, getattr(flags, flag)), f" does not match the population {path}, which has "
                            f"{flag} = {found['flags'][flag]}")
    for flag, key in (("seed", "seed"), ("learning_rate", "learning_rate")):
        given = getattr(flags, flag)
        saved = tuple(dict.fromkeys(member[key] for member in found["members"]))
        if given is not None and sorted(given) != sorted(saved):
            raise FlagError(Flag(flag, ",".join(map(str, given))), f" does not match the population {path}, whose "
                            f"members have {flag} {','.join(map(str, saved))}")


def note_other_backend(checkpoint, backend_name, log):
    """A resume on another backend than the checkpoint's goes on, saying that the run will differ in its last bits."""
    record = checkpoint.provenance if isinstance(checkpoint.provenance, dict) else {}
    earlier = record.get("backend", {}).get("name") if isinstance(record.get("backend"), dict) else None
    if isinstance(earlier, str) and earlier != backend_name:
        earlier = printable_value(earlier)
        log.note(f"resuming on the {backend_name} backend; {os.path.basename(checkpoint.path)} was trained on the "
                 f"{earlier} backend: the run goes on, but its numbers will not repeat an uninterrupted {earlier} run "
                 "bit for bit")


def describe_run(flags, backend_name, why, members, data_sets, resumed):
    """The run's first line: backend (and for auto why), seeds, data, log_dir; enough to repeat it."""
    if resumed is None:
        start = "training"
    else:
        step, saved = resumed
        start = f"resuming from step {step} ({os.path.basename(saved[0].path) if len(saved) == 1 else 'every member'})"
    if len(members) == 1:
        seeds = f"seed {members[0].seed}"
    else:
        rates = ",".join(repr(rate) for rate in dict.fromkeys(member.learning_rate for member in members))
        seeds = ",".join(str(seed) for seed in dict.fromkeys(member.seed for member in members))
        seeds = f"{len(members)} members (seeds {seeds} x learning rates {rates})"
    return (f"{start} on the {backend_name} backend ({why}), {seeds}, data: {data_sets.source}, "
            f"log_dir {flags.log_dir}")


def random_seed():
    """A seed for a run given none: at most SEED_DIGITS digits, from the OS's entropy."""
    import secrets  # only a run without --seed needs it (half a millisecond of start-up)

    return secrets.randbelow(10 ** SEED_DIGITS)


def run_training(flags, log=None):
    """The tutorial's run: train up to flags.max_steps, logging, checkpointing and evaluating. A TrainingResult.

    A population of one, in flags.log_dir (a new run folder without it). `flags` is the Namespace
    the command line parses (flags.parse_flags builds one from keywords).
    """
    log, started = log or Log(), time.time()
    with StopSignals() as signals, runs.claim(flags.log_dir, flags.resume, flags.overwrite, log.note) as run:
        flags = copy.copy(flags)
        flags.log_dir = run.log_dir  # the folder chosen when none was given
        resume_from = run.resume_from
        if resume_from is not None:
            check_resumable(flags, resume_from, log)
            if resume_from.global_step >= flags.max_steps:
                log.note(f"nothing to do: the run in {flags.log_dir} has taken its {resume_from.global_step} steps "
                         f"({checkpoints.step_words(resume_from.global_step)} is saved), --max_steps is "
                         f"{flags.max_steps}")
                return TrainingResult(log_dir=flags.log_dir)
            seed = resume_from.flags["seed"]
        else:
            seed = flags.seed if flags.seed is not None else random_seed()
        member = Member("", seed, flags.learning_rate, flags.log_dir)
        resumed = None if resume_from is None else (resume_from.global_step, [resume_from])
        loop = train(flags, [member], run, resumed, signals, log, started, population=False)
        if loop is None:
            return TrainingResult()  # --max_steps 0: nothing was written
        result = loop.results()[0]
        result.model = loop.model
        if member.stopped is not None:
            raise TrainingDiverged(f"{member.stopped['why']}; try a smaller --learning_rate (now "
                                   f"{flags.learning_rate})")
        return result


def run_sweep(flags, log=None):
    """`mnist-gpu sweep`: the grid of --seed and --learning_rate trained as one population. A SweepResult."""
    log, started = log or Log(), time.time()
    flags = grid_flags(flags)
    with StopSignals() as signals, runs.claim(flags.log_dir, flags.resume, flags.overwrite, log.note,
                                              population=True) as run:
        flags.log_dir = run.log_dir
        found = run.resume_from
        if found is not None:
            path = os.path.join(flags.log_dir, populations.POPULATION_FILE)
            check_population_resumable(flags, found, path)
            members = [Member(saved["name"], saved["seed"], saved["learning_rate"],
                              os.path.join(flags.log_dir, saved["name"])) for saved in found["members"]]
            resumed = (found["global_step"], [read_member_checkpoint(member, found) for member in members])
            finished = found["global_step"] >= flags.max_steps
            if finished or all(checkpoint.stopped is not None for checkpoint in resumed[1]):  # it trains no more
                take_back_stops(members, resumed[1])
                ended = SweepResult(members=[member_result(member) for member in members], log_dir=flags.log_dir)
                why = (f"the population in {flags.log_dir} has taken its {found['global_step']} steps "
                       f"({checkpoints.step_words(found['global_step'])} is saved), --max_steps is {flags.max_steps}"
                       if finished else f"every member of the population in {flags.log_dir} had stopped training by "
                       f"global_step {found['global_step']} (each one's checkpoint says why)")
                diverged = f"; {len(ended.diverged)} of its {len(members)} members had diverged" \
                    if ended.diverged else ""
                log.note(f"nothing to do: {why}{diverged}")
                return ended  # its members' results without losses or evaluations: results.md has them
        else:
            seeds = flags.seed if flags.seed is not None else (random_seed(),)
            learning_rates = flags.learning_rate if flags.learning_rate is not None else (0.01,)
            members = populations.grid(seeds, learning_rates, flags.log_dir)
            resumed = None
        loop = train(flags, members, run, resumed, signals, log, started, population=True)
        if loop is None:
            return SweepResult()
        for line in populations.results_markdown(populations.member_rows(members),
                                                 populations.group_rows(members, loop.ensembles)).splitlines():
            log.line(line)
        return SweepResult(members=loop.results(), groups=populations.group_rows(members, loop.ensembles),
                           log_dir=flags.log_dir)


def grid_flags(flags):
    """A copy of a sweep's flags for one population (the grid of --seed and --learning_rate): one hidden and batch
    size each. Several, or a range, are a study's (search.py), refused here in one line."""
    flags = copy.copy(flags)
    for name in ("hidden1", "hidden2", "batch_size", "learning_rate"):
        value = getattr(flags, name)
        several = isinstance(value, tuple) and len(value) > 1 and name != "learning_rate"
        if several or not isinstance(value, (tuple, int, float, type(None))):
            raise FlagError(f"--{name} {value}: several hidden or batch sizes, or a range, make the sweep an Optuna "
                            "study (mnist-gpu sweep or mnist_gpu.sweep runs one)")
        if name != "learning_rate" and isinstance(value, tuple):
            setattr(flags, name, value[0])
    return flags


def read_member_checkpoint(member, found):
    """A member's checkpoint of the population's committed global_step (found: its population file), which an exact
    resume starts from (saved after step global_step - 1, whose number names the file). Read as the population's:
    the file itself, never a link, and refused unless it is this member's and has the population's shared flags.
    The member's state file is checked here too, before anything is written (its saves read it)."""
    global_step = found["global_step"]
    path = os.path.join(member.log_dir, checkpoints.checkpoint_name(global_step - 1))
    try:
        checkpoints.read_state(member.log_dir)
        checkpoint = checkpoints.read(path, follow_links=False)
    except CheckpointError as error:
        raise CheckpointError(f"the population's members all saved global_step {global_step}, but {error}") from None
    if checkpoint.global_step != global_step or checkpoint.flags["seed"] != member.seed or \
            checkpoint.flags["learning_rate"] != member.learning_rate:
        raise CheckpointError(f"{path}: not {member.name}'s checkpoint of global_step {global_step}")
    for flag in populations.SHARED_FLAGS:
        if checkpoint.flags[flag] != found["flags"][flag]:
            raise CheckpointError(f"{path}: {flag} is {checkpoint.flags[flag]!r}, the population's is "
                                  f"{found['flags'][flag]!r}; not this population's checkpoint")
    return checkpoint


def take_back_stops(members, saved):
    """Each member stopped as its checkpoint (one of `saved`) says, with the loss it stopped at as its final loss;
    a member the caller has stopped already stays stopped."""
    for member, checkpoint in zip(members, saved, strict=True):
        member.stopped = checkpoint.stopped or member.stopped
        if checkpoint.stopped is not None and checkpoint.stopped.get("loss") is not None:
            member.last_loss = float(checkpoint.stopped["loss"])  # as it stopped: its final loss in the results


def member_orders(data_set, members, positions=None):
    """Each member's DataSet over the training split's rows: its own order, as its solo run would draw it, from its
    saved position (positions: one (order, fields) per member) or from the start."""
    orders = []
    for index, member in enumerate(members):
        order = DataSet(data_set.pixels, data_set.labels, seed=train_order_seed(member.seed))
        if positions is not None:
            order.restore_position(*positions[index])
        orders.append(order)
    return orders


def train(flags, members, run, resumed, signals, log, started, population, on_evaluation=None):
    """Train the members to flags.max_steps from scratch or from `resumed` (step, [checkpoint per member]).

    `population`: a sweep's members, each in a folder of its own inside flags.log_dir, which holds the
    population file and the results; else the tutorial's run, a population of one in flags.log_dir.
    A member the caller has stopped already (member.stopped set) stays stopped, whatever its checkpoint says.
    `on_evaluation(step, members)`, called after each evaluation of a population (the members' `evaluations` hold
    it), returns {member name: why} of the members to stop there (search.py's pruner): they stop updating as a
    diverged member does, reported by the caller.

    Returns the finished TrainingLoop (its results(), model, ensembles), or None when --max_steps 0 leaves nothing
    to do.
    """
    backend_name, why = resolve_backend_name(flags.backend)
    if flags.cuda_graph == "on" and backend_name != "cuda":
        raise FlagError(Flag("cuda_graph", "on"), f" needs the cuda backend; this run would use {backend_name} "
                        f"({why})")
    for checkpoint in (resumed[1][:1] if resumed is not None else ()):
        note_other_backend(checkpoint, backend_name, log)
    backend = get_backend(backend_name, log.note)
    check_memory(backend, flags, len(members))
    share_one_malloc_arena()
    allow_open_files(len(members))
    data_sets = read_data_sets(flags.input_data_dir, flags.fake_data, dataset=flags.dataset,
                               source_url=flags.source_url)
    check_batch_size(flags.batch_size, data_sets)
    log.note(describe_run(flags, backend_name, why, members, data_sets, resumed))
    if flags.max_steps == 0:
        log.note("nothing to do: --max_steps 0 (no step, no checkpoint, no event file; the log_dir is left as "
                 "it was)")
        return None
    if resumed is not None:
        global_step, saved = resumed
        variables = mnist.stacked([checkpoint.variables for checkpoint in saved])
        take_back_stops(members, saved)
    else:
        global_step = 0
        variables = mnist.stacked([mnist.initial_variables(flags.hidden1, flags.hidden2, init_seed(member.seed))
                                   for member in members])
    active = [member.stopped is None for member in members]
    model = mnist.Model(backend, variables, flags.batch_size, [member.learning_rate for member in members],
                        global_step, active)
    splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}
    orders = member_orders(data_sets.train, members, None if resumed is None else
                           [(checkpoint.data_order, checkpoint.data_position) for checkpoint in resumed[1]])

    # Every check has passed: from here on, the log_dir is written.
    run.start_writing(flags.overwrite)
    for member in members:
        if population:
            runs.make_member_folder(member.log_dir)
    savers = [checkpoints.Saver(member.log_dir, flags.max_to_keep, note=log.note) for member in members]
    if population and resumed is not None:
        # A checkpoint the population file named that its member no longer lists (killed between the members' saves
        # and the population's commit) is pruned once this run commits.
        for saver, checkpoint in zip(savers, resumed[1], strict=True):
            saver.prune_later(checkpoint)
    summaries = [Summaries(member.log_dir, purge_step=global_step if resumed is not None else None)
                 for member in members]
    loop = TrainingLoop(flags, model, splits, orders, members, savers, summaries, signals, log, started, population,
                        resumed=None if resumed is None else resumed[1], on_evaluation=on_evaluation)
    try:
        signals.deferring = True
        with np.errstate(over="ignore", invalid="ignore"), blas_library.threads_for(BLAS_THREADS):
            loop.run()
    except BaseException:
        for each in summaries:
            with contextlib.suppress(WriteError):  # the error that stopped training is the one to report
                each.close()
        raise
    for each in summaries:
        each.close()
    return loop


def divergence(step, loss, earlier=None):
    """Why a member's loss at `step` (and 100 steps before, `earlier`) means it diverged, or None: the loss is NaN or
    infinite, or above DIVERGED_LOSS at both reads."""
    if not math.isfinite(loss):
        return f"loss is {loss} at step {step}"
    if earlier is not None and min(loss, earlier) > mnist.DIVERGED_LOSS:
        return (f"loss is {loss:.4g} at step {step} and was {earlier:.4g} 100 steps before, far above ln 10 = 2.30 "
                "where training starts: it diverged")
    return None


def init_seed(seed):
    """The seed of a run's initial variables: the second child of its seed (the first orders its data)."""
    return np.random.SeedSequence(seed).spawn(2)[1]


class TrainingLoop:
    """The loop of fully_connected_feed.py for K members: steps, loss lines, checkpoints, evaluations, signals."""

    def __init__(self, flags, model, splits, orders, members, savers, summaries, signals, log, started, population,
                 resumed=None, on_evaluation=None):
        self.flags, self.model, self.splits, self.members = flags, model, splits, members
        self.on_evaluation = on_evaluation
        self.savers, self.summaries, self.signals = savers, summaries, signals
        self.log, self.started = log, started
        self.start_program(orders)
        self.population = population
        self.resumed = resumed  # each member's checkpoint this run continues (None: a run from scratch)
        self.first_step = model.global_step
        self.losses_read = model.global_step  # the next step whose loss the trainer has not read
        self.earlier = [None] * len(members)  # each member's loss at the previous read (every 100 steps) ...
        self.earlier_step = None  # ... and its step: both kept in its checkpoints, and taken back from them
        for index, checkpoint in enumerate(resumed or ()):
            if checkpoint.last_read is not None:
                self.earlier[index], self.earlier_step = checkpoint.last_read["loss"], checkpoint.last_read["step"]
        self.packed = list(range(len(members)))  # the members in the step program, by index: its columns
        self.out = {}  # member index -> OutOfProgram: a stopped member taken out of the step program (repack)
        self.last_logits = None  # the step program's members' test logits [K', N, C] at the last evaluation
        self.records = None  # what made each member (provenance.py), gathered at the first checkpoint
        self.ensembles = {}  # group key -> the test precision of its members' ensemble, at the last evaluation

    # -- losses and divergence -----------------------------------------------------------------------------
    def read_losses(self, step):
        """Read the losses of every step up to `step`; stop members whose loss was not finite (the device already
        stopped updating them at that step) or blew up. Returns the members' losses at `step`."""
        if self.losses_read > step:
            return None, False
        losses = self.steps.losses(self.losses_read, step + 1)
        self.losses_read = step + 1
        newly = False
        for column, index in enumerate(self.packed):
            member = self.members[index]
            if member.stopped is not None:
                continue
            member.last_loss = float(losses[-1, column])
            for offset, loss in enumerate(losses[:, column]):
                why = divergence(step + 1 - len(losses) + offset, float(loss))
                if why:
                    member.stopped = {"step": step + 1 - len(losses) + offset, "why": why}
                    newly = True
                    break
        current = np.full(len(self.members), np.nan, np.float32)  # a member out of the program has no loss
        current[self.packed] = losses[-1]
        return current, newly

    def check_blow_up(self, step, current):
        """Stop members whose loss is above DIVERGED_LOSS at this and the previous read (100 steps apart)."""
        newly = False
        for index, member in enumerate(self.members):
            earlier, loss = self.earlier[index], float(current[index])
            why = divergence(step, loss, earlier)
            if member.stopped is None and why:
                member.stopped = {"step": step, "why": why}
                newly = True
            self.earlier[index] = loss
        self.earlier_step = step
        return newly

    def note_stopped(self, newly):
        """Tell the step program which members train on, and say which stopped; True when none trains any more."""
        if not newly:
            return False
        self.set_active()
        for member in self.members:
            if member.stopped is not None and not member.stopped.get("noted"):
                member.stopped["noted"] = True
                if self.population:
                    self.log.note(f"{member.name} diverged ({member.stopped['why']}): it stops training there, "
                                  "the others train on")
        return all(member.stopped is not None for member in self.members)

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self):
        flags = self.flags
        if self.population and self.resumed is not None:
            self.take_out_resumed()
        for step in range(self.model.global_step, flags.max_steps):
            start_time = time.time()  # before the batch is drawn, as in the tutorial
            self.steps.run(step)
            evaluate = (step + 1) % flags.eval_every == 0 or step + 1 == flags.max_steps
            if step % 100 == 0 or evaluate:
                current, newly = self.read_losses(step)  # reading the losses waits for the step to finish
                if step % 100 == 0:
                    duration = time.time() - start_time
                    newly |= self.print_losses(step, current, duration)
                if self.note_stopped(newly):
                    if not self.population:
                        return  # the run of one diverged: nothing is saved (run_training reports it)
                    self.log.note(f"every member has stopped training (step {step}): the population ends here")
                    self.save(step)
                    self.evaluate(step)
                    return
            saved = None
            if evaluate:
                saved = self.save(step)
                if self.evaluate(step):  # on_evaluation stopped members: their checkpoints of this step say so
                    saved = self.save(step)
                    if all(member.stopped is not None for member in self.members):
                        self.log.note(f"every member has stopped training (step {step}): the population ends here")
                        return
                if self.population and step + 1 < flags.max_steps:
                    self.repack(step)
            if self.signals.received is not None:  # the step is done: save it (unless just saved) and stop
                self.read_losses(step)
                saved = saved or self.save(step)
                raise TrainingInterrupted(self.signals.received, step, saved, None,
                                          self.interrupted_message(step, saved))

    def print_losses(self, step, current, duration):
        """The tutorial's step line for each member still training (and its loss event); whether one blew up."""
        for index, member in enumerate(self.members):
            if member.stopped is not None and member.stopped["step"] < step:
                continue
            loss = float(current[index])
            self.log.line("%sStep %d: loss = %.2f (%.3f sec)" % (member.prefix, step, loss, duration))
            if step == 0:  # after the first line, not before it: writing it imports tensorboardX
                self.summaries[index].add_graph()
            self.summaries[index].add_loss(step, loss)
            member.losses[step] = loss
        return self.check_blow_up(step, current)

    def interrupted_message(self, step, saved):
        """The message's parts: where it stopped, what it saved, and the exact command that continues it."""
        return (f"interrupted at step {step}; saved {os.path.basename(saved)}; to continue: ",
                continuation(self.flags, "sweep" if self.population else "train"))

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save(self, step):
        """Every member's checkpoint of `step`, then (a population) the population file: the commit point."""
        from .provenance import gather, hparams

        model, flags = self.model, self.flags
        variables = model.host_variables()
        positions = self.steps.position(step)
        first = self.records is None
        if first:  # gathered at the first checkpoint: nothing of it delays the first step line
            self.records = [gather(member_flags(flags, member, self.population), model.backend, member.seed,
                                   self.started, self.resumed[index] if self.resumed else None)
                            for index, member in enumerate(self.members)]
        columns, saving = {index: column for column, index in enumerate(self.packed)}, []
        for index, member in enumerate(self.members):
            if index in columns:
                own = {name: value[columns[index]] for name, value in variables.items()}
                order, position = positions[columns[index]]
            else:  # out of the step program: as it left it
                own, (order, position) = self.out[index].variables, self.out[index].position
            if member.stopped is None and not all(np.isfinite(value).all() for value in own.values()):
                raise TrainingDiverged(f"{member.prefix}the variables are not finite at step {step} while the loss "
                                       "was; nothing was saved")  # never a NaN model of a member still training
            stopped = None if member.stopped is None else {
                "step": member.stopped["step"], "why": member.stopped["why"],
                "loss": member.last_loss if math.isfinite(member.last_loss) else None}
            earlier = self.earlier[index]
            last_read = {"step": self.earlier_step, "loss": earlier} if earlier is not None and \
                math.isfinite(earlier) and self.earlier_step is not None else None
            saving.append(checkpoints.Checkpoint(own, model.global_step, model_flags(flags, member.seed,
                                                                                     member.learning_rate),
                                                 order, position, provenance=self.records[index], stopped=stopped,
                                                 last_read=last_read))

        def save_member(index):
            # The events go to disk before the checkpoint commits: a resume purges the events after the checkpoint
            # it starts from, and must find every one before it (a SIGKILL right after the commit loses nothing).
            if first:
                self.summaries[index].add_run(self.first_step, self.records[index], hparams(self.records[index]))
            if not self.population:
                self.summaries[index].add_histograms(step, saving[index].variables)
            self.summaries[index].flush()
            # A member's old checkpoints stay until the population commits: the population file names one of them.
            return self.savers[index].save(step, saving[index], prune=not self.population)

        paths = each_member(save_member, len(self.members))
        if self.population:
            populations.commit(flags.log_dir, flags, self.members, model.global_step)
            for saver in self.savers:
                saver.prune_unlisted()
            return os.path.join(flags.log_dir, populations.POPULATION_FILE)
        return paths[0]

    def stop_members(self, step, stops):
        """Stop the members named in `stops` ({name: why}) after step `step` (the caller reports them); True when one
        was still training."""
        stopped = False
        for member in self.members:
            if member.name in stops and member.stopped is None:
                member.stopped = {"step": step, "why": stops[member.name], "noted": True}
                stopped = True
        self.set_active()
        return stopped

    def set_active(self):
        """Tell the step program which of its members train on."""
        self.model.set_active([self.members[index].stopped is None for index in self.packed])

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, step):
        """Evaluate every member (a population: write the results, then ask on_evaluation whom to stop); True when
        on_evaluation stopped a member."""
        model, log = self.model, self.log
        found = evaluate_all(model, self.splits, log, self.test_logits,
                             [self.members[index].prefix for index in self.packed])
        for column, index in enumerate(self.packed):
            member = self.members[index]
            member.evaluations[step] = {split: (examples, int(correct[column]))
                                        for split, (examples, correct) in found.items()}
            for split, (examples, correct) in member.evaluations[step].items():
                self.summaries[index].add_precision(step, split, correct / examples)
        for index in self.out:  # its variables have not changed since: its last evaluation stands (not printed again)
            evaluations = self.members[index].evaluations
            evaluations[step] = evaluations[max(evaluations)]
        self.last_logits = host_logits = self.test_logits.host_logits()
        if not self.population:  # the pictures of a run of one; a member's are `eval --report` away
            _, drawn, table = self.test_logits.draw(host_logits[0], f"at step {step}")
            self.summaries[0].add_pictures(step, drawn, table)
            return False
        every = np.empty((len(self.members),) + host_logits.shape[1:], host_logits.dtype)
        every[self.packed] = host_logits
        for index, out in self.out.items():
            every[index] = out.test_logits
        self.ensembles = populations.ensemble_precisions(self.members, every, self.splits["test"].data_set.labels)
        written = populations.write_results(self.flags.log_dir, self.members, self.ensembles)
        log.note(f"wrote {' and '.join(written)} in {self.flags.log_dir} (step {step})")
        stops = self.on_evaluation(step, self.members) if self.on_evaluation is not None else None
        return bool(stops) and self.stop_members(step, stops)

    # -- repacking ----------------------------------------------------------------------------------------
    def repack(self, step):
        """After evaluation `step` (saved): take the members that stopped out of the step program, so that every
        later step costs what the members still training cost. The others go on exactly as from a resume of this
        step's checkpoints; those taken out keep their variables, data position and last test logits here."""
        leaving = [column for column, index in enumerate(self.packed) if self.members[index].stopped is not None]
        if not leaving or len(leaving) == len(self.packed):
            return
        variables, positions = self.model.host_variables(), self.steps.position(step)
        for column in leaving:
            self.out[self.packed[column]] = OutOfProgram({name: value[column] for name, value in variables.items()},
                                                         positions[column], self.last_logits[column])
        staying = [column for column in range(len(self.packed)) if column not in leaving]
        self.packed = [self.packed[column] for column in staying]
        self.build({name: value[staying] for name, value in variables.items()},
                   [positions[column] for column in staying])
        self.log.note(f"{len(leaving)} stopped member{'s' if len(leaving) > 1 else ''} left the step program at step "
                      f"{step}: it trains the {len(staying)} still training")

    def take_out_resumed(self):
        """A resumed population starts as an uninterrupted one went on: without the members stopped before (their
        evaluation, which the results and the ensemble need, is taken once, printing nothing)."""
        leaving = [index for index, member in enumerate(self.members) if member.stopped is not None]
        if not leaving or len(leaving) == len(self.members):
            return
        saved = self.resumed
        logits = evaluate_quietly(self.model.backend, self.splits,
                                  mnist.stacked([saved[index].variables for index in leaving]),
                                  [self.members[index] for index in leaving], self.flags.batch_size,
                                  self.model.global_step - 1, keep_test_logits=True)
        for column, index in enumerate(leaving):
            self.out[index] = OutOfProgram(saved[index].variables, (saved[index].data_order,
                                                                    saved[index].data_position), logits[column])
        self.packed = [index for index in self.packed if index not in self.out]
        self.build(mnist.stacked([saved[index].variables for index in self.packed]),
                   [(saved[index].data_order, saved[index].data_position) for index in self.packed])

    def build(self, variables, positions):
        """The model and step program of the members self.packed from their host variables [K', ...] and data
        positions, at the model's global_step."""
        backend, flags = self.model.backend, self.flags
        members = [self.members[index] for index in self.packed]
        self.model = mnist.Model(backend, variables, flags.batch_size, [member.learning_rate for member in members],
                                 self.model.global_step)
        self.start_program(member_orders(self.splits["train"].data_set, members, positions))

    def start_program(self, orders):
        """The step program of self.model's members, each drawing from its DataSet in `orders`, and the buffers that
        keep their test logits at each evaluation."""
        self.steps = self.model.backend.step_program(self.model, self.splits["train"], orders, self.flags.max_steps,
                                                     self.flags.cuda_graph, note=self.log.note)
        self.test_logits = EvaluationPictures(self.model, self.splits["test"])

    def results(self):
        return [member_result(member) for member in self.members]


def each_member(save_member, members):
    """[save_member(index) for each member], members' saves on up to SAVE_THREADS threads at once, this one among them
    (each member's files in their order): their fsyncs overlap. Where no more threads can start (an address-space or
    thread-count limit), fewer do the same work. Once every save has ended, the first failure, in member order, is
    raised."""
    results, failures = [None] * members, [None] * members
    indices = iter(range(members))  # next() on it is atomic: each index is taken by one thread

    def save_in_turn():
        for index in indices:
            try:
                results[index] = save_member(index)
            except BaseException as failure:  # noqa: BLE001 - raised below, once every member's save has ended
                failures[index] = failure

    helpers = []
    for _ in range(min(SAVE_THREADS, members) - 1):
        helper = threading.Thread(target=save_in_turn, name="save")
        try:
            helper.start()
        except RuntimeError:  # "can't start new thread"
            break
        helpers.append(helper)
    save_in_turn()
    for helper in helpers:
        helper.join()
    for failure in failures:
        if failure is not None:
            raise failure
    return results


@dataclass
class OutOfProgram:
    """A stopped member taken out of the step program: what its later checkpoints and the ensemble need."""

    variables: dict  # {TF name: host array}, as it stopped
    position: tuple  # its data order and position (order, fields) where it left
    test_logits: np.ndarray  # its last evaluation's test logits [N, C]


def member_result(member):
    """A member's TrainingResult: what it printed, as numbers, and where and why it stopped."""
    pruned = populations.was_pruned(member.stopped)
    return TrainingResult(losses=member.losses, evaluations=member.evaluations, log_dir=member.log_dir,
                          seed=member.seed, learning_rate=member.learning_rate, trial=member.trial,
                          diverged_at_step=None if member.stopped is None or pruned else member.stopped["step"],
                          pruned_at_step=member.stopped["step"] if pruned else None)


def member_flags(flags, member, population):
    """The flags a member's provenance records: the command's, with the member's own seed (and in a population its
    learning rate and folder, and the population's folder)."""
    changed = copy.copy(flags)
    changed.seed = member.seed
    if population:
        changed.learning_rate, changed.log_dir = member.learning_rate, member.log_dir
        changed.population_dir = flags.log_dir
        if member.trial is not None:
            changed.trial = member.trial
    return changed
