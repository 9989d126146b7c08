"""`mnist-gpu eval --report DIR`: the test set's pictures as PNG files and a short Markdown report.

DIR/confusion_matrix.png and DIR/misclassified.png are the very pictures TensorBoard shows at
each evaluation (pictures.py); DIR/report.md says which checkpoint, what made it, the test set's
counts (the tutorial's in_top_k and the matrix's argmax), per-class precision and recall, the
most confused pairs and the matrix itself. The three files are replaced as one report: each is
written in full beside its target first, and only then are they renamed into place (report.md,
which shows the two pictures, last), so a full disk leaves the older report whole, never a new
picture beside an old report.md.
"""
import contextlib
import errno
import os
import tempfile

from . import confusion as tables
from .checkpoint import step_words
from .durable import TEMPORARY_SUFFIX, failure_reason, fsync_directory, replace_durably
from .errors import NAME, Flag, FlagError, WriteError
from .log import printable
from .provenance import describe

CONFUSION_MATRIX, MISCLASSIFIED, REPORT = "confusion_matrix.png", "misclassified.png", "report.md"


def report_markdown(checkpoint, confusion, test_result):
    """The report's text: `test_result` is the test split's (examples, correct) as the eval line printed it."""
    examples, correct = test_result
    path = printable(checkpoint.path)  # UTF-8, one line, whatever bytes the path holds
    name = os.path.basename(path)
    return f"""# Evaluation of {name}

Checkpoint `{path}`, {step_words(checkpoint.global_step)} ({checkpoint.global_step} training steps); \
{describe(checkpoint.provenance)}.

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


class ReportFolder:
    """The --report folder: checked, and made with its missing parents, before anything is evaluated (a refused
    command leaves no folder behind); at the end the report is written into it as a whole (`write`).
    """

    def __init__(self, folder):
        from .runs import make_folders

        if folder == "":
            raise FlagError(Flag("report", NAME), " is empty: name a folder")
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise WriteError(Flag("report", NAME), f" {folder} is a file, not a folder")
        self.folder, self.created = folder, []  # the folders this command made, parents first
        try:
            make_folders(folder, self.created, Flag("report", NAME))
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            self.abandon()
            raise WriteError(Flag("report", NAME), f" {folder} cannot be written: {failure_reason(error)}") from None
        except WriteError:
            self.abandon()
            raise

    def abandon(self):
        """Take back the folders this command made (deepest first; one that holds someone else's file stays)."""
        from .runs import remove_folders

        remove_folders(self.created)
        self.created = []

    def write(self, checkpoint, confusion, pictures, test_result):
        """Write the two PNGs and report.md as one report: every file is written in full (as a temporary beside
        it, fsync'ed) before any replaces the file of an older report. A write that fails (a full disk) removes
        what it wrote and raises WriteError naming the file: the older report, if any, is left whole."""
        files = ((CONFUSION_MATRIX, pictures.confusion_matrix.png), (MISCLASSIFIED, pictures.misclassified.png),
                 (REPORT, report_markdown(checkpoint, confusion, test_result).encode()))
        temporaries = []
        try:
            for name, data in files:
                path = os.path.join(self.folder, name)
                descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMPORARY_SUFFIX,
                                                         dir=self.folder)
                temporaries.append(temporary)
                with os.fdopen(descriptor, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
        except OSError as error:
            for temporary in temporaries:
                with contextlib.suppress(OSError):
                    os.remove(temporary)
            self.abandon()
            raise WriteError(Flag("report", NAME), f": writing {path} failed: {failure_reason(error)}") from None
        renamed = 0
        try:
            for name, _ in files:  # a folder in a file's place would stop the renames half-way: refused first
                if os.path.isdir(os.path.join(self.folder, name)):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.path.join(self.folder, name))
            for temporary, (name, _) in zip(temporaries, files, strict=True):  # the commit: renames, report.md last
                path = os.path.join(self.folder, name)
                replace_durably(temporary, path, sync=False)
                renamed += 1
            fsync_directory(self.folder)
        except OSError as error:
            for temporary in temporaries[renamed:]:
                with contextlib.suppress(OSError):
                    os.remove(temporary)
            replaced = f"{renamed} of its {len(files)} files replaced" if renamed else "nothing replaced"
            raise WriteError(Flag("report", NAME), f": writing {error.filename or path} failed: "
                             f"{failure_reason(error)}; {replaced}") from None
        return [name for name, _ in files]
