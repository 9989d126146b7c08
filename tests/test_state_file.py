"""The state file `log_dir/checkpoint` is plain text anyone can edit: the names it holds never lead outside its folder,
and pruning deletes only files it can prove are this run's own checkpoints."""
import os
import shutil

import pytest

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu.errors import CheckpointError

from helpers import one_error_line, run_main, snapshot

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--seed", "1"]


@pytest.fixture
def run(tmp_path, capsys):
    """A run at step 1000 (model.ckpt-999) in tmp_path/run."""
    log_dir = tmp_path / "run"
    assert run_main(capsys, *FAST, "--log_dir", str(log_dir), "--max_steps", "1000")[0] == 0
    return log_dir


def add_entry(log_dir, name):
    with open(log_dir / "checkpoint", "a") as stream:
        stream.write(f'all_model_checkpoint_paths: "{name}"\n')


@pytest.mark.parametrize("entry", ["{victim}", "../victim.txt", "sub/../../victim.txt"])
def test_a_state_file_entry_cannot_make_resume_delete_a_file(run, tmp_path, capsys, entry):
    """The issue's report: a line naming /some/where/victim.txt, then --resume --max_to_keep 1, deleted it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    name = entry.format(victim=victim)
    state = (run / "checkpoint").read_text()
    (run / "checkpoint").write_text(state.replace('all_model', f'all_model_checkpoint_paths: "{name}"\nall_model', 1))
    before = snapshot(run)
    code, lines, error = run_main(capsys, *FAST, "--log_dir", str(run), "--resume", "--max_steps", "2000",
                                  "--max_to_keep", "1")
    assert victim.read_text() == "precious"
    assert code == 1 and lines == []
    assert one_error_line(error) == (f"mnist-gpu: error: {run / 'checkpoint'}: line 2 names {name!r}, not a checkpoint "
                                     "of this folder (model.ckpt-<step>.safetensors); nothing it names is opened or "
                                     "deleted")
    assert snapshot(run) == before


def test_eval_does_not_open_a_checkpoint_the_state_file_names_elsewhere(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run, elsewhere)
    outside = elsewhere / "model.ckpt-999.safetensors"
    (run / "checkpoint").write_text(checkpoints.state_text([str(outside)]))
    os.remove(run / "model.ckpt-999.safetensors")
    code, lines, error = run_main(capsys, "eval", "--checkpoint", str(run), "--backend", "numpy")
    assert code == 1 and lines == []  # not "Evaluating .../elsewhere/model.ckpt-999.safetensors"
    assert one_error_line(error).startswith(f"mnist-gpu: error: {run / 'checkpoint'}: line 1 names {str(outside)!r}")


def test_pruning_deletes_only_this_runs_own_checkpoints(run, tmp_path, capsys):
    """Plain names, but not provably ours: a link to a file elsewhere, a file that is no checkpoint, another run's."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, run / "model.ckpt-5.safetensors")
    (run / "model.ckpt-6.safetensors").write_text("notes, not a checkpoint")
    other = tmp_path / "other"
    assert run_main(capsys, *FAST, "--seed", "2", "--log_dir", str(other), "--max_steps", "8")[0] == 0
    shutil.copy(other / "model.ckpt-7.safetensors", run / "model.ckpt-7.safetensors")
    listed = ["model.ckpt-5.safetensors", "model.ckpt-6.safetensors", "model.ckpt-7.safetensors",
              "model.ckpt-999.safetensors"]
    (run / "checkpoint").write_text(checkpoints.state_text(listed))
    code, _, error = run_main(capsys, *FAST, "--log_dir", str(run), "--resume", "--max_steps", "2000",
                              "--max_to_keep", "1")
    assert code == 0, error
    assert checkpoints.read_state(str(run)) == ["model.ckpt-1999.safetensors"]
    assert not (run / "model.ckpt-999.safetensors").exists()  # this run's: pruned
    assert victim.read_text() == "precious" and os.path.islink(run / "model.ckpt-5.safetensors")
    assert (run / "model.ckpt-6.safetensors").read_text() == "notes, not a checkpoint"
    assert checkpoints.read(str(run / "model.ckpt-7.safetensors")).flags["seed"] == 2
    for name in listed[:3]:
        assert (f"mnist-gpu: left {run / name} in place: it is no longer listed, but not provably a checkpoint of "
                "this run") in error.splitlines()


@pytest.mark.parametrize("text, message", [
    ('model_checkpoint_path: "model.ckpt-1.safetensors"\nall_model_checkpoint_paths: "model.ckpt-1.safetensors"\n'
     "rm -rf /\n", "line 3 is not a checkpoint entry: 'rm -rf /'"),
    ('model_checkpoint_path: "model.ckpt-2.safetensors"\nall_model_checkpoint_paths: "model.ckpt-1.safetensors"\n',
     "model_checkpoint_path is 'model.ckpt-2.safetensors' but the last of all_model_checkpoint_paths is "
     "'model.ckpt-1.safetensors'; they must agree"),
    ('model_checkpoint_path: "model.ckpt-1.safetensors"\n', "model_checkpoint_path is 'model.ckpt-1.safetensors' but "
     "the last of all_model_checkpoint_paths is None; they must agree"),
    ('model_checkpoint_path: "model.ckpt-1.safetensors"\nall_model_checkpoint_paths: "model.ckpt-1.safetensors"\n'
     'all_model_checkpoint_paths: "model.ckpt-1.safetensors"\n', "line 3 repeats all_model_checkpoint_paths "
     "'model.ckpt-1.safetensors'"),
    ('all_model_checkpoint_paths: "model.ckpt-01.safetensors"\n', "line 1 names 'model.ckpt-01.safetensors', not a "
     "checkpoint of this folder"),
    ('all_model_checkpoint_paths: "model.ckpt-1.safetensors\x00.txt"\n', "line 1 names 'model.ckpt-1.safetensors\\x00"
     ".txt', not a checkpoint of this folder"),
    (b"\xff\xfe", "the state file is not UTF-8 text"),
])
def test_a_state_file_that_is_not_ours_is_refused_naming_the_file_and_the_line(tmp_path, text, message):
    (tmp_path / "checkpoint").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CheckpointError) as error:
        checkpoints.read_state(str(tmp_path))
    assert str(error.value).startswith(f"{tmp_path / 'checkpoint'}: {message}")
    assert "\n" not in str(error.value)


def test_the_state_file_the_saver_writes_reads_back(tmp_path):
    names = [checkpoints.checkpoint_name(step) for step in (0, 999, 1999)]
    (tmp_path / "checkpoint").write_text(checkpoints.state_text(names))
    assert checkpoints.read_state(str(tmp_path)) == names
    (tmp_path / "checkpoint").write_text("")
    assert checkpoints.read_state(str(tmp_path)) == []
