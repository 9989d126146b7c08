"""The tutorial's driver (fully_connected_feed.py): train, log, checkpoint, evaluate, and resume.

A run's files in log_dir are its checkpoints (see checkpoint.py) and TensorBoard event files
(see summaries.py). An existing run is never deleted silently: --resume continues it exactly,
--overwrite replaces it. Every check happens before the first write, so a refused command
changes nothing.
"""
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as checkpoints
from . import model as mnist
from .backends import get_backend
from .durable import temporary_target
from .input_data import read_data_sets
from .summaries import EVENT_FILE_PREFIX, Summaries

SPLITS = (("train", "Training"), ("validation", "Validation"), ("test", "Test"))


class FlagError(ValueError):
    """A flag's value cannot work with the data or the log_dir; the message names the flag."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainingResult:
    """What a run printed, as numbers: losses by step and (examples, correct) by split at each eval."""

    losses: dict = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)  # step -> {"train"|"validation"|"test": (examples, correct)}
    model: mnist.Model = None


class DeviceSplit:
    """One data split on the backend: uint8 pixels [N, D] (a quarter of float32's bytes) and int32 labels [N]."""

    def __init__(self, backend, data_set):
        self.data_set = data_set
        self.labels = backend.asarray(data_set.labels, dtype=np.int32)
        self.pixels = backend.asarray(data_set.pixels, dtype=np.uint8)

    def gather(self, backend, indices, images, labels):
        """The rows `indices` (host integers) into preallocated float32 `images` [B, D] and `labels` [B]."""
        backend.gather_images(self.pixels, indices, out=images)
        backend.gather_rows(self.labels, indices, out=labels)


def do_eval(model, split):
    """Precision @ 1 over the whole batches of a split, taken in order (training's order untouched)."""
    backend, batch_size = model.backend, model.batch_size
    steps_per_epoch = split.data_set.num_examples // batch_size
    images = backend.empty((batch_size, mnist.IMAGE_PIXELS))
    labels = backend.empty((batch_size,), dtype=np.int32)
    rows = np.arange(steps_per_epoch * batch_size)
    true_count = 0
    for step in range(steps_per_epoch):
        split.gather(backend, rows[step * batch_size:(step + 1) * batch_size], images, labels)
        logits = mnist.inference(model, images)
        true_count += int(mnist.evaluation(model, logits, labels))
    num_examples = steps_per_epoch * batch_size
    precision = true_count / num_examples
    print("  Num examples: %d  Num correct: %d  Precision @ 1: %0.04f" % (num_examples, true_count, precision),
          flush=True)
    return num_examples, true_count


def evaluate_all(model, splits):
    """The tutorial's three eval blocks; returns {split: (examples, correct)}."""
    results = {}
    for name, title in SPLITS:
        print(f"{title} Data Eval:", flush=True)
        results[name] = do_eval(model, splits[name])
    return results


def check_batch_size(batch_size, data_sets):
    for name, _ in SPLITS:
        examples = getattr(data_sets, name).num_examples
        if batch_size > examples:
            raise FlagError(f"--batch_size {batch_size} is larger than the {name} set ({examples} examples)")


def is_run_file(name):
    """A checkpoint, the state file or an event file."""
    return (name == checkpoints.STATE_FILE or name.startswith(EVENT_FILE_PREFIX)
            or checkpoints.NAME_PATTERN.fullmatch(name) is not None)


def run_files(log_dir):
    """Names of the files in log_dir that belong to a run, with temporaries of a save that was killed."""
    if not os.path.isdir(log_dir):
        return []
    return sorted(name for name in os.listdir(log_dir)
                  if is_run_file(name) or is_run_file(temporary_target(name) or ""))


def model_flags(flags, seed):
    """The flags a checkpoint records: what shapes the model and what an exact resume must repeat."""
    return {"hidden1": flags.hidden1, "hidden2": flags.hidden2, "batch_size": flags.batch_size,
            "learning_rate": flags.learning_rate, "seed": seed, "dataset": flags.dataset,
            "fake_data": flags.fake_data}


def check_resumable(flags, checkpoint):
    """Refuse flags that cannot continue this checkpoint; note those that make the run differ."""
    saved = checkpoint.flags
    for flag in ("hidden1", "hidden2"):
        if getattr(flags, flag) != saved[flag]:
            raise FlagError(f"--{flag} {getattr(flags, flag)} does not match the checkpoint {checkpoint.path}, "
                            f"which has {flag} = {saved[flag]}")
    if flags.dataset != saved["dataset"] or flags.fake_data != saved["fake_data"]:
        raise FlagError(f"--dataset {flags.dataset}{' --fake_data' if flags.fake_data else ''} does not match the "
                        f"checkpoint {checkpoint.path}, trained on {saved['dataset']}"
                        f"{' fake data' if saved['fake_data'] else ''}")
    if flags.seed is not None and flags.seed != saved["seed"]:
        raise FlagError(f"--seed {flags.seed} does not match the checkpoint {checkpoint.path} (seed {saved['seed']})")
    for flag in ("learning_rate", "batch_size"):
        if getattr(flags, flag) != saved[flag]:
            print(f"note: resuming with --{flag} {getattr(flags, flag)} (the checkpoint used {saved[flag]}); "
                  "the run will differ from an uninterrupted one", file=sys.stderr)


def prepare(flags):
    """Check log_dir and, for --resume, load the checkpoint to continue; writes nothing."""
    existing = run_files(flags.log_dir)
    if flags.resume and flags.overwrite:
        raise FlagError("--resume and --overwrite exclude each other")
    if existing and not (flags.resume or flags.overwrite):
        raise FlagError(f"--log_dir {flags.log_dir} already holds a run ({len(existing)} files: "
                        f"{', '.join(existing[:4])}{', ...' if len(existing) > 4 else ''}); pass --resume to "
                        "continue it from its latest checkpoint, or --overwrite to delete it and start fresh")
    if not flags.resume:
        return None
    if not checkpoints.read_state(flags.log_dir):
        raise FlagError(f"--resume: --log_dir {flags.log_dir} has no checkpoint to continue from")
    try:
        checkpoint, skipped = checkpoints.Saver(flags.log_dir).latest()
    except checkpoints.CheckpointError as error:
        raise FlagError(f"--resume: {error}") from None
    for reason in skipped:
        print(f"note: skipping a damaged checkpoint: {reason}", file=sys.stderr)
    check_resumable(flags, checkpoint)
    return checkpoint


def run_training(flags):
    """Train up to flags.max_steps, logging, checkpointing and evaluating like the tutorial."""
    resume_from = prepare(flags)
    if resume_from is not None:
        seed = resume_from.flags["seed"]
    else:
        seed = flags.seed if flags.seed is not None else np.random.SeedSequence().entropy
    data_seed, init_seed = np.random.SeedSequence(seed).spawn(2)
    data_sets = read_data_sets(flags.input_data_dir, flags.fake_data, seed=data_seed,
                               dataset=flags.dataset, source_url=flags.source_url)
    check_batch_size(flags.batch_size, data_sets)
    backend = get_backend(flags.backend)
    if resume_from is not None:
        variables, global_step = resume_from.variables, resume_from.global_step
        data_sets.train.restore_position(resume_from.data_order, resume_from.data_position)
    else:
        variables, global_step = mnist.initial_variables(flags.hidden1, flags.hidden2, init_seed), 0
    model = mnist.Model(backend, variables, flags.batch_size, global_step)
    splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}

    # Every check has passed: from here on, log_dir is written.
    if flags.overwrite:
        for name in run_files(flags.log_dir):
            os.remove(os.path.join(flags.log_dir, name))
    os.makedirs(flags.log_dir, exist_ok=True)
    for name in run_files(flags.log_dir):  # temporaries of a run that was killed mid-save
        if temporary_target(name):
            os.remove(os.path.join(flags.log_dir, name))
    saver = checkpoints.Saver(flags.log_dir, flags.max_to_keep)
    summaries = Summaries(flags.log_dir, purge_step=global_step if resume_from is not None else None)
    result = TrainingResult(model=model)
    try:
        if resume_from is None:
            summaries.add_graph()
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging loss is reported once, below
            train_loop(flags, model, splits, saver, summaries, model_flags(flags, seed), result)
    finally:
        summaries.close()
    return result


def train_loop(flags, model, splits, saver, summaries, saved_flags, result):
    backend, train = model.backend, splits["train"]
    images = backend.empty((flags.batch_size, mnist.IMAGE_PIXELS))
    labels = backend.empty((flags.batch_size,), dtype=np.int32)
    for step in range(model.global_step, flags.max_steps):
        start_time = time.time()
        train.gather(backend, train.data_set.next_batch_indices(flags.batch_size), images, labels)
        loss_value = mnist.train_step(model, images, labels, flags.learning_rate)
        evaluate = (step + 1) % 1000 == 0 or step + 1 == flags.max_steps
        if step % 100 == 0 or evaluate:
            loss_value = float(loss_value)  # reading the loss waits for the step to finish
            duration = time.time() - start_time
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss is {loss_value} at step {step}; try a smaller --learning_rate "
                                       f"(now {flags.learning_rate})")
        if step % 100 == 0:
            print("Step %d: loss = %.2f (%.3f sec)" % (step, loss_value, duration), flush=True)
            summaries.add_loss(step, loss_value)
            result.losses[step] = loss_value
        if evaluate:
            variables = model.host_variables()
            order, position = train.data_set.position()
            saver.save(step, checkpoints.Checkpoint(variables, model.global_step, saved_flags, order, position))
            summaries.add_histograms(step, variables)
            result.evaluations[step] = evaluate_all(model, splits)
            for name, (examples, correct) in result.evaluations[step].items():
                summaries.add_precision(step, name, correct / examples)


def run_evaluation(flags):
    """Evaluate a saved model on all three splits; returns {split: (examples, correct)}."""
    try:
        checkpoint = checkpoints.resolve(flags.checkpoint)
    except checkpoints.CheckpointError as error:
        raise FlagError(f"--checkpoint: {error}") from None
    saved = checkpoint.flags
    batch_size = flags.batch_size or saved["batch_size"]
    data_sets = read_data_sets(flags.input_data_dir, saved["fake_data"], dataset=saved["dataset"],
                               source_url=flags.source_url)
    check_batch_size(batch_size, data_sets)
    backend = get_backend(flags.backend)
    model = mnist.Model(backend, checkpoint.variables, batch_size, checkpoint.global_step)
    print(f"Evaluating {checkpoint.path} (global_step {checkpoint.global_step})", flush=True)
    return evaluate_all(model, {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS})
