"""The tutorial's driver (fully_connected_feed.py): the train / evaluate loop and its log lines."""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import model as mnist
from .backends import get_backend
from .input_data import read_data_sets


class FlagError(ValueError):
    """A flag's value cannot work with the data; the message names the flag."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainingResult:
    """What a run printed, as numbers: losses by step and (examples, correct) by split at each eval."""

    losses: dict = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)  # step -> {"train"|"validation"|"test": (examples, correct)}
    model: mnist.Model = None


class DeviceSplit:
    """One data split's images [N, D] and labels [N], copied to the backend once."""

    def __init__(self, backend, data_set):
        self.data_set = data_set
        self.images = backend.asarray(data_set.images)
        self.labels = backend.asarray(data_set.labels, dtype=np.int32)


def do_eval(model, split):
    """Precision @ 1 over the whole batches of a split, taken in order (training's order untouched)."""
    batch_size = model.batch_size
    steps_per_epoch = split.data_set.num_examples // batch_size
    true_count = 0
    for step in range(steps_per_epoch):
        rows = slice(step * batch_size, (step + 1) * batch_size)
        logits = mnist.inference(model, split.images[rows])
        true_count += mnist.evaluation(model, logits, split.labels[rows])
    num_examples = steps_per_epoch * batch_size
    true_count = int(true_count)  # the one read of the count per evaluation
    precision = true_count / num_examples
    print("  Num examples: %d  Num correct: %d  Precision @ 1: %0.04f" % (num_examples, true_count, precision),
          flush=True)
    return num_examples, true_count


def check_batch_size(flags, data_sets):
    for name in ("train", "validation", "test"):
        examples = getattr(data_sets, name).num_examples
        if flags.batch_size > examples:
            raise FlagError(f"--batch_size {flags.batch_size} is larger than the {name} set ({examples} examples)")


def run_training(flags):
    """Train for flags.max_steps steps, logging and evaluating like the tutorial; returns a TrainingResult."""
    seed = flags.seed if flags.seed is not None else np.random.SeedSequence().entropy
    data_seed, init_seed = np.random.SeedSequence(seed).spawn(2)
    data_sets = read_data_sets(flags.input_data_dir, flags.fake_data, seed=data_seed,
                               dataset=flags.dataset, source_url=flags.source_url)
    check_batch_size(flags, data_sets)
    backend = get_backend(flags.backend)
    model = mnist.Model(backend, mnist.initial_variables(flags.hidden1, flags.hidden2, init_seed), flags.batch_size)
    splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name in ("train", "validation", "test")}
    images = backend.empty((flags.batch_size, mnist.IMAGE_PIXELS))
    labels = backend.empty((flags.batch_size,), dtype=np.int32)
    result = TrainingResult(model=model)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging loss is reported below, once
        train_loop(flags, backend, model, splits, images, labels, result)
    return result


def train_loop(flags, backend, model, splits, images, labels, result):
    train = splits["train"]
    for step in range(flags.max_steps):
        start_time = time.time()
        indices = train.data_set.next_batch_indices(flags.batch_size)
        backend.gather_rows(train.images, indices, out=images)
        backend.gather_rows(train.labels, indices, out=labels)
        logits = mnist.inference(model, images)
        loss_value = mnist.loss(model, logits, labels)
        mnist.training(model, images, flags.learning_rate)
        is_last = step + 1 == flags.max_steps
        evaluate = (step + 1) % 1000 == 0 or is_last
        if step % 100 == 0 or evaluate:
            loss_value = float(loss_value)  # reading the loss waits for the step to finish
            duration = time.time() - start_time
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss is {loss_value} at step {step}; try a smaller --learning_rate "
                                       f"(now {flags.learning_rate})")
        if step % 100 == 0:
            print("Step %d: loss = %.2f (%.3f sec)" % (step, loss_value, duration), flush=True)
            result.losses[step] = loss_value
        if evaluate:
            result.evaluations[step] = {}
            for name, title in (("train", "Training"), ("validation", "Validation"), ("test", "Test")):
                print(f"{title} Data Eval:", flush=True)
                result.evaluations[step][name] = do_eval(model, splits[name])
