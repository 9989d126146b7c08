"""Evaluation: the tutorial's Precision @ 1 on the three splits, of a model in training or of a saved checkpoint.

`evaluate_all` prints the tutorial's three blocks (`Training Data Eval:` and its `  Num examples:`
line, then validation and test); `run_evaluation` is `mnist-gpu eval`. The test split's logits
are kept for the pictures (confusion.py, pictures.py) and `eval --report`.
"""
import os

import numpy as np

from . import model as mnist
from . import runs
from .errors import FlagError
from .input_data import read_data_sets
from .log import Log
from .numba_cache import get_backend
from .steps import DeviceSplit

SPLITS = (("train", "Training"), ("validation", "Validation"), ("test", "Test"))


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
    backend = get_backend(flags.backend, log.note)
    report = None
    if flags.report is not None:  # after every check that can refuse the command: a refused one leaves no folder
        from .report import ReportFolder

        report = ReportFolder(flags.report)
    try:
        model = mnist.Model(backend, checkpoint.variables, batch_size, checkpoint.global_step)
        log.line(f"Evaluating {checkpoint.path} ({runs.checkpoints.step_words(checkpoint.global_step)})")
        log.note(f"{os.path.basename(checkpoint.path)}: {describe(checkpoint.provenance)}")
        splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}
        pictures = EvaluationPictures(model, splits["test"]) if report else None
        results = evaluate_all(model, splits, log, pictures.logits if pictures else None)
        if report:
            # Titled as the run's own pictures of this checkpoint were: the same PNGs.
            found, drawn, _ = pictures.draw(backend, f"at {runs.checkpoints.step_words(checkpoint.global_step)}"
                                            if checkpoint.global_step else "")
            written = report.write(checkpoint, found, drawn, results["test"])
            log.note(f"wrote {', '.join(written)} in {flags.report}")
    except BaseException:
        if report:
            report.abandon()  # the folders it made, if still empty (a failed write has removed its files)
        raise
    return results
