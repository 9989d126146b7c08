"""Image files that lie, written for real: a JPEG cut short with an end marker appended, a tiny JPEG whose header
claims 7000 x 7000, a PIL image of 0 x 0 pixels. Before, the first decoded with its missing part flat grey and got
a label; the second took 3.6 s and 428 MB to decode; the third raised IndexError."""
import io
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

import mnist_gpu
from mnist_gpu.images import load_digit, read_image

from helpers import run_main


def digit_jpeg(size=(200, 200), noise=6.0, seed=0, **options):
    """A photo-like JPEG of a drawn 7: a dark stroke on light, noisy paper."""
    picture = Image.new("L", size, 235)
    draw = ImageDraw.Draw(picture)
    width, height = size
    draw.line((width * 0.25, height * 0.2, width * 0.75, height * 0.2), fill=20, width=max(2, width // 14))
    draw.line((width * 0.75, height * 0.2, width * 0.4, height * 0.85), fill=20, width=max(2, width // 14))
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.asarray(picture, np.float32) + rng.normal(0, noise, (height, width)), 0, 255)
    stream = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(stream, "JPEG", **options)
    return stream.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("run")
    assert mnist_gpu.cli.main(["--fake_data", "--backend", "numpy", "--max_steps", "1", "--log_dir", str(log_dir)]) == 0
    return log_dir


def test_a_jpeg_cut_short_with_an_end_marker_appended_is_an_error(tmp_path, capsys, trained):
    whole = digit_jpeg()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[:len(whole) // 2] + b"\xff\xd9")
    good = tmp_path / "good.jpg"
    good.write_bytes(whole)
    Image.open(cut).load()  # Pillow itself decodes it without a word, the lower half made up: flat grey
    code, lines, error = run_main(capsys, "predict", "--backend", "numpy", "--checkpoint", str(trained), str(cut),
                                  str(good))
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"{good}: ")
    assert error.splitlines()[-1] == (f"mnist-gpu: error: {cut}: the JPEG data ends before the image does (a file "
                                      "cut short, with an end marker after the cut); its missing part would be made up")


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"optimize": True}, {"restart_marker_blocks": 4},
                                     {"subsampling": 0, "quality": 95}])
def test_whole_jpegs_pass_and_cut_ones_do_not(tmp_path, options):
    """Kinds of JPEG, whole and cut at many places: every whole one reads, every cut one (away from its very end)
    is refused. (A sweep of 1000 random cuts caught 994; the misses were cuts of a few bytes at the end, and
    progressive files cut where a scan begins: docs/reliability.md.)"""
    for seed in range(3):
        whole = digit_jpeg(size=(120 + 37 * seed, 90 + 23 * seed), seed=seed, **options)
        path = tmp_path / f"{seed}.jpg"
        path.write_bytes(whole)
        read_image(path)
        if seed % 2:
            Image.open(io.BytesIO(whole)).convert("RGB").save(path, "JPEG", **options)
            read_image(path)
        for fraction in (0.5, 0.7, 0.9):
            path.write_bytes(whole[:int(len(whole) * fraction)] + b"\xff\xd9")
            with pytest.raises(mnist_gpu.ImageError, match="ends before the image does|not a readable image"):
                read_image(path)


def digit_mpo(**options):
    """A multi-picture JPEG (MPO, as cameras write): the drawn 7, then a second frame. Pillow opens it as "MPO"."""
    first = Image.open(io.BytesIO(digit_jpeg(**options)))
    stream = io.BytesIO()
    first.save(stream, "MPO", save_all=True, append_images=[Image.new("L", first.size, 0)])
    assert Image.open(io.BytesIO(stream.getvalue())).format == "MPO"
    return stream.getvalue()


def test_an_mpo_gets_a_jpegs_checks(tmp_path):
    """An MPO's first frame is read as a JPEG is, whole or cut short (it passed both JPEG checks: format "MPO")."""
    whole = digit_mpo(size=(120, 90))
    path = tmp_path / "two.mpo"
    path.write_bytes(whole)
    assert load_digit(path).shape == (28, 28)
    path.write_bytes(whole[:whole.index(b"\xff\xd9") // 2] + b"\xff\xd9")  # the first frame cut short
    with pytest.raises(mnist_gpu.ImageError, match="ends before the image does|not a readable image"):
        read_image(path)


@pytest.mark.parametrize("kind, make", [("liar.jpg", digit_jpeg), ("liar.mpo", digit_mpo)])
def test_a_tiny_jpeg_claiming_7000_by_7000_is_refused_at_once(tmp_path, kind, make):
    data = bytearray(make(size=(100, 100)))
    frame = data.index(b"\xff\xc0")  # the baseline frame header: length, precision, height, width
    data[frame + 5:frame + 9] = (7000).to_bytes(2, "big") + (7000).to_bytes(2, "big")
    path = tmp_path / kind
    path.write_bytes(data)
    measured = subprocess.run(  # a process of its own: its peak resident memory (VmHWM) is this read's
        [sys.executable, "-c", "import sys, time\n"
         "import PIL.Image, PIL.JpegImagePlugin\n"
         "from mnist_gpu.images import load_digit\nfrom mnist_gpu.errors import ImageError\n"
         "start = time.perf_counter()\n"
         "try:\n    load_digit(sys.argv[1])\nexcept ImageError as error:\n    print(error)\n"
         "print(time.perf_counter() - start)\n"
         "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])\n",
         str(path)],
        capture_output=True, text=True, timeout=120)
    message, seconds, kilobytes = measured.stdout.splitlines()
    assert message == (f"{path}: its header says 7000 x 7000 pixels, more than its {len(data)} bytes of JPEG data "
                       "can hold (at most 1024 pixels a byte); the file is damaged")
    assert float(seconds) < 1.0 and int(kilobytes) < 200_000  # it took 3.6 s and 428 MB


def test_a_real_photo_sized_jpeg_still_reads(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(digit_jpeg(size=(2400, 1800), noise=12.0))
    start = time.perf_counter()
    assert load_digit(path).shape == (28, 28)
    assert time.perf_counter() - start < 10


def test_a_0_by_0_picture_is_the_image_error(trained):
    classifier = mnist_gpu.load_checkpoint(str(trained), backend="numpy")
    with pytest.raises(mnist_gpu.ImageError, match=r"^the image: no pixels \(0 x 0\)$"):
        classifier.predict(Image.new("L", (0, 0)))
    with pytest.raises(mnist_gpu.ImageError, match=r"no pixels \(5 x 0\)"):
        classifier.predict([Image.new("RGB", (5, 0))])
