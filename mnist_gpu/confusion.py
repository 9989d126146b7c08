"""Which digits a model gets wrong: the confusion matrix of one predicted class per example, and its tables.

One predicted class per example is the class of the largest logit, the first of equal largest
ones (np.argmax, as Classifier.predict labels images). The tutorial's Precision @ 1 counts
differently: TF's in_top_k calls a row correct when no class scores strictly higher than its
label, so a label tied for the largest logit counts as correct even where argmax picks an
earlier class, and a row with a non-finite logit counts as wrong whatever argmax picks. The
matrix's diagonal therefore equals the printed "Num correct" except on exact ties and NaN or
infinite logits (`differs_from_in_top_k` counts those rows; the report says so when it is not 0).
Rows are true classes, columns predicted ones.
"""
from dataclasses import dataclass

import numpy as np

from .model import NUM_CLASSES


def softmax(logits):
    """float64 [N, C] probabilities of logits [N, C] (any N), computed in float64 from the largest logit down."""
    logits = np.asarray(logits, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite logits give NaN rows, not warnings
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True, initial=-np.inf))
        return exponentials / exponentials.sum(axis=1, keepdims=True)


@dataclass
class Confusion:
    """Per-example predictions of one split and their confusion matrix."""

    labels: np.ndarray  # int [N]: the true classes
    predicted: np.ndarray  # int [N]: argmax of the logits, the first of equal largest
    probability: np.ndarray  # float [N]: softmax probability of the predicted class
    differs_from_in_top_k: int  # rows argmax judges otherwise than in_top_k (ties, non-finite logits)

    @classmethod
    def from_logits(cls, logits, labels):
        """From host logits float32 [N, C] and integer labels [N]."""
        logits, labels = np.asarray(logits), np.asarray(labels).astype(np.int64)
        predicted = np.argmax(logits, axis=1) if len(logits) else np.zeros(0, np.int64)
        probability = softmax(logits)[np.arange(len(logits)), predicted]
        with np.errstate(invalid="ignore"):
            label_logit = logits[np.arange(len(logits)), labels]
            in_top_k = np.isfinite(logits).all(axis=1) & ((logits > label_logit[:, None]).sum(axis=1) == 0)
        differs = int(np.count_nonzero(in_top_k != (predicted == labels)))
        return cls(labels, predicted, probability, differs)

    @property
    def matrix(self):
        """int64 [C, C]: matrix[true, predicted] = how many examples."""
        return np.bincount(self.labels * NUM_CLASSES + self.predicted,
                           minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)

    @property
    def correct(self):
        return int(np.count_nonzero(self.labels == self.predicted))

    def precision(self):
        """float [C]: of the examples predicted as each class, the share that is that class (NaN: none predicted)."""
        matrix = self.matrix
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(matrix) / matrix.sum(axis=0)

    def recall(self):
        """float [C]: of each class's examples, the share predicted as that class (NaN: no examples)."""
        matrix = self.matrix
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(matrix) / matrix.sum(axis=1)

    def most_confused(self, count=10):
        """[(true, predicted, examples)] of the largest off-diagonal cells, largest first (ties: true, predicted)."""
        matrix = self.matrix.copy()
        np.fill_diagonal(matrix, 0)
        order = np.lexsort((np.arange(matrix.size), -matrix.reshape(-1)))
        return [(int(cell // NUM_CLASSES), int(cell % NUM_CLASSES), int(matrix.flat[cell]))
                for cell in order[:count] if matrix.flat[cell] > 0]

    def misclassified(self, limit=64):
        """Indices of up to `limit` misclassified examples, the most confidently wrong first (ties: in order)."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        confidence = np.nan_to_num(self.probability[wrong], nan=-1.0)
        return wrong[np.lexsort((wrong, -confidence))][:limit]


def _share(value):
    return "n/a" if np.isnan(value) else f"{value:.4f}"


def matrix_markdown(confusion):
    """The confusion matrix as a Markdown table: rows true classes, columns predicted."""
    matrix = confusion.matrix
    lines = ["| true \\ predicted | " + " | ".join(str(column) for column in range(NUM_CLASSES)) + " |",
             "|---:|" + "---:|" * NUM_CLASSES]
    lines += [f"| **{row}** | " + " | ".join(str(count) for count in matrix[row]) + " |" for row in range(NUM_CLASSES)]
    return "\n".join(lines)


def per_class_markdown(confusion):
    """Per class: examples, predictions, precision and recall, as a Markdown table."""
    matrix, precision, recall = confusion.matrix, confusion.precision(), confusion.recall()
    lines = ["| class | examples | predicted as it | precision | recall |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {row} | {matrix[row].sum()} | {matrix[:, row].sum()} | {_share(precision[row])} | "
              f"{_share(recall[row])} |" for row in range(NUM_CLASSES)]
    return "\n".join(lines)


def most_confused_markdown(confusion, count=10):
    """The most confused pairs as a Markdown table (or a sentence when nothing is misclassified)."""
    pairs = confusion.most_confused(count)
    if not pairs:
        return "Nothing is misclassified."
    totals = confusion.matrix.sum(axis=1)
    lines = ["| true | predicted as | examples | share of the true class |", "|---:|---:|---:|---:|"]
    lines += [f"| {true} | {predicted} | {examples} | {examples / totals[true]:.2%} |"
              for true, predicted, examples in pairs]
    return "\n".join(lines)


def summary_line(confusion):
    """How many examples the matrix gets right, and how many rows in_top_k judges otherwise (when any)."""
    text = f"{confusion.correct} of {len(confusion.labels)} right"
    if confusion.differs_from_in_top_k:
        text += (f" ({confusion.differs_from_in_top_k} rows judged otherwise by the tutorial's in_top_k, where a tie "
                 "for the largest logit counts as correct and a non-finite logit as wrong)")
    return text


def text_summary(confusion, split="test"):
    """The Markdown that TensorBoard's Text tab shows at each evaluation."""
    return (f"Confusion matrix of the {split} set, one class per example (argmax: the first of equal largest "
            f"logits): {summary_line(confusion)}. Rows are true classes, columns predicted ones.\n\n"
            f"{matrix_markdown(confusion)}\n\n{per_class_markdown(confusion)}")
