"""`mnist-gpu eval --report DIR`: the test set's pictures as PNG files and a short Markdown report.

DIR/confusion_matrix.png and DIR/misclassified.png are the very pictures TensorBoard shows at
each evaluation (pictures.py); DIR/report.md says which checkpoint, what made it, the test set's
counts (the tutorial's in_top_k and the matrix's argmax), per-class precision and recall, the
most confused pairs and the matrix itself. Each file is replaced atomically; report.md, which
shows the two pictures, is written last.
"""
import os

from . import confusion as tables
from .durable import failure_reason, write_bytes_durably
from .errors import WriteError
from .provenance import describe

CONFUSION_MATRIX, MISCLASSIFIED, REPORT = "confusion_matrix.png", "misclassified.png", "report.md"


def report_markdown(checkpoint, confusion, test_result):
    """The report's text: `test_result` is the test split's (examples, correct) as the eval line printed it."""
    examples, correct = test_result
    name = os.path.basename(checkpoint.path)
    return f"""# Evaluation of {name}

Checkpoint `{checkpoint.path}`, global_step {checkpoint.global_step}; {describe(checkpoint.provenance)}.

Test set: {examples} examples. Precision @ 1, the tutorial's count (in_top_k: a tie for the largest logit
counts as correct): {correct / examples:.4f} ({correct} correct). The tables and pictures below take one
class per example, argmax (the first of equal largest logits): {tables.summary_line(confusion)}.

## Per class

{tables.per_class_markdown(confusion)}

## Most confused pairs

{tables.most_confused_markdown(confusion)}

## Confusion matrix

Rows are true classes, columns predicted ones.

{tables.matrix_markdown(confusion)}

![The confusion matrix]({CONFUSION_MATRIX})

![Misclassified test digits, the most confidently wrong first]({MISCLASSIFIED})
"""


def write_report(folder, checkpoint, confusion, pictures, test_result):
    """Write the two PNGs and report.md into `folder` (which exists); WriteError naming the file otherwise."""
    files = ((CONFUSION_MATRIX, pictures.confusion_matrix.png), (MISCLASSIFIED, pictures.misclassified.png),
             (REPORT, report_markdown(checkpoint, confusion, test_result).encode()))
    for name, data in files:
        path = os.path.join(folder, name)
        try:
            write_bytes_durably(path, data)
        except OSError as error:
            raise WriteError(f"--report: writing {path} failed: {failure_reason(error)}") from None
    return [name for name, _ in files]
