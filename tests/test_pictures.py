"""The test set's pictures: the confusion matrix and misclassified digits, in TensorBoard and in eval --report."""
import io
import math
import os
import re

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

import mnist_gpu
from mnist_gpu import pictures
from mnist_gpu.confusion import Confusion, text_summary
from mnist_gpu.input_data import read_data_sets
from mnist_gpu.model import NUM_CLASSES

from helpers import one_error_line, run_main


def confusion_by_hand(logits, labels):
    """matrix[true][predicted] counted one example at a time, predicted = the first of the largest logits."""
    matrix = [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)]
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        finite = [value for value in row if not math.isnan(value)]
        first_largest = row.index(max(finite)) if len(finite) == len(row) else \
            next(index for index, value in enumerate(row) if math.isnan(value))  # NumPy's argmax: NaN wins
        matrix[label][first_largest] += 1
    return np.array(matrix)


def test_the_matrix_takes_the_first_of_equal_largest_logits_and_counts_where_in_top_k_differs(generator, numpy_backend):
    logits = generator.standard_normal((500, NUM_CLASSES)).astype(np.float32)
    labels = generator.integers(0, NUM_CLASSES, 500).astype(np.int32)
    logits[:40] = 1.0  # all ten tie: in_top_k calls each right, argmax says class 0
    logits[40:50, 3] = logits[40:50, 7] = 9.0  # a tie of two
    labels[40:50] = 7  # in_top_k: right; argmax: 3
    logits[50:60, 2] = np.nan  # in_top_k: wrong whatever the label
    labels[50:55] = 2
    logits[60:70, 5] = np.inf
    labels[60:70] = 5  # argmax: right; in_top_k (a non-finite logit): wrong
    found = Confusion.from_logits(logits, labels)
    np.testing.assert_array_equal(found.matrix, confusion_by_hand(logits, labels))
    assert found.correct == int(np.trace(confusion_by_hand(logits, labels)))
    in_top_k = [int(numpy_backend.in_top_k(logits[None, row:row + 1], labels[row:row + 1], 1)[0])
                for row in range(500)]
    right = (found.predicted == labels).astype(int)
    assert found.differs_from_in_top_k == sum(a != b for a, b in zip(in_top_k, right, strict=True))
    assert found.differs_from_in_top_k >= 30  # the ties and non-finite rows above
    assert f"{found.differs_from_in_top_k} rows judged otherwise by the tutorial's in_top_k" in text_summary(found)


def test_precision_recall_most_confused_and_misclassified_order(generator):
    logits = generator.standard_normal((2000, NUM_CLASSES)).astype(np.float32)
    labels = generator.integers(0, NUM_CLASSES, 2000).astype(np.int32)
    logits[np.arange(2000), labels] += 1.5
    logits[:, 9] = -50  # nothing is predicted as 9: its precision is undefined
    found = Confusion.from_logits(logits, labels)
    matrix = confusion_by_hand(logits, labels)
    for digit in range(NUM_CLASSES):
        predicted_as = sum(matrix[row][digit] for row in range(NUM_CLASSES))
        expected = matrix[digit][digit] / predicted_as if predicted_as else float("nan")
        np.testing.assert_equal(found.precision()[digit], expected)
        assert found.recall()[digit] == matrix[digit][digit] / sum(matrix[digit])
    pairs = sorted(((int(matrix[true][predicted]), -true, -predicted) for true in range(NUM_CLASSES)
                    for predicted in range(NUM_CLASSES) if true != predicted and matrix[true][predicted]), reverse=True)
    assert found.most_confused(10) == [(-true, -predicted, count) for count, true, predicted in pairs[:10]]
    def softmax_by_hand(row):
        exponentials = [math.exp(value - max(row)) for value in row.tolist()]
        return [value / sum(exponentials) for value in exponentials]

    probabilities = np.array([softmax_by_hand(row) for row in logits])
    wrong = sorted((index for index in range(2000) if np.argmax(logits[index]) != labels[index]),
                   key=lambda index: (-probabilities[index].max(), index))
    np.testing.assert_array_equal(found.misclassified(64), wrong[:64])
    np.testing.assert_allclose(found.probability, probabilities.max(axis=1), rtol=1e-6)


def decode(png):
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


def test_nothing_misclassified_draws_a_grid_that_says_so():
    labels = np.zeros(50, np.int32)
    logits = np.zeros((50, NUM_CLASSES), np.float32)
    logits[:, 0] = 5
    found = Confusion.from_logits(logits, labels)
    drawn = pictures.draw(found, np.ones((50, 784), np.uint8), "at step 3")
    assert found.most_confused() == [] and len(found.misclassified()) == 0
    assert decode(drawn.misclassified.png).size == (drawn.misclassified.width, drawn.misclassified.height)
    assert decode(drawn.confusion_matrix.png).mode == "RGB"


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_dir):
    log_dir = tmp_path_factory.mktemp("run")
    mnist_gpu.train(input_data_dir=mnist_dir, log_dir=str(log_dir), backend="numpy", seed=5, max_steps=1000,
                    verbose=False)
    classifier = mnist_gpu.load_checkpoint(str(log_dir), backend="numpy")
    test = read_data_sets(mnist_dir).test
    return log_dir, classifier, test


def table_rows(markdown, header):
    """The body rows of the Markdown table whose header line starts with `header`, as lists of cells."""
    lines = markdown.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("*") for cell in line.strip("|").split("|")])
    return rows


def test_each_evaluation_shows_the_test_sets_confusion_matrix_and_misclassified_digits(run):
    log_dir, classifier, test = run
    events = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"test/confusion_matrix", "test/misclassified"}
    (matrix_image,) = events.Images("test/confusion_matrix")
    (grid_image,) = events.Images("test/misclassified")
    assert matrix_image.step == grid_image.step == 999
    for image in (matrix_image, grid_image):
        assert decode(image.encoded_image_string).size == (image.width, image.height)

    # The oracle: the saved model's own predictions through the API, example by example.
    predicted = classifier.predict(test.pixels)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
    np.add.at(expected, (test.labels, predicted), 1)
    (text,) = events.Tensors("test/confusion_table")
    markdown = text.tensor_proto.string_val[0].decode()
    rows = table_rows(markdown, "| true \\ predicted")
    np.testing.assert_array_equal(np.array([row[1:] for row in rows], int), expected)
    assert [row[0] for row in rows] == [str(digit) for digit in range(NUM_CLASSES)]
    precision = [float(row[3]) for row in table_rows(markdown, "| class |")]
    np.testing.assert_allclose(precision, np.diag(expected) / expected.sum(axis=0), atol=5e-5)
    printed = events.Scalars("precision/test")[-1].value  # in_top_k's count; no exact ties in real logits
    assert np.trace(expected) / 10000 == pytest.approx(printed, abs=1e-6)

    # The grid: the most confidently wrong digits first, each drawn at twice its size.
    probability = classifier.probabilities(test.pixels).max(axis=1)
    wrong = sorted(np.flatnonzero(predicted != test.labels), key=lambda index: (-probability[index], index))
    grid = np.asarray(decode(grid_image.encoded_image_string))
    side = 28 * pictures.DIGIT_SCALE
    assert len(wrong) > 64
    for cell, index in enumerate(wrong[:64]):
        x, y = pictures.digit_position(cell)
        drawn = grid[y:y + side, x:x + side]
        np.testing.assert_array_equal(drawn, np.kron(test.pixels[index].reshape(28, 28), np.ones((2, 2), np.uint8)),
                                      err_msg=f"cell {cell}: test digit {index}")


def test_eval_report_writes_the_same_pictures_and_a_markdown_report(run, tmp_path, capsys, mnist_dir):
    log_dir, classifier, test = run
    report = tmp_path / "report"
    common = ("eval", "--checkpoint", str(log_dir), "--input_data_dir", mnist_dir, "--backend", "numpy")
    code, plain, _ = run_main(capsys, *common)
    assert code == 0
    code, lines, error = run_main(capsys, *common, "--report", str(report))
    assert code == 0, error
    assert lines == plain  # stdout: exactly the eval lines, with or without the report
    assert error.splitlines()[-1] == \
        f"mnist-gpu: wrote confusion_matrix.png, misclassified.png, report.md in {report}"
    assert sorted(os.listdir(report)) == ["confusion_matrix.png", "misclassified.png", "report.md"]
    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.IMAGES: 0})
    events.Reload()
    for name, tag in (("confusion_matrix.png", "test/confusion_matrix"), ("misclassified.png", "test/misclassified")):
        assert (report / name).read_bytes() == events.Images(tag)[-1].encoded_image_string, name

    markdown = (report / "report.md").read_text(encoding="utf-8")
    predicted = classifier.predict(test.pixels)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
    np.add.at(expected, (test.labels, predicted), 1)
    per_class = table_rows(markdown, "| class |")
    for digit, (name, examples, predicted_as, precision, recall) in enumerate(per_class):
        assert (int(name), int(examples), int(predicted_as)) == (digit, expected[digit].sum(), expected[:, digit].sum())
        assert float(precision) == pytest.approx(expected[digit, digit] / expected[:, digit].sum(), abs=5e-5)
        assert float(recall) == pytest.approx(expected[digit, digit] / expected[digit].sum(), abs=5e-5)
    off_diagonal = expected * (1 - np.eye(NUM_CLASSES, dtype=int))
    top = sorted(((off_diagonal[true, guess], -true, -guess) for true in range(NUM_CLASSES)
                  for guess in range(NUM_CLASSES) if off_diagonal[true, guess]), reverse=True)[:10]
    pairs = [tuple(int(cell) for cell in row[:3]) for row in table_rows(markdown, "| true | predicted as |")]
    assert pairs == [(-true, -guess, count) for count, true, guess in top]
    assert "![The confusion matrix](confusion_matrix.png)" in markdown
    assert re.search(r"Precision @ 1, the tutorial's count .*: 0\.\d{4} \(\d+ correct\)", markdown.replace("\n", " "))
    assert f"step {classifier.global_step - 1} ({classifier.global_step} training steps)" in markdown
    assert "made by mnist_gpu" in markdown


def test_eval_report_into_a_file_is_one_error_line(run, tmp_path, capsys, mnist_dir):
    log_dir, _, _ = run
    blocked = tmp_path / "a_file"
    blocked.write_text("mine", encoding="utf-8")
    code, lines, error = run_main(capsys, "eval", "--checkpoint", str(log_dir), "--input_data_dir", mnist_dir,
                                  "--backend", "numpy", "--report", str(blocked))
    assert code == 1 and lines == []
    assert error == f"mnist-gpu: error: --report {blocked} is a file, not a folder\n"
    assert blocked.read_text(encoding="utf-8") == "mine"


def test_a_refused_eval_report_leaves_no_folder_behind(run, tmp_path, capsys, mnist_dir):
    """A command refused before it evaluates (here: a backend this machine cannot use) changes nothing."""
    from mnist_gpu.backends.gpu_probe import gpu_available

    if gpu_available():
        pytest.skip("needs a machine where --backend cuda is refused")
    log_dir, _, _ = run
    code, lines, error = run_main(capsys, "eval", "--checkpoint", str(log_dir), "--input_data_dir", mnist_dir,
                                  "--backend", "cuda", "--report", str(tmp_path / "report"))
    assert code == 1 and lines == [] and error.startswith("mnist-gpu: error: --backend cuda ")
    assert not (tmp_path / "report").exists()


def test_an_eval_report_whose_file_is_a_folder_replaces_nothing(run, tmp_path, capsys, mnist_dir):
    """A folder where report.md goes (its pictures' places free): one line naming it, exit 1, no picture replaced and
    no temporary left (the renames stopped half-way in an IsADirectoryError traceback, the new pictures beside the
    old report)."""
    log_dir, _, _ = run
    folder = tmp_path / "report"
    flags = ["eval", "--checkpoint", str(log_dir), "--input_data_dir", mnist_dir, "--backend", "numpy", "--report",
             str(folder)]
    assert run_main(capsys, *flags)[0] == 0
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    (folder / "report.md").unlink()
    (folder / "report.md").mkdir()
    (folder / "confusion_matrix.png").write_bytes(b"the older one")
    code, _, error = run_main(capsys, *flags)
    assert code == 1 and one_error_line(error) == (f"mnist-gpu: error: --report: writing {folder / 'report.md'} "
                                                   "failed: Is a directory; nothing replaced")
    assert (folder / "confusion_matrix.png").read_bytes() == b"the older one"
    assert sorted(path.name for path in folder.iterdir()) == sorted(before)
