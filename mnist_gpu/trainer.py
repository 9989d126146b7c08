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
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as checkpoints
from . import model as mnist
from . import runs
from .backends import get_backend, resolve_backend_name
from .durable import WriteError, ensure_writable_folder
from .flag_values import FlagError
from .input_data import read_data_sets
from .summaries import Summaries

SPLITS = (("train", "Training"), ("validation", "Validation"), ("test", "Test"))
# Every run starts near ln 10 = 2.30 (ten classes, equally likely). A loss above ten times that at
# two loss reads in a row (100 steps apart) means training has blown up: a learning run is below
# 2.3 within a few hundred steps and never comes back above 23.
DIVERGED_LOSS = 10 * math.log(mnist.NUM_CLASSES)
SEED_DIGITS = 10  # a seed chosen at random has at most this many digits: a person can retype it


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or blew up and stayed up."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; the step it finished is saved (when training had started)."""

    def __init__(self, signal_number, step=None, saved=None, result=None):
        self.signal_number, self.step, self.saved, self.result = signal_number, step, saved, result
        if step is None:
            message = "interrupted before training started; nothing was saved"
        else:
            message = f"interrupted at step {step}; saved {os.path.basename(saved)}; continue with --resume"
        super().__init__(message)

    @property
    def exit_code(self):
        return 128 + self.signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class Log:
    """Where a run's lines go: the tutorial's to stdout, mnist_gpu's own (`note`) to stderr; nowhere if silent."""

    def __init__(self, verbose=True):
        self.verbose = verbose

    def line(self, text):
        if not self.verbose:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `mnist-gpu | head`: the reader left; the run goes on and is saved as usual
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.note("stdout was closed; training goes on without printing its lines")

    def note(self, text):
        if self.verbose:
            print(f"mnist-gpu: {text}", file=sys.stderr, flush=True)


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


class HostSteps:
    """Training steps as the tutorial takes them: draw the batch on the host, gather it, train_step (numpy, cpu).

    The CUDA backend's counterpart, with the same run / position methods, is its StepProgram
    (backends/cuda_program.py): the same batches and the same step, with no host work inside it.
    """

    def __init__(self, model, split, learning_rate):
        self.model, self.split, self.learning_rate = model, split, learning_rate
        self.images = model.backend.empty((model.batch_size, mnist.IMAGE_PIXELS))
        self.labels = model.backend.empty((model.batch_size,), dtype=np.int32)

    def run(self, step):
        """Run training step `step` (the next one); returns its loss (float() reads it)."""
        model = self.model
        self.split.gather(model.backend, self.split.data_set.next_batch_indices(model.batch_size), self.images,
                          self.labels)
        return mnist.train_step(model, self.images, self.labels, self.learning_rate)

    def position(self, step):
        """The data set's position after step `step`'s batch (the step just run), for its checkpoint."""
        return self.split.data_set.position()


def training_steps(flags, model, split, log):
    """The run's way to take training steps: the backend's step program if it has one, else HostSteps."""
    if hasattr(model.backend, "step_program"):
        return model.backend.step_program(model, split, flags.learning_rate, flags.max_steps, flags.cuda_graph,
                                          note=log.note)
    return HostSteps(model, split, flags.learning_rate)


def evaluated_examples(data_set, batch_size):
    """How many examples an evaluation counts: the tutorial's steps_per_epoch = N // batch_size whole batches."""
    return data_set.num_examples // batch_size * batch_size


def do_eval(model, split, log=None, logits=None):
    """Precision @ 1 over the split's first whole batches, in order (training's order untouched).

    The tutorial's examples: steps_per_epoch = N // batch_size whole batches. Rows are
    independent in inference, so they are computed mnist.evaluation_rows at a time (a model
    sharing the variables, with its own buffers): the same examples and counts, far fewer calls.
    `logits`, a backend array [evaluated_examples, C], keeps every example's logits (for the
    pictures): each chunk's inference writes straight into its rows, so keeping them copies nothing.
    """
    backend, log = model.backend, log or Log()
    num_examples = evaluated_examples(split.data_set, model.batch_size)
    chunk = min(mnist.evaluation_rows(model.batch_size, *model.hidden_units), num_examples)
    evaluator = model.resized(chunk)
    images = backend.empty((chunk, mnist.IMAGE_PIXELS))
    labels = backend.empty((chunk,), dtype=np.int32)
    counts = []  # backend scalars, read once every chunk is queued: on a GPU the host waits once per split
    for start in range(0, num_examples, chunk):
        rows = np.arange(start, min(start + chunk, num_examples))
        if len(rows) < chunk:  # the last, shorter chunk: a model of its size
            evaluator = model.resized(len(rows))
            images, labels = images[:len(rows)], labels[:len(rows)]
        split.gather(backend, rows, images, labels)
        if logits is not None:
            evaluator.logits = logits[start:start + len(rows)]
        counts.append(mnist.evaluation(evaluator, mnist.inference(evaluator, images), labels))
    true_count = sum(int(count) for count in counts)
    precision = true_count / num_examples
    log.line("  Num examples: %d  Num correct: %d  Precision @ 1: %0.04f" % (num_examples, true_count, precision))
    return num_examples, true_count


def evaluate_all(model, splits, log=None, test_logits=None):
    """The tutorial's three eval blocks; returns {split: (examples, correct)}. test_logits: see do_eval."""
    log, results = log or Log(), {}
    for name, title in SPLITS:
        log.line(f"{title} Data Eval:")
        results[name] = do_eval(model, splits[name], log, test_logits if name == "test" else None)
    return results


class EvaluationPictures:
    """The test set's confusion matrix and misclassified digits at each evaluation (confusion.py, pictures.py).

    The test split's logits are kept in one backend buffer during its evaluation and copied to the
    host once (to_host) for the matrix: one predicted class per example, argmax (see confusion.py
    for how that differs from the tutorial's in_top_k count).
    """

    def __init__(self, model, split):
        self.split = split
        self.logits = model.backend.empty((evaluated_examples(split.data_set, model.batch_size), mnist.NUM_CLASSES))

    def draw(self, backend, when):
        """(confusion.Confusion, pictures.Pictures, the matrix as Markdown) of the evaluation that just filled
        self.logits. Imported here, at the first evaluation: none of it is needed before the first step."""
        from . import pictures
        from .confusion import Confusion, text_summary

        data_set, count = self.split.data_set, len(self.logits)
        found = Confusion.from_logits(backend.to_host(self.logits), data_set.labels[:count])
        return found, pictures.draw(found, data_set.pixels[:count], when), text_summary(found)


def check_batch_size(batch_size, data_sets):
    for name, _ in SPLITS:
        examples = getattr(data_sets, name).num_examples
        if batch_size > examples:
            raise FlagError(f"--batch_size {batch_size} is larger than the {name} set ({examples} examples)")


def check_memory(backend, flags):
    """Refuse, before allocating anything, hidden or batch sizes whose buffers cannot fit."""
    needed = mnist.memory_needed(flags.hidden1, flags.hidden2, flags.batch_size)
    available = backend.free_memory()
    if needed > available:
        raise FlagError(f"--hidden1 {flags.hidden1} --hidden2 {flags.hidden2} --batch_size {flags.batch_size} "
                        f"need about {format_bytes(needed)} for the model and its buffers; the {backend.name} backend "
                        f"has {format_bytes(available)} free")


def format_bytes(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


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
            log.note(f"resuming with --{flag} {getattr(flags, flag)} (the checkpoint used {saved[flag]}); "
                     "the run will differ from an uninterrupted one")


class StopSignals:
    """SIGINT and SIGTERM while training: let the step finish, then stop and save; elsewhere, stop at once.

    `deferring` is set around the training loop: a signal then only sets `received`, which the
    loop checks after each step. Outside it (loading data, say) a signal raises TrainingInterrupted
    at once: nothing has been trained, so nothing is lost. A second signal while the step is being
    saved changes nothing. Handlers are installed only in the main thread (Python allows no other).
    """

    def __init__(self):
        self.received = None
        self.deferring = False
        self.previous = {}

    def _handle(self, number, frame):
        if self.received is None:
            self.received = number
        if not self.deferring:
            raise TrainingInterrupted(number)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exception):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


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
                log.note(f"nothing to do: the run in {flags.log_dir} is at step {resume_from.global_step}, "
                         f"--max_steps is {flags.max_steps}")
                return TrainingResult(log_dir=flags.log_dir)
        else:
            seed = flags.seed if flags.seed is not None else random_seed()
        backend_name, why = resolve_backend_name(flags.backend)
        if flags.cuda_graph == "on" and backend_name != "cuda":
            raise FlagError(f"--cuda_graph on needs the cuda backend; this run would use {backend_name} ({why})")
        backend = get_backend(backend_name)
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
                           started)
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
    if earlier_loss is not None and min(loss_value, earlier_loss) > DIVERGED_LOSS:
        raise TrainingDiverged(f"loss is {loss_value:.4g} at step {step} and was {earlier_loss:.4g} 100 steps before, "
                               f"far above ln 10 = 2.30 where training starts: it diverged; try a smaller "
                               f"--learning_rate (now {flags.learning_rate})")


def train_loop(flags, model, splits, saver, summaries, saved_flags, result, signals, log, started):
    steps = training_steps(flags, model, splits["train"], log)
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

            record = gather(flags, model.backend, saved_flags["seed"], started)
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
            raise TrainingInterrupted(signals.received, step, saved or save(step)[1], result)


def run_evaluation(flags, log=None):
    """Evaluate a saved model on all three splits; returns {split: (examples, correct)}."""
    from .provenance import describe

    log = log or Log()
    checkpoint = runs.find_checkpoint(flags.checkpoint, log.note)
    saved = checkpoint.flags
    batch_size = flags.batch_size or saved["batch_size"]
    data_sets = read_data_sets(flags.input_data_dir, saved["fake_data"], dataset=saved["dataset"],
                               source_url=flags.source_url)
    check_batch_size(batch_size, data_sets)
    backend = get_backend(flags.backend)
    if flags.report:  # after every check that can refuse the command: a refused one leaves no folder behind
        ensure_writable_folder(flags.report, "--report")
    model = mnist.Model(backend, checkpoint.variables, batch_size, checkpoint.global_step)
    log.line(f"Evaluating {checkpoint.path} (global_step {checkpoint.global_step})")
    log.note(f"{os.path.basename(checkpoint.path)}: {describe(checkpoint.provenance)}")
    splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}
    pictures = EvaluationPictures(model, splits["test"]) if flags.report else None
    results = evaluate_all(model, splits, log, pictures.logits if pictures else None)
    if pictures:
        # Titled as the run's own pictures of this checkpoint were (saved after step global_step - 1): the same PNGs.
        found, drawn, _ = pictures.draw(backend, f"at step {checkpoint.global_step - 1}" if checkpoint.global_step else
                                        "")
        from .report import write_report

        written = write_report(flags.report, checkpoint, found, drawn, results["test"])
        log.note(f"wrote {', '.join(written)} in {flags.report}")
    return results
