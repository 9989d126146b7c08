"""Only regular files are read as files: a FIFO, /dev/zero or a socket given as an image, a checkpoint, a state file
or a data file gets one line naming it, at once, with nothing read; in the data cache it is simply not used.

The special files are real: FIFOs (os.mkfifo) with a writer behind them that never stops, so that a reader that
reads grows without bound (as `mnist-gpu predict` on a FIFO did: 0.8 -> 3.5 GB in 12 s); links to the real
/dev/zero; AF_UNIX sockets bound in the folder. Each command runs in a process of its own, under a timeout (a
reader that waits on a FIFO is a failed test, not a stuck suite), which reports how long its main() took and its
peak memory.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu.idx_files import DATASETS

KINDS = ("fifo", "zero", "socket")
WHAT = {"fifo": "a FIFO", "zero": "a character device", "socket": "a socket"}
FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--seed", "1"]
AT_ONCE = 1.0  # seconds main() may take to refuse
GROWTH_KB = 50 * 1024  # peak memory above the same command given a missing file: no read happened
MEASURED = """
import resource, sys, time
from mnist_gpu.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print(f"measured {time.perf_counter() - started:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}",
      file=sys.stderr)
sys.exit(code)
"""


class Specials:
    """Makes real special files, and stops what they need (their writers, their sockets) when the test ends."""

    def __init__(self):
        self.writers, self.sockets = [], []

    def make(self, kind, path):
        path = str(path)
        if kind == "fifo":
            os.mkfifo(path)
            # A writer that never stops: it waits for a reader, then feeds it zeros for as long as it reads.
            self.writers.append(subprocess.Popen(["sh", "-c", 'exec cat /dev/zero > "$1"', "sh", path]))
        elif kind == "zero":
            os.symlink("/dev/zero", path)
        else:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            here = os.getcwd()
            os.chdir(os.path.dirname(path))  # a socket's path is limited to 107 bytes: bind the bare name
            try:
                listener.bind(os.path.basename(path))
            finally:
                os.chdir(here)
            listener.listen()
            self.sockets.append(listener)
        return path

    def close(self):
        for writer in self.writers:
            writer.kill()
            writer.wait(timeout=30)
        for listener in self.sockets:
            listener.close()


@pytest.fixture
def specials():
    made = Specials()
    yield made
    made.close()


def run_cli(*arguments, stdin=subprocess.DEVNULL):
    """(exit code, stdout lines, stderr lines, seconds main() took, peak memory in kB) of the command line."""
    done = subprocess.run([sys.executable, "-c", MEASURED, *arguments], capture_output=True, text=True, timeout=120,
                          stdin=stdin)
    *errors, measured = done.stderr.splitlines() or [""]
    assert measured.startswith("measured "), done.stderr
    seconds, peak = measured.split()[1:]
    return done.returncode, done.stdout.splitlines(), errors, float(seconds), int(peak)


def refused_at_once(arguments, special, missing, expected_line):
    """The command with `special` in it fails with exit 1 and one error line, within AT_ONCE seconds of the same
    command failing with `missing` (a missing or small bad file) in its place, with no more memory than it. (Against
    that command, not the clock alone: a predict refusing a FIFO took 1.8 s once on a loaded machine.)"""
    code, lines, errors, seconds, peak = run_cli(*arguments)
    assert code == 1 and lines == [], (lines, errors)
    failures = [line for line in errors if line.startswith("mnist-gpu: error: ")]
    assert failures == [expected_line] and "Traceback" not in "\n".join(errors), errors
    baseline = run_cli(*[missing if argument == special else argument for argument in arguments])
    assert baseline[0] == 1, baseline
    assert seconds < baseline[3] + AT_ONCE, (seconds, baseline[3])
    assert peak - baseline[4] < GROWTH_KB, (peak, baseline[4])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A log_dir holding one checkpoint (model.ckpt-0.safetensors), and a picture of a digit."""
    folder = tmp_path_factory.mktemp("trained")
    log_dir = folder / "run"
    code, _, errors, _, _ = run_cli(*FAST, "--max_steps", "1", "--log_dir", str(log_dir))
    assert code == 0, errors
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a one
    Image.fromarray(digit).save(folder / "one.png")
    return log_dir, str(folder / "one.png")


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_file_given_as_an_image_is_one_line_at_once(kind, trained, tmp_path, specials):
    log_dir, _ = trained
    image = specials.make(kind, tmp_path / "digit.png")
    refused_at_once(["predict", "--backend", "numpy", "--checkpoint", str(log_dir), image], image,
                    str(tmp_path / "missing.png"),
                    f"mnist-gpu: error: {image}: {WHAT[kind]}, not a regular file; nothing was read")


def test_dev_zero_and_dev_stdin_as_images_are_named_for_what_they_are(trained, tmp_path):
    """The issue's cases: /dev/zero was reported "empty (0 bytes)", and /dev/stdin fed by a pipe read without end."""
    log_dir, one = trained
    feeder = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)
    try:
        code, lines, errors, seconds, _ = run_cli("predict", "--backend", "numpy", "--checkpoint", str(log_dir),
                                                  "/dev/zero", "/dev/stdin", one, stdin=feeder.stdout)
    finally:
        feeder.kill()
        feeder.wait(timeout=30)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"{one}: "), (lines, errors)  # the good one
    assert errors[1:] == ["mnist-gpu: error: /dev/zero: a character device, not a regular file; nothing was read",
                          "mnist-gpu: error: /dev/stdin: a FIFO, not a regular file; nothing was read"], errors
    assert seconds < AT_ONCE


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_special_file_given_as_a_checkpoint_is_one_line_at_once(kind, command, trained, tmp_path, specials):
    _, one = trained
    path = specials.make(kind, tmp_path / "model.ckpt-0.safetensors")
    arguments = [command, "--backend", "numpy", "--checkpoint", path] + ([one] if command == "predict" else [])
    refused_at_once(arguments, path, str(tmp_path / "missing.safetensors"),
                    f"mnist-gpu: error: {path}: {WHAT[kind]}, not a regular file; nothing was read")


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_state_file_is_one_line_at_once_for_eval_and_resume(kind, trained, tmp_path, specials):
    run = shutil.copytree(trained[0], tmp_path / "run")
    os.remove(run / checkpoints.STATE_FILE)
    state = specials.make(kind, run / checkpoints.STATE_FILE)
    before = sorted(os.listdir(run))
    expected = f"mnist-gpu: error: {state}: the state file is {WHAT[kind]}, not a regular file; nothing was read"
    for arguments in (["eval", "--backend", "numpy", "--checkpoint", str(run)],
                      [*FAST, "--log_dir", str(run), "--resume", "--max_steps", "5"]):
        code, lines, errors, seconds, _ = run_cli(*arguments)
        assert code == 1 and lines == [] and errors[-1:] == [expected], errors
        assert seconds < AT_ONCE
    assert sorted(os.listdir(run)) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_file_listed_as_the_checkpoint_is_skipped_unread(kind, trained, tmp_path, specials):
    """A name from the state file: never followed through a link (the link to /dev/zero), never read if not a
    regular file."""
    run = shutil.copytree(trained[0], tmp_path / "run")
    os.remove(run / "model.ckpt-0.safetensors")
    path = specials.make(kind, run / "model.ckpt-0.safetensors")
    why = "a link, not a checkpoint file of this folder; not opened" if kind == "zero" else \
        f"{WHAT[kind]}, not a regular file; nothing was read"
    code, lines, errors, seconds, _ = run_cli("eval", "--backend", "numpy", "--checkpoint", str(run))
    assert code == 1 and lines == []
    assert errors[-1] == f"mnist-gpu: error: {run}: no valid checkpoint to use ({path}: {why})", errors
    assert seconds < AT_ONCE


@pytest.fixture
def data_dir(tmp_path, mnist_dir):
    """An --input_data_dir of links to the four real MNIST files."""
    folder = tmp_path / "data"
    folder.mkdir()
    for expected in DATASETS["mnist"].values():
        os.symlink(os.path.realpath(os.path.join(mnist_dir, expected.name)), folder / expected.name)
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_data_file_is_one_line_at_once(kind, data_dir, tmp_path, specials):
    name = DATASETS["mnist"]["train_images"].name
    junk = shutil.copytree(data_dir, tmp_path / "junk", symlinks=True)  # the baseline: a small bad file instead
    os.remove(junk / name)
    (junk / name).write_bytes(b"<html>not found</html>")
    os.remove(data_dir / name)
    path = specials.make(kind, data_dir / name)
    refused_at_once(["--backend", "numpy", "--input_data_dir", str(data_dir), "--log_dir", str(tmp_path / "run"),
                     "--max_steps", "0"], str(data_dir), str(junk),
                    f"mnist-gpu: error: {path}: {WHAT[kind]}, not a regular file; nothing was read. Delete or "
                    "replace this file to fetch a good copy.")


@pytest.fixture(scope="module")
def cached_data(tmp_path_factory, mnist_dir):
    """An --input_data_dir of links to the real MNIST files whose cache a run has just built, and that run's peak."""
    folder = tmp_path_factory.mktemp("cached") / "data"
    folder.mkdir()
    for expected in DATASETS["mnist"].values():
        os.symlink(os.path.realpath(os.path.join(mnist_dir, expected.name)), folder / expected.name)
    code, _, errors, _, peak = run_cli("--backend", "numpy", "--input_data_dir", str(folder), "--max_steps", "0")
    assert code == 0, errors
    return folder, peak


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_file_in_the_data_cache_is_not_used_but_rebuilt(kind, cached_data, tmp_path, specials):
    """A cached array and a record that are FIFOs, links to /dev/zero or sockets: the run neither waits nor reads
    them; it decompresses the verified source again, as for any bad cache, and writes a real cache in their place."""
    built, peak_building = cached_data
    data_dir = shutil.copytree(built, tmp_path / "data", symlinks=True)
    cache = data_dir / "cache" / "mnist"
    array = cache / "train-images-idx3-ubyte.npy"
    record = cache / "train-labels-idx1-ubyte.npy.json"
    assert json.loads(record.read_text())["md5"] == DATASETS["mnist"]["train_labels"].md5  # a record that was valid
    for path in (array, record):
        os.remove(path)
        specials.make(kind, path)
    code, lines, errors, _, peak = run_cli("--backend", "numpy", "--input_data_dir", str(data_dir), "--max_steps", "0")
    assert code == 0 and not [line for line in errors if "error" in line], errors
    assert os.path.isfile(array) and not os.path.islink(array) and os.path.isfile(record)
    assert json.loads(record.read_text())["md5"] == DATASETS["mnist"]["train_labels"].md5
    assert peak - peak_building < GROWTH_KB, (peak, peak_building)
