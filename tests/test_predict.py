"""`mnist-gpu predict` and Classifier.predict on image files: prepared as MNIST's digits were; bad files one line."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import mnist_gpu
from mnist_gpu.errors import ImageError
from mnist_gpu.images import MAX_PIXELS, load_digit
from mnist_gpu.input_data import read_data_sets

from helpers import run_main

DIGITS = 400  # test digits per variant


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, mnist_dir):
    """A model trained well enough (test precision about 0.96) that its predictions are stable under rescaling."""
    log_dir = tmp_path_factory.mktemp("run")
    mnist_gpu.train(input_data_dir=mnist_dir, log_dir=str(log_dir), backend="numpy", seed=2, max_steps=3000,
                    learning_rate=0.1, verbose=False)
    return mnist_gpu.load_checkpoint(str(log_dir), backend="numpy"), str(log_dir)


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    """DIGITS test digits, uint8 [N, 28, 28] (a fixed sample across the test set)."""
    test = read_data_sets(mnist_dir).test
    rows = np.random.default_rng(20).choice(test.num_examples, DIGITS, replace=False)
    return test.pixels[rows].reshape(-1, 28, 28)


def variants(digit, generator):
    """A test digit as people would hand it in: {name: PIL image}."""
    canvas = np.zeros((70, 90), np.uint8)
    top, left = generator.integers(0, 70 - 28), generator.integers(0, 90 - 28)
    canvas[top:top + 28, left:left + 28] = digit
    ink = digit[..., None] / np.float32(255)
    paper, pen = np.array([240, 232, 200], np.float32), np.array([30, 40, 140], np.float32)  # blue ink, cream paper
    coloured = np.round(paper * (1 - ink) + pen * ink).astype(np.uint8)
    drawn = np.zeros((28, 28, 4), np.uint8)
    drawn[..., 3] = digit  # black strokes on a transparent background, as a drawing program saves them
    return {
        "original": Image.fromarray(digit),
        "inverted": Image.fromarray(255 - digit),  # black ink on white paper
        "rescaled": Image.fromarray(digit).resize((97, 97), Image.Resampling.BICUBIC),
        "off-centre": Image.fromarray(canvas),
        "colour": Image.fromarray(coloured).resize((150, 150), Image.Resampling.BILINEAR),
        "transparent": Image.fromarray(drawn, mode="RGBA").resize((64, 64), Image.Resampling.BILINEAR),
    }


@pytest.fixture(scope="module")
def picture_files(tmp_path_factory, test_digits):
    """{variant: [PNG path per test digit]}, written with Pillow."""
    folder = tmp_path_factory.mktemp("pictures")
    generator = np.random.default_rng(3)
    files = {}
    for index, digit in enumerate(test_digits):
        for name, image in variants(digit, generator).items():
            path = folder / f"{name}-{index}.png"
            image.save(path)
            files.setdefault(name, []).append(str(path))
    return files


@pytest.mark.parametrize("variant", ["original", "inverted", "rescaled", "off-centre", "colour", "transparent"])
def test_image_files_are_predicted_as_the_model_predicts_the_original_digits(classifier, test_digits, picture_files,
                                                                             capsys, variant):
    model, log_dir = classifier
    expected = model.predict(test_digits)  # the model on MNIST's own 28 x 28 arrays
    code, lines, error = run_main(capsys, "predict", "--checkpoint", log_dir, "--backend", "numpy",
                                  *picture_files[variant])
    assert code == 0 and error == f"mnist-gpu: predicting with {model.path} (step 2999)\n", error
    assert [line.split(": ")[0] for line in lines] == picture_files[variant]
    predicted = np.array([int(line.split(": ")[1].split(" ")[0]) for line in lines])
    agreement = np.mean(predicted == expected)
    assert agreement >= 0.97, f"{variant}: {agreement:.1%} predicted as the originals"
    probabilities = [float(line.rsplit("(probability ", 1)[1].rstrip(")")) for line in lines]
    assert all(0.1 <= value <= 1 for value in probabilities)  # the largest of ten probabilities
    # The API takes the same files, and PIL images, with the same results.
    files = picture_files[variant][:50]
    np.testing.assert_array_equal(model.predict(files), predicted[:50])
    np.testing.assert_array_equal(model.predict([Image.open(path) for path in files]), predicted[:50])
    np.testing.assert_allclose(model.probabilities(files).max(axis=1), probabilities[:50], atol=5e-5)


def test_prepared_digits_look_like_mnists(picture_files, test_digits):
    """MNIST's own digits: longer side of the ink 20 pixels, centre of mass at pixel 14 +- 0.5 (all 10000 of its
    test digits); so are ours."""
    for variant in ("inverted", "rescaled", "off-centre", "colour"):
        for path in picture_files[variant][:100]:
            digit = load_digit(path).astype(np.float64)
            rows, columns = np.nonzero(digit)
            assert max(np.ptp(rows), np.ptp(columns)) + 1 in (19, 20, 21), path
            assert abs(digit.sum(axis=1) @ np.arange(28) / digit.sum() - 14) <= 0.5, path
            assert abs(digit.sum(axis=0) @ np.arange(28) / digit.sum() - 14) <= 0.5, path
    # An MNIST digit handed in as a file comes back nearly as it was.
    original = np.array([load_digit(path) for path in picture_files["original"]])
    assert np.mean(np.abs(original.astype(int) - test_digits)) < 1.0


def png(width, height, rows):
    """A PNG written by hand (Pillow would refuse these sizes): 8-bit grayscale, `rows` as its raw data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def bad_files(folder):
    """{file name: the start of its one error line}."""
    Image.new("L", (40, 30), 200).save(folder / "blank.png")
    (folder / "text.png").write_text("hello, not a picture\n", encoding="utf-8")
    (folder / "empty.png").write_bytes(b"")
    good = folder / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(good)
    (folder / "truncated.png").write_bytes(good.read_bytes()[:3000])
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(folder / "x.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "x.jpg").read_bytes()[:2000])
    (folder / "huge.png").write_bytes(png(100_000, 100_000, b"\0" * 1000))  # 10^10 pixels claimed in 71 bytes
    side = int(MAX_PIXELS ** 0.5) + 100  # above our limit, below Pillow's own
    (folder / "large.png").write_bytes(png(side, side, b"\0" * 1000))
    (folder / "bomb.png").write_bytes(png(20_000, 20_000, bytes(20_001 * 20_000)))  # 400 MB of zeros in 0.4 MB
    (folder / "drawing.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    (folder / "folder.png").mkdir()
    # Larger than the side that is reduced first, in the modes Pillow cannot reduce: all blank, but read.
    Image.new("P", (3000, 300), 0).save(folder / "wide-palette.png")
    Image.new("1", (3000, 300), 1).save(folder / "wide-1-bit.png")
    Image.new("I;16", (300, 3000), 7).save(folder / "tall-16-bit.png")
    Image.fromarray(np.full((40, 30), np.inf, np.float32), mode="F").save(folder / "infinite.tif")
    return {"blank.png": "no digit in it", "text.png": "not an image", "empty.png": "the file is empty",
            "truncated.png": "not a readable image", "truncated.jpg": "not a readable image",
            "huge.png": "refused as a decompression bomb", "large.png": f"{side} x {side} pixels is more than",
            "bomb.png": "refused as a decompression bomb", "drawing.eps": "not an image",
            "folder.png": "a folder, not a regular file; nothing was read", "missing.png": "cannot be read",
            "wide-palette.png": "no digit in it", "wide-1-bit.png": "no digit in it",
            "tall-16-bit.png": "no digit in it", "infinite.tif": "holds NaN or infinite pixel values"}


def test_each_bad_file_gets_one_line_naming_it_and_the_good_ones_are_still_predicted(classifier, tmp_path, capsys,
                                                                                     picture_files):
    _, log_dir = classifier
    expected = bad_files(tmp_path)
    names = [str(tmp_path / name) for name in expected]
    good = picture_files["inverted"][0]
    code, lines, error = run_main(capsys, "predict", "--checkpoint", log_dir, "--backend", "numpy", good, *names)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"{good}: ")
    first, *errors = error.splitlines()
    assert first.startswith("mnist-gpu: predicting with ") and len(errors) == len(expected), error
    for line, (name, reason) in zip(errors, expected.items(), strict=True):
        assert line.startswith(f"mnist-gpu: error: {tmp_path / name}: {reason}"), line
    model, _ = classifier
    for name in expected:
        with pytest.raises(ImageError, match=f"^{tmp_path / name}: "):
            model.predict(str(tmp_path / name))


def test_predict_keeps_its_array_behaviour(classifier, test_digits):
    model, _ = classifier
    labels = model.predict(test_digits)
    assert labels.dtype == np.int32 and labels.shape == (DIGITS,)
    np.testing.assert_array_equal(model.predict(test_digits.reshape(-1, 784).astype(np.float32) / 255), labels)
    np.testing.assert_array_equal(np.argmax(model.probabilities(test_digits), axis=1), labels)
    assert model.predict(np.zeros((0, 784), np.float32)).shape == (0,)


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys, picture_files):
    """A checkpoint that cannot be used is exit 1 for predict as for eval and --resume."""
    code, lines, error = run_main(capsys, "predict", "--checkpoint", str(tmp_path / "nothing"),
                                  picture_files["original"][0])
    assert code == 1 and lines == []
    assert error == f"mnist-gpu: error: {tmp_path / 'nothing'}: checkpoint file not found\n"


def test_without_a_checkpoint_predict_and_load_checkpoint_use_the_newest_run(tmp_path, capsys, monkeypatch, mnist_dir,
                                                                            picture_files):
    """As `mnist-gpu eval` without --checkpoint: the newest valid checkpoint of the runs made without --log_dir."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    code, lines, error = run_main(capsys, "predict", picture_files["original"][0])
    assert code == 2 and lines == [] and "no run under" in error
    for seed in ("3", "4"):
        assert run_main(capsys, "--input_data_dir", mnist_dir, "--backend", "numpy", "--seed", seed,
                        "--max_steps", "20")[0] == 0
    newest = mnist_gpu.load_checkpoint(backend="numpy")
    assert newest.provenance["flags"]["seed"] == 4 and newest.path.startswith(str(tmp_path))
    code, lines, error = run_main(capsys, "predict", "--backend", "numpy", *picture_files["original"][:3])
    assert code == 0 and error == f"mnist-gpu: predicting with {newest.path} (step 19)\n", error
    expected = newest.predict(picture_files["original"][:3])
    assert [int(line.split(": ")[1].split(" ")[0]) for line in lines] == list(expected)


@pytest.mark.parametrize("mode", ["P", "1", "I;16", "RGB"])
def test_a_picture_larger_than_the_working_side_is_reduced_in_any_mode(tmp_path, test_digits, mode):
    """Pictures with a side above WORKING_SIDE are reduced first, also in the modes Pillow cannot reduce itself."""
    from mnist_gpu.images import WORKING_SIDE

    digit = Image.fromarray(test_digits[0]).resize((WORKING_SIDE + 500,) * 2, Image.Resampling.NEAREST)
    picture = digit.point(lambda value: 65535 * (value > 127)).convert("I;16") if mode == "I;16" else \
        digit.point(lambda value: 255 * (value > 127)).convert(mode)
    picture.save(tmp_path / "big.png")
    prepared = load_digit(tmp_path / "big.png").astype(int)
    assert np.mean(np.abs(prepared - test_digits[0])) < 12  # the original's shape, thresholded to black and white


def test_logits_that_overflow_get_no_label(classifier, tmp_path, capsys, picture_files):
    """A checkpoint whose finite weights overflow float32 (hidden1's scaled by 1e38, saved with a valid hash): the
    digit gets one error line and no label, exit 1 (it printed a label with probability nan)."""
    from mnist_gpu import checkpoint as checkpoints

    _, log_dir = classifier
    saved = checkpoints.Saver(log_dir).latest()[0]
    saved.variables["hidden1/weights"] = saved.variables["hidden1/weights"] * np.float32(1e38)
    (tmp_path / "huge").mkdir()
    checkpoints.Saver(str(tmp_path / "huge")).save(saved.global_step - 1, saved)
    good = picture_files["inverted"][0]
    code, lines, error = run_main(capsys, "predict", "--checkpoint", str(tmp_path / "huge"), "--backend", "numpy", good)
    assert code == 1 and lines == []
    assert error.splitlines()[-1] == (f"mnist-gpu: error: {good}: the model's logits for it are not finite (its "
                                      "weights overflow float32); no label")
