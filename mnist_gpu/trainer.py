"""The tutorial's driver (fully_connected_feed.py): train, log, checkpoint, evaluate, and resume.

A run's files in log_dir are its checkpoints (see checkpoint.py) and TensorBoard event files
(see summaries.py); which log_dir, its lock, and what may be done to it are runs.py's. An existing
run is never deleted silently: --resume continues it exactly, --overwrite replaces it. Every check
happens before the first write, so a refused command changes nothing. SIGINT and SIGTERM during
training finish the step, save it, and stop.

stdout carries exactly the tutorial's lines; what mnist_gpu adds (the run's description, notes)
goes to stderr. Both go through a Log, which a silent run (verbose=False) replaces.
"""
import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as checkpoints
from . import model as mnist
from . import runs
from .backends import resolve_backend_name
from .errors import Flag, FlagError, TrainingDiverged, TrainingInterrupted, WriteError
from .evaluation import SPLITS, EvaluationPictures, check_batch_size, evaluate_all
from .hints import continuation
from .input_data import read_data_sets
from .log import Log
from .memory import check_memory
from .numba_cache import get_backend
from .steps import DeviceSplit
from .stop_signals import StopSignals
from .summaries import Summaries

SEED_DIGITS = 10  # a seed chosen at random has at most this many digits: a person can retype it


@dataclass
class TrainingResult:
    """What a run printed, as numbers, and the trained model."""

    losses: dict = field(default_factory=dict)  # step -> loss
    evaluations: dict = field(default_factory=dict)  # step -> {"train"|"validation"|"test": (examples, correct)}
    model: mnist.Model = None
    log_dir: str = ""  # where the run's checkpoints and events are (a new folder per run without --log_dir); "" if none

    @property
    def precision(self):
        """Precision @ 1 of the last evaluation, {split: float} ({} when the run evaluated nothing)."""
        if not self.evaluations:
            return {}
        last = self.evaluations[max(self.evaluations)]
        return {split: correct / examples for split, (examples, correct) in last.items()}


def model_flags(flags, seed):
    """The flags a checkpoint records: what shapes the model and what an exact resume must repeat."""
    return {"hidden1": flags.hidden1, "hidden2": flags.hidden2, "batch_size": flags.batch_size,
            "learning_rate": flags.learning_rate, "seed": seed, "dataset": flags.dataset,
            "fake_data": flags.fake_data}


def check_resumable(flags, checkpoint, log):
    """Refuse flags that cannot continue this checkpoint; note those that make the run differ."""
    saved = checkpoint.flags
    for flag in ("hidden1", "hidden2"):
        if getattr(flags, flag) != saved[flag]:
            raise FlagError(Flag(flag, getattr(flags, flag)), f" does not match the checkpoint {checkpoint.path}, "
                            f"which has {flag} = {saved[flag]}")
    if flags.dataset != saved["dataset"] or flags.fake_data != saved["fake_data"]:
        raise FlagError(Flag("dataset", flags.dataset), *((" ", Flag("fake_data")) if flags.fake_data else ()),
                        f" does not match the checkpoint {checkpoint.path}, trained on {saved['dataset']}"
                        f"{' fake data' if saved['fake_data'] else ''}")
    if flags.seed is not None and flags.seed != saved["seed"]:
        raise FlagError(Flag("seed", flags.seed), f" does not match the checkpoint {checkpoint.path} "
                        f"(seed {saved['seed']})")
    for flag in ("learning_rate", "batch_size"):
        if getattr(flags, flag) != saved[flag]:
            log.note(f"resuming with --{flag} {getattr(flags, flag)} (the checkpoint used {saved[flag]}); "
                     "the run will differ from an uninterrupted one")


def note_other_backend(checkpoint, backend_name, log):
    """A resume on another backend than the checkpoint's goes on, saying that the run will differ in its last bits."""
    record = checkpoint.provenance if isinstance(checkpoint.provenance, dict) else {}
    earlier = record.get("backend", {}).get("name") if isinstance(record.get("backend"), dict) else None
    if isinstance(earlier, str) and earlier != backend_name:
        from .provenance import _printable

        log.note(f"resuming on the {backend_name} backend; {os.path.basename(checkpoint.path)} was trained on the "
                 f"{_printable(earlier)} backend: the run goes on, but its numbers will not repeat an uninterrupted "
                 f"{_printable(earlier)} run bit for bit")


def describe_run(flags, backend_name, why, seed, data_sets, resume_from):
    """The run's first line: backend (and for auto why), seed, data, log_dir; enough to repeat it."""
    start = f"resuming from step {resume_from.global_step} ({os.path.basename(resume_from.path)})" \
        if resume_from is not None else "training"
    return (f"{start} on the {backend_name} backend ({why}), seed {seed}, data: {data_sets.source}, "
            f"log_dir {flags.log_dir}")


def random_seed():
    """A seed for a run given none: at most SEED_DIGITS digits, from the OS's entropy."""
    import secrets  # only a run without --seed needs it (half a millisecond of start-up)

    return secrets.randbelow(10 ** SEED_DIGITS)


def run_training(flags, log=None):
    """Train up to flags.max_steps, logging, checkpointing and evaluating like the tutorial. Returns a TrainingResult.

    `flags` is the Namespace the command line parses (cli.parse_flags builds one from keywords).
    """
    log, started = log or Log(), time.time()
    with StopSignals() as signals, runs.claim(flags.log_dir, flags.resume, flags.overwrite, log.note) as run:
        flags = copy.copy(flags)
        flags.log_dir = run.log_dir  # the folder chosen when none was given
        resume_from = run.resume_from
        if resume_from is not None:
            check_resumable(flags, resume_from, log)
            seed = resume_from.flags["seed"]
            if resume_from.global_step >= flags.max_steps:
                log.note(f"nothing to do: the run in {flags.log_dir} has taken its {resume_from.global_step} steps "
                         f"({checkpoints.step_words(resume_from.global_step)} is saved), --max_steps is "
                         f"{flags.max_steps}")
                return TrainingResult(log_dir=flags.log_dir)
        else:
            seed = flags.seed if flags.seed is not None else random_seed()
        backend_name, why = resolve_backend_name(flags.backend)
        if flags.cuda_graph == "on" and backend_name != "cuda":
            raise FlagError(Flag("cuda_graph", "on"), f" needs the cuda backend; this run would use {backend_name} "
                            f"({why})")
        if resume_from is not None:
            note_other_backend(resume_from, backend_name, log)
        backend = get_backend(backend_name, log.note)
        check_memory(backend, flags)
        data_seed, init_seed = np.random.SeedSequence(seed).spawn(2)
        data_sets = read_data_sets(flags.input_data_dir, flags.fake_data, seed=data_seed,
                                   dataset=flags.dataset, source_url=flags.source_url)
        check_batch_size(flags.batch_size, data_sets)
        log.note(describe_run(flags, backend_name, why, seed, data_sets, resume_from))
        if flags.max_steps == 0:
            log.note("nothing to do: --max_steps 0 (no step, no checkpoint, no event file; the log_dir is left as "
                     "it was)")
            return TrainingResult()  # log_dir "": nothing was written (a folder made for the lock is gone again)
        if resume_from is not None:
            variables, global_step = resume_from.variables, resume_from.global_step
            data_sets.train.restore_position(resume_from.data_order, resume_from.data_position)
        else:
            variables, global_step = mnist.initial_variables(flags.hidden1, flags.hidden2, init_seed), 0
        model = mnist.Model(backend, variables, flags.batch_size, global_step)
        splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}

        # Every check has passed: from here on, log_dir is written.
        run.start_writing(flags.overwrite)
        saver = checkpoints.Saver(flags.log_dir, flags.max_to_keep, note=log.note)
        result = TrainingResult(model=model, log_dir=flags.log_dir)
        summaries = Summaries(flags.log_dir, purge_step=global_step if resume_from is not None else None)
        try:
            signals.deferring = True
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging loss is reported once, below
                train_loop(flags, model, splits, saver, summaries, model_flags(flags, seed), result, signals, log,
                           started, resume_from)
        except BaseException:
            with contextlib.suppress(WriteError):  # the error that stopped training is the one to report
                summaries.close()
            raise
        summaries.close()
    return result


def check_loss(step, loss_value, earlier_loss, flags):
    """Stop a run whose loss is NaN or infinite, or above DIVERGED_LOSS at this and the previous read."""
    if not math.isfinite(loss_value):
        raise TrainingDiverged(f"loss is {loss_value} at step {step}; try a smaller --learning_rate "
                               f"(now {flags.learning_rate})")
    if earlier_loss is not None and min(loss_value, earlier_loss) > mnist.DIVERGED_LOSS:
        raise TrainingDiverged(f"loss is {loss_value:.4g} at step {step} and was {earlier_loss:.4g} 100 steps before, "
                               f"far above ln 10 = 2.30 where training starts: it diverged; try a smaller "
                               f"--learning_rate (now {flags.learning_rate})")


def train_loop(flags, model, splits, saver, summaries, saved_flags, result, signals, log, started, resumed=None):
    steps = model.backend.step_program(model, splits["train"], flags.learning_rate, flags.max_steps,
                                       flags.cuda_graph, note=log.note)
    earlier_loss = None
    first_step = model.global_step
    test_pictures = EvaluationPictures(model, splits["test"])
    record = None  # what made the run (provenance.py)

    def save(step):
        nonlocal record
        variables = model.host_variables()
        order, position = steps.position(step)
        first = record is None
        if first:  # gathered at the first checkpoint: nothing of it delays the first step line
            from .provenance import gather, hparams

            record = gather(flags, model.backend, saved_flags["seed"], started, resumed)
        path = saver.save(step, checkpoints.Checkpoint(variables, model.global_step, saved_flags, order, position,
                                                       provenance=record))
        if first:
            summaries.add_run(first_step, record, hparams(record))
        return variables, path

    for step in range(model.global_step, flags.max_steps):
        start_time = time.time()  # before the batch is drawn, as in the tutorial
        loss_value = steps.run(step)
        evaluate = (step + 1) % 1000 == 0 or step + 1 == flags.max_steps
        if step % 100 == 0:
            loss_value = float(loss_value)  # reading the loss waits for the step to finish
            duration = time.time() - start_time
            log.line("Step %d: loss = %.2f (%.3f sec)" % (step, loss_value, duration))
            check_loss(step, loss_value, earlier_loss, flags)
            earlier_loss = loss_value
            if step == 0:  # after the first line, not before it: writing it imports tensorboardX
                summaries.add_graph()
            summaries.add_loss(step, loss_value)
            result.losses[step] = loss_value
        elif evaluate and not math.isfinite(float(loss_value)):
            check_loss(step, float(loss_value), None, flags)  # never save a NaN model
        saved = None
        if evaluate:
            variables, saved = save(step)
            summaries.add_histograms(step, variables)
            result.evaluations[step] = evaluate_all(model, splits, log, test_pictures.logits)
            for name, (examples, correct) in result.evaluations[step].items():
                summaries.add_precision(step, name, correct / examples)
            _, drawn, table = test_pictures.draw(model.backend, f"at step {step}")
            summaries.add_pictures(step, drawn, table)
        if signals.received is not None:  # the step is done: save it (unless just saved) and stop
            saved = saved or save(step)[1]
            raise TrainingInterrupted(signals.received, step, saved, result,
                                      (f"interrupted at step {step}; saved {os.path.basename(saved)}; to continue: ",
                                       continuation(flags)))
