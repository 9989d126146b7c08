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


def do_eval(model, split, logits=None):
    """Each member's Precision @ 1 over the split's first whole batches, in order (training's order untouched).

    The tutorial's examples: steps_per_epoch = N // batch_size whole batches. Rows are
    independent in inference, so they are computed mnist.evaluation_rows at a time (a model
    sharing the variables, with its own buffers): the same examples and counts, far fewer calls.
    Every member sees the same rows. `logits`, an EvaluationPictures, keeps every member's logits of
    every example (for the pictures and the ensemble): each chunk's inference writes straight into
    a buffer of its own, kept, so keeping them copies nothing. Returns (examples, correct: a host
    int array [K]).
    """
    backend = model.backend
    num_examples = evaluated_examples(split.data_set, model.batch_size)
    chunk = min(mnist.evaluation_rows(model.batch_size, *model.hidden_units, model.members), num_examples)
    evaluator = model.resized(chunk)
    images = backend.empty((chunk, mnist.IMAGE_PIXELS))
    labels = backend.empty((chunk,), dtype=np.int32)
    counts = []  # [K] each, read once every chunk is queued: on a GPU the host waits once per split
    for start in range(0, num_examples, chunk):
        rows = np.arange(start, min(start + chunk, num_examples))
        if len(rows) < chunk:  # the last, shorter chunk: a model of its size
            evaluator = model.resized(len(rows))
            images, labels = images[:len(rows)], labels[:len(rows)]
        split.gather(backend, rows, images, labels)
        if logits is not None:
            evaluator.logits = logits.chunk(start, len(rows))
        # A diverged member's huge weights overflow to inf and NaN: counted wrong (in_top_k's rules), not a warning.
        with np.errstate(over="ignore", invalid="ignore"):
            counts.append(mnist.evaluation(evaluator, mnist.inference(evaluator, images), labels))
    return num_examples, np.sum([backend.to_host(count) for count in counts], axis=0, dtype=np.int64)


def evaluate_all(model, splits, log=None, test_logits=None, prefixes=("",)):
    """The tutorial's three eval blocks, each member's lines after its prefix; returns {split: (examples, correct
    [K])}. test_logits: see do_eval."""
    log, results = log or Log(), {}
    for name, title in SPLITS:
        results[name] = do_eval(model, splits[name], test_logits if name == "test" else None)
        examples, correct = results[name]
        for prefix, true_count in zip(prefixes, correct, strict=True):
            log.line(f"{prefix}{title} Data Eval:")
            log.line("%s  Num examples: %d  Num correct: %d  Precision @ 1: %0.04f"
                     % (prefix, examples, true_count, true_count / examples))
    return results


def evaluate_quietly(backend, splits, variables, members, batch_size, step, keep_test_logits=False):
    """The evaluation of saved variables (host arrays [K, ...], one member each), printing nothing: recorded as each
    population.Member's evaluation at `step`, as if it had been printed then. Returns the members' test logits [K, N,
    C] on the host where asked (for the ensemble), else None. For members that stopped before a resume, and for a
    population that finished training but whose worker died before telling its trials."""
    model = mnist.Model(backend, variables, batch_size, [member.learning_rate for member in members])
    test_logits = EvaluationPictures(model, splits["test"]) if keep_test_logits else None
    found = evaluate_all(model, splits, Log(False), test_logits, [""] * len(members))
    for column, member in enumerate(members):
        member.evaluations[step] = {split: (examples, int(correct[column])) for split, (examples, correct) in
                                    found.items()}
    return test_logits.host_logits() if keep_test_logits else None


class EvaluationPictures:
    """The test set's confusion matrix and misclassified digits at each evaluation (confusion.py, pictures.py).

    The test split's logits of every member are kept during its evaluation, a backend buffer [K,
    rows, C] for each chunk of rows that do_eval computes (allocated once, reused by every
    evaluation), and copied to the host at once (host_logits): for a member's matrix, one predicted
    class per example, argmax (see confusion.py for how that differs from the tutorial's in_top_k
    count), and for the ensemble of members.
    """

    def __init__(self, model, split):
        self.split, self.backend, self.members = split, model.backend, model.members
        self.chunks = {}  # the chunk's first row -> its logits [K, rows, C]

    def chunk(self, start, rows):
        """The buffer that keeps the logits of rows start .. start + rows - 1."""
        if start not in self.chunks or self.chunks[start].shape[1] != rows:
            self.chunks[start] = self.backend.empty((self.members, rows, mnist.NUM_CLASSES))
        return self.chunks[start]

    def host_logits(self):
        """Every member's logits of the evaluated examples, [K, N, C] on the host."""
        return np.concatenate([self.backend.to_host(self.chunks[start]) for start in sorted(self.chunks)], axis=1)

    def draw(self, host_logits, when):
        """(confusion.Confusion, pictures.Pictures, the matrix as Markdown) of one member's logits [N, C] of the
        evaluation that just kept them. Imported here, at the first evaluation: none of it is needed
        before the first step."""
        from . import pictures
        from .confusion import Confusion, text_summary

        data_set, count = self.split.data_set, len(host_logits)
        found = Confusion.from_logits(host_logits, data_set.labels[:count])
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
        model = mnist.Model(backend, mnist.stacked([checkpoint.variables]), batch_size,
                            [checkpoint.flags["learning_rate"]], checkpoint.global_step)
        log.line(f"Evaluating {checkpoint.path} ({runs.checkpoints.step_words(checkpoint.global_step)})")
        log.note(f"{os.path.basename(checkpoint.path)}: {describe(checkpoint.provenance)}")
        splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}
        pictures = EvaluationPictures(model, splits["test"]) if report else None
        results = {split: (examples, int(correct[0])) for split, (examples, correct)
                   in evaluate_all(model, splits, log, pictures).items()}
        if report:
            # Titled as the run's own pictures of this checkpoint were: the same PNGs.
            found, drawn, _ = pictures.draw(pictures.host_logits()[0],
                                            f"at {runs.checkpoints.step_words(checkpoint.global_step)}"
                                            if checkpoint.global_step else "")
            written = report.write(checkpoint, found, drawn, results["test"])
            log.note(f"wrote {', '.join(written)} in {flags.report}")
    except BaseException:
        if report:
            report.abandon()  # the folders it made, if still empty (a failed write has removed its files)
        raise
    return results
