"""Checkpoint files: exact round trips, the state file, pruning, damage detection, crash safety."""
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import model as mnist
from mnist_gpu.checkpoint import Checkpoint, Saver
from mnist_gpu.errors import CheckpointError

from helpers import as_nobody, run_main


def sample_checkpoint(global_step=1000, seed=0):
    generator = np.random.default_rng(seed)
    variables = mnist.initial_variables(5, 4, seed=seed)
    variables["hidden1/biases"] = generator.standard_normal(5).astype(np.float32)
    # A transposed (non-contiguous) view: safetensors 0.8.0 would silently write it wrongly.
    variables["softmax_linear/weights"] = np.asfortranarray(variables["softmax_linear/weights"])
    assert not variables["softmax_linear/weights"].flags.c_contiguous
    order = generator.permutation(10000)  # the fake training set's rows
    position = {"index_in_epoch": 7, "epochs_completed": 2, "generator": generator.bit_generator.state}
    flags = {"hidden1": 5, "hidden2": 4, "batch_size": 3, "learning_rate": 0.01, "seed": seed,
             "dataset": "mnist", "fake_data": True}
    return Checkpoint(variables, global_step, flags, order, position)


def test_round_trip_is_exact(tmp_path):
    saved = sample_checkpoint()
    path = str(tmp_path / "model.ckpt-999.safetensors")
    checkpoints.write(path, saved)
    loaded = checkpoints.read(path)
    assert set(loaded.variables) == set(saved.variables)
    for name, value in saved.variables.items():
        assert loaded.variables[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.variables[name], value, err_msg=name)
    assert loaded.global_step == 1000
    np.testing.assert_array_equal(loaded.data_order, saved.data_order)
    assert loaded.data_position == saved.data_position
    assert loaded.flags == saved.flags
    assert loaded.path == path


def test_state_file_format_and_pruning(tmp_path):
    saver = Saver(str(tmp_path), max_to_keep=3)
    for step in (99, 199, 299, 399, 499):
        saver.save(step, sample_checkpoint(step + 1))
    assert (tmp_path / "checkpoint").read_text() == (
        'model_checkpoint_path: "model.ckpt-499.safetensors"\n'
        'all_model_checkpoint_paths: "model.ckpt-299.safetensors"\n'
        'all_model_checkpoint_paths: "model.ckpt-399.safetensors"\n'
        'all_model_checkpoint_paths: "model.ckpt-499.safetensors"\n')
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.ckpt-299.safetensors",
                                            "model.ckpt-399.safetensors", "model.ckpt-499.safetensors"]
    latest, skipped = saver.latest()
    assert latest.global_step == 500 and skipped == []


def test_saving_the_same_step_again_keeps_one_entry(tmp_path):
    saver = Saver(str(tmp_path))
    saver.save(9, sample_checkpoint(10))
    saver.save(9, sample_checkpoint(10, seed=1))
    assert checkpoints.read_state(str(tmp_path)) == ["model.ckpt-9.safetensors"]


def damage(path, offset_from_end, length=1):
    data = bytearray(open(path, "rb").read())
    for index in range(len(data) - offset_from_end, len(data) - offset_from_end + length):
        data[index] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_flipped_tensor_byte_is_a_hash_mismatch(tmp_path):
    path = str(tmp_path / "model.ckpt-1.safetensors")
    checkpoints.write(path, sample_checkpoint())
    damage(path, 10)
    with pytest.raises(CheckpointError, match=r"model\.ckpt-1\.safetensors: hash mismatch"):
        checkpoints.read(path)


def test_edited_metadata_is_a_hash_mismatch(tmp_path):
    path = str(tmp_path / "model.ckpt-1.safetensors")
    checkpoints.write(path, sample_checkpoint())
    data = open(path, "rb").read()
    edited = data.replace(b'\\"hidden1\\": 5', b'\\"hidden1\\": 6')
    assert edited != data
    open(path, "wb").write(edited)
    with pytest.raises(CheckpointError, match="hash mismatch"):
        checkpoints.read(path)


@pytest.mark.parametrize("content, message", [
    (None, "checkpoint file not found"),
    (b"", "not a readable safetensors checkpoint"),
    (pickle.dumps({"hidden1/weights": [1.0]}), "not a readable safetensors checkpoint"),
])
def test_missing_empty_or_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "model.ckpt-1.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoints.read(str(path))


def test_truncated_file_is_refused(tmp_path):
    path = str(tmp_path / "model.ckpt-1.safetensors")
    checkpoints.write(path, sample_checkpoint())
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        checkpoints.read(path)


def test_latest_skips_a_damaged_newest_checkpoint(tmp_path):
    saver = Saver(str(tmp_path))
    saver.save(1, sample_checkpoint(2))
    saver.save(3, sample_checkpoint(4))
    damage(str(tmp_path / "model.ckpt-3.safetensors"), 5)
    latest, skipped = saver.latest()
    assert latest.global_step == 2
    assert len(skipped) == 1 and "model.ckpt-3.safetensors: hash mismatch" in skipped[0]
    damage(str(tmp_path / "model.ckpt-1.safetensors"), 5)
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        saver.latest()


# A training run SIGKILLed (for real: no handler, no `finally` runs) at a chosen moment of its second save: the hook
# below only picks the moment. The kill leaves what a kill leaves; the run resumed from it ends as an unkilled one.
KILLED_AT = """
import os, signal, sys
import safetensors.numpy
from mnist_gpu import checkpoint
from mnist_gpu.cli import main

saves = []
def kill():
    os.kill(os.getpid(), signal.SIGKILL)
def save_file(tensors, filename, metadata=None, real=safetensors.numpy.save_file):
    saves.append(filename)
    real(tensors, filename, metadata)
    if len(saves) == 2 and sys.argv[1] == "mid-write":  # half of the file written
        os.truncate(filename, os.path.getsize(filename) // 2)
        kill()
def write_bytes_durably(path, data, real=checkpoint.write_bytes_durably):
    if len(saves) == 2 and sys.argv[1] == "before the commit":  # the new file whole, the state file not yet written
        kill()
    real(path, data)
safetensors.numpy.save_file, checkpoint.write_bytes_durably = save_file, write_bytes_durably
sys.exit(main(sys.argv[2:]))
"""
TINY_RUN = ["--fake_data", "--backend", "numpy", "--hidden1", "5", "--hidden2", "4", "--batch_size", "3", "--seed", "2",
            "--max_steps", "3", "--eval_every", "1"]  # saves at steps 0, 1, 2


@pytest.mark.parametrize("moment", ["mid-write", "before the commit"])
def test_a_run_killed_during_a_save_keeps_its_previous_checkpoint_and_resumes_exactly(tmp_path, capsys, moment):
    assert run_main(capsys, *TINY_RUN, "--log_dir", str(tmp_path / "whole"))[0] == 0
    killed = tmp_path / "killed"
    process = subprocess.run([sys.executable, "-c", KILLED_AT, moment, *TINY_RUN, "--log_dir", str(killed)],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert checkpoints.read_state(str(killed)) == ["model.ckpt-0.safetensors"]  # the kill left step 0 committed
    left = sorted(set(os.listdir(killed)) - {"checkpoint", "model.ckpt-0.safetensors"})
    if moment == "mid-write":
        assert [name for name in left if name.endswith(".part")] == [name for name in left if "ckpt-1" in name]
    else:
        assert "model.ckpt-1.safetensors" in left  # whole, and not listed: never used
    assert Saver(str(killed)).latest()[0].global_step == 1  # model.ckpt-0: after the first step
    code, _, error = run_main(capsys, *TINY_RUN, "--log_dir", str(killed), "--resume")
    assert code == 0 and "resuming from step 1" in error, error
    assert not [name for name in os.listdir(killed) if name.endswith(".part")]
    whole, resumed = (Saver(str(folder)).latest()[0] for folder in (tmp_path / "whole", killed))
    assert resumed.global_step == whole.global_step == 3
    for name, value in whole.variables.items():
        np.testing.assert_array_equal(resumed.variables[name].view(np.uint32), value.view(np.uint32), err_msg=name)


def test_a_checkpoint_flag_accepts_a_file_or_a_log_dir(tmp_path):
    from mnist_gpu.runs import find_checkpoint

    saver = Saver(str(tmp_path))
    saver.save(1, sample_checkpoint(2))
    saver.save(3, sample_checkpoint(4))
    notes = []
    assert find_checkpoint(str(tmp_path), notes.append).global_step == 4
    assert find_checkpoint(str(tmp_path / "model.ckpt-1.safetensors"), notes.append).global_step == 2
    assert notes == []


def test_a_listed_checkpoint_that_is_a_link_is_not_opened(tmp_path):
    """A name from the state file leads nowhere outside its folder, a link's target included."""
    elsewhere, run = tmp_path / "elsewhere", tmp_path / "run"
    elsewhere.mkdir()
    run.mkdir()
    Saver(str(elsewhere)).save(5, sample_checkpoint(6))
    saver = Saver(str(run))
    saver.save(1, sample_checkpoint(2))
    saver.save(3, sample_checkpoint(4))
    (run / "model.ckpt-3.safetensors").unlink()
    (run / "model.ckpt-3.safetensors").symlink_to(elsewhere / "model.ckpt-5.safetensors")
    latest, skipped = saver.latest()
    assert latest.global_step == 2
    assert skipped == [f"{run / 'model.ckpt-3.safetensors'}: a link, not a checkpoint file of this folder; not opened"]


def read_as_nobody(path):
    """What checkpoints.read says of `path` in a child process of the user nobody: a real permission fault."""
    def read():
        try:
            checkpoints.read(str(path))
            return "read"
        except checkpoints.CheckpointError as error:
            return str(error)

    return as_nobody(read)


def test_a_checkpoint_that_may_not_be_read_is_reported_as_such():
    """A checkpoint only root may read, and one in a folder only root may enter, read by the user nobody.
    safetensors said "No such file or directory" of the first, and the second was "not found"."""
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root (CI runs as root)")
    folder = tempfile.mkdtemp()  # in the shared temporary folder: nobody can reach it (pytest's own is 0700)
    try:
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "model.ckpt-999.safetensors")
        checkpoints.write(path, sample_checkpoint())
        os.chmod(path, 0o600)
        assert read_as_nobody(path) == f"{path}: cannot be read: Permission denied"
        os.chmod(path, 0o644)
        assert read_as_nobody(path) == "read"
        os.chmod(folder, 0o700)
        assert read_as_nobody(path) == f"{path}: cannot be read: Permission denied"
    finally:
        shutil.rmtree(folder)


def test_saves_on_many_threads_leave_the_umask_and_give_each_file_its_mode(tmp_path):
    """16 threads replacing files at once, thread switches as often as Python allows: each file gets 0666 less the
    umask and the umask stays as it was. (Reading the umask meant setting it to 0 for a moment: two threads at once
    gave files 0666 or left the process's umask at 0 for good.)"""
    from mnist_gpu.durable import write_atomically

    previous_umask, previous_interval = os.umask(0o022), sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    modes = []

    def save(thread):
        for _ in range(100):
            path = tmp_path / f"file{thread}"
            write_atomically(str(path), lambda stream: stream.write(b"x"), sync=False)
            modes.append(stat.S_IMODE(os.stat(path).st_mode))

    try:
        threads = [threading.Thread(target=save, args=(thread,)) for thread in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = os.umask(0o022)
    finally:
        sys.setswitchinterval(previous_interval)
        os.umask(previous_umask)
    assert after == 0o022 and len(modes) == 1600 and set(modes) == {0o644}
