"""A full disk, for real: every writer (checkpoint, state file, event file, data cache, download) on a small tmpfs.

Each test mounts its own tmpfs (helpers.small_filesystem; skipped where it cannot be mounted), so
the error is whatever the kernel and the libraries really raise (safetensors: SafetensorError, not
OSError). What must hold: one line `mnist-gpu: error: ...` naming the file and why, the previous
checkpoint still listed and loadable, and no temporary file left behind.
"""
import os
import struct
import subprocess

import numpy as np
import pytest

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import data_cache
from mnist_gpu.errors import WriteError
from mnist_gpu.idx_files import DATASETS
from mnist_gpu.input_data import read_data_sets

from helpers import fill_leaving, one_error_line, pages, run_main, small_filesystem

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--seed", "1"]


def temporaries(folder):
    return [name for name in os.listdir(folder) if name.endswith(".part")]


@pytest.mark.slow
def test_disk_full_at_the_second_checkpoint(tmp_path, capsys, mnist_dir):
    """The tutorial's default run on a 1.1 MB file system: the first checkpoint (640 KB) fits, the second does not."""
    with small_filesystem(tmp_path / "full") as full:
        log_dir = full / "run"
        code, lines, error = run_main(capsys, "--input_data_dir", mnist_dir, "--backend", "numpy", "--seed", "1",
                                      "--log_dir", str(log_dir))
        assert code == 1
        assert one_error_line(error) == (f"mnist-gpu: error: saving {log_dir / 'model.ckpt-1999.safetensors'} failed: "
                                         "No space left on device; the newest saved checkpoint is still "
                                         "model.ckpt-999.safetensors")
        assert lines[-1].startswith("Step 1900: ")  # it stopped there, before evaluating
        assert checkpoints.read_state(str(log_dir)) == ["model.ckpt-999.safetensors"]
        assert checkpoints.Saver(str(log_dir)).latest()[0].global_step == 1000  # listed and loadable
        assert sorted(name for name in os.listdir(log_dir) if not name.startswith("events.")) == \
            ["checkpoint", "model.ckpt-999.safetensors"]  # no temporary, no half checkpoint


def checkpoint_pages(tmp_path, capsys, *flags):
    """How many pages the checkpoint of a run with these flags takes (a run with the same flags is the same size)."""
    log_dir = tmp_path / "measure"
    assert run_main(capsys, *FAST, "--log_dir", str(log_dir), *flags)[0] == 0
    latest = checkpoints.Saver(str(log_dir)).latest()[0]
    return pages(os.path.getsize(latest.path))


def flushed_before_commit(log_dir, step):
    """The bytes of log_dir's newest event file up to step `step`'s histograms: what a run writes there before it
    commits that step's checkpoint (trainer.py flushes its events first)."""
    from tensorboardX.proto import event_pb2

    newest = max(name for name in os.listdir(log_dir) if name.startswith("events."))
    data, offset, end = open(os.path.join(log_dir, newest), "rb").read(), 0, 0
    while offset < len(data):  # TFRecords: length (8 bytes), its CRC (4), the event, its CRC (4)
        length = struct.unpack("<Q", data[offset:offset + 8])[0]
        event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        if event.step == step and any(value.HasField("histo") for value in event.summary.value):
            end = offset
    return end


def test_disk_full_at_the_state_file_leaves_no_unlisted_checkpoint(tmp_path, capsys):
    """Room for the second checkpoint and the events before it, not for the state file that commits it: the first
    checkpoint stays current."""
    size = checkpoint_pages(tmp_path, capsys, "--max_steps", "1000")
    measured = tmp_path / "meas" / "run"  # a path as long as the test's: the run's record (an event) names it
    assert run_main(capsys, *FAST, "--log_dir", str(measured), "--max_steps", "1000")[0] == 0
    assert run_main(capsys, *FAST, "--log_dir", str(measured), "--resume", "--max_steps", "2000")[0] == 0
    events = pages(flushed_before_commit(measured, 1999))
    with small_filesystem(tmp_path / "full", size=f"{(3 * size + events + 8) * 4}k") as full:
        log_dir = full / "run"
        assert run_main(capsys, *FAST, "--log_dir", str(log_dir), "--max_steps", "1000")[0] == 0
        fill_leaving(full, size + events)  # the events and the next checkpoint fit exactly; the state file does not
        code, _, error = run_main(capsys, *FAST, "--log_dir", str(log_dir), "--resume", "--max_steps", "2000")
        assert code == 1
        assert one_error_line(error) == (f"mnist-gpu: error: saving {log_dir / 'checkpoint'} failed: No space left "
                                         "on device; the newest saved checkpoint is still model.ckpt-999.safetensors")
        assert checkpoints.read_state(str(log_dir)) == ["model.ckpt-999.safetensors"]
        assert checkpoints.Saver(str(log_dir)).latest()[0].global_step == 1000
        assert sorted(name for name in os.listdir(log_dir) if not name.startswith("events.")) == \
            ["checkpoint", "model.ckpt-999.safetensors"]


def test_disk_full_while_writing_events(tmp_path, capsys):
    """No room for the events a resumed run flushes before its checkpoint of step 1999: it stops there, and the
    checkpoint of step 999 stays the newest (no checkpoint is committed before its events are on disk)."""
    with small_filesystem(tmp_path / "full") as full:
        log_dir = full / "run"
        assert run_main(capsys, *FAST, "--log_dir", str(log_dir), "--max_steps", "1000")[0] == 0
        fill_leaving(full, 0)
        code, lines, error = run_main(capsys, *FAST, "--log_dir", str(log_dir), "--resume", "--max_steps", "2000")
        assert code == 1
        assert one_error_line(error) == (f"mnist-gpu: error: writing TensorBoard events in {log_dir} failed: No "
                                         "space left on device; the checkpoints saved so far are intact")
        assert lines[-1].startswith("Step 1900: ")  # step 1999's events found the disk full, before its checkpoint
        assert checkpoints.read_state(str(log_dir)) == ["model.ckpt-999.safetensors"]
        assert checkpoints.Saver(str(log_dir)).latest()[0].global_step == 1000
        assert temporaries(log_dir) == []


def test_a_full_disk_for_the_data_cache_costs_speed_not_correctness(tmp_path, mnist_dir):
    """The cache of the 47 MB training images cannot be written to a 1.1 MB input_data_dir: the data is still right."""
    with small_filesystem(tmp_path / "full") as full:
        first = read_data_sets(str(full))  # the shipped copy, cached where it fits
        second = read_data_sets(str(full))
        reference = read_data_sets(mnist_dir)
        for data_sets in (first, second):
            for split in ("train", "validation", "test"):
                np.testing.assert_array_equal(getattr(data_sets, split).pixels, getattr(reference, split).pixels)
                np.testing.assert_array_equal(getattr(data_sets, split).labels, getattr(reference, split).labels)
        cache = full / "cache" / "mnist"
        assert temporaries(cache) == []
        images = DATASETS["mnist"]["train_images"]
        assert not os.path.exists(data_cache.cache_path(str(full), "mnist", images))  # never half there
        labels = DATASETS["mnist"]["train_labels"]
        assert data_cache.read_record(data_cache.cache_path(str(full), "mnist", labels), labels) is not None


def test_a_full_disk_during_a_download_is_one_line_and_leaves_nothing(tmp_path, capsys, http_server, mnist_dir):
    folder, url, server = http_server
    for expected in DATASETS["mnist"].values():
        os.symlink(os.path.join(mnist_dir, expected.name), folder / expected.name)
    with small_filesystem(tmp_path / "full") as full:
        code, _, error = run_main(capsys, "--source_url", url, "--input_data_dir", str(full), "--backend", "numpy",
                                  "--log_dir", str(tmp_path / "run"))
        assert code == 1
        destination = full / "train-images-idx3-ubyte.gz"
        assert one_error_line(error) == (f"mnist-gpu: error: saving the download {destination} failed: No space left "
                                         "on device; nothing was left in its place")
        assert server.requests == ["/train-images-idx3-ubyte.gz"]  # a full disk is not retried, nor other mirrors
        assert os.listdir(full) == []
        assert not (tmp_path / "run").exists()


def test_a_full_disk_during_a_download_from_python(tmp_path, http_server, mnist_dir):
    from mnist_gpu import download

    folder, url, _ = http_server
    labels = DATASETS["mnist"]["train_labels"]
    os.symlink(os.path.join(mnist_dir, labels.name), folder / labels.name)
    with small_filesystem(tmp_path / "full", size="16k") as full:
        with pytest.raises(WriteError, match=f"saving the download {full / labels.name} failed: No space left"):
            download.download(labels, str(full), [url], retry_wait=0)
        assert os.listdir(full) == []


def test_a_read_only_log_dir(tmp_path, capsys):
    """A real read-only file system (EROFS, from the kernel), not an injected one."""
    with small_filesystem(tmp_path / "ro") as folder:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        code, _, error = run_main(capsys, *FAST, "--log_dir", str(folder / "run"))
        assert code == 1
        assert one_error_line(error) == f"mnist-gpu: error: --log_dir {folder / 'run'} cannot be written: " \
                                        "Read-only file system"


def test_disk_full_while_eval_writes_its_report(tmp_path, capsys, mnist_dir):
    """eval --report into a folder whose file system has two pages left: the first picture does not fit."""
    run = tmp_path / "run"
    assert run_main(capsys, "--input_data_dir", mnist_dir, "--backend", "numpy", "--seed", "1", "--hidden1", "8",
                    "--hidden2", "4", "--max_steps", "100", "--log_dir", str(run))[0] == 0
    with small_filesystem(tmp_path / "full") as full:
        report = full / "report"
        report.mkdir()
        fill_leaving(full, pages=2)
        code, lines, error = run_main(capsys, "eval", "--checkpoint", str(run), "--input_data_dir", mnist_dir,
                                      "--backend", "numpy", "--report", str(report))
        assert code == 1 and lines[-1].startswith("  Num examples: 10000  Num correct: ")  # evaluated, then failed
        assert one_error_line(error) == (f"mnist-gpu: error: --report: writing {report / 'confusion_matrix.png'} "
                                         "failed: No space left on device")
        assert os.listdir(report) == []  # no temporary, no half picture
