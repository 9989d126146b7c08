"""Without --log_dir each run gets a new folder under the default root; --resume and eval find the newest."""
import os
import re
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing import event_accumulator, event_multiplexer

import mnist_gpu
from mnist_gpu import runs, trainer

from helpers import as_nobody, one_error_line, run_main, snapshot, without_timings

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4"]
FIRST_LINE = re.compile(r"mnist-gpu: training on the numpy backend \(asked for\), seed (\d+), data: fake data "
                        r"\(--fake_data\), log_dir (.*)")


@pytest.fixture
def root(tmp_path, monkeypatch):
    """The default root, under an XDG_DATA_HOME of the test's own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    return tmp_path / "mnist-gpu" / "runs"


def first_line(error):
    match = FIRST_LINE.fullmatch(error.splitlines()[0])
    assert match, error
    return match


def test_two_default_runs_in_a_row_train_into_different_folders_and_resume_picks_the_newest(root, capsys):
    """The issue's report: the front-door command worked once; the second run found the fixed folder used (exit 2)."""
    folders = []
    for _ in range(2):
        code, lines, error = run_main(capsys, *FAST, "--max_steps", "1000")
        assert code == 0, error
        assert lines[0].startswith("Step 0: ")
        folders.append(first_line(error)[2])  # the first line names the run's folder
    assert folders[0] != folders[1]
    assert [os.path.join(root, name) for name in sorted(os.listdir(root))] == folders  # sorted by start time
    for folder in folders:
        assert runs.RUN_FOLDER.fullmatch(os.path.basename(folder))
        assert mnist_gpu.load_checkpoint(folder, backend="numpy").global_step == 1000
    older = snapshot(folders[0])
    code, lines, error = run_main(capsys, *FAST, "--resume", "--max_steps", "2000")
    assert code == 0, error
    assert error.splitlines()[0] == (f"mnist-gpu: --resume without --log_dir: continuing the newest run under {root}, "
                                     f"{os.path.basename(folders[1])}")
    assert "resuming from step 1000 (model.ckpt-999.safetensors)" in error and f"log_dir {folders[1]}" in error
    assert lines[0].startswith("Step 1000: ")
    assert mnist_gpu.load_checkpoint(folders[1], backend="numpy").global_step == 2000
    assert snapshot(folders[0]) == older


def test_resume_passes_over_newer_folders_without_a_checkpoint(root, capsys):
    assert run_main(capsys, *FAST, "--max_steps", "5")[0] == 0
    (folder,) = runs.run_folders(str(root))
    empty = os.path.join(root, runs.run_folder_name(10 ** 13))  # a run killed before its first checkpoint
    os.makedirs(empty)
    code, _, error = run_main(capsys, *FAST, "--resume", "--max_steps", "10")
    assert code == 0, error
    assert error.splitlines()[0] == (f"mnist-gpu: --resume without --log_dir: continuing the newest run under {root}, "
                                     f"{os.path.basename(folder)} (1 newer folder without a run's checkpoint)")


def test_folder_names_sort_by_start_time_and_never_collide(root, monkeypatch):
    """Runs started in the same millisecond take the next ones, so the names still sort in order of start."""
    monkeypatch.setattr(runs.time, "time_ns", lambda: 1_796_000_000_123_456_789)  # the clock stands still
    made = [runs.new_run_folder(str(root), []) for _ in range(3)]
    assert [os.path.basename(path) for path in made] == ["2026-11-30_00-53-20.123Z", "2026-11-30_00-53-20.124Z",
                                                         "2026-11-30_00-53-20.125Z"]
    assert runs.run_folders(str(root)) == made
    assert runs.run_folder_name(1_796_000_000_999) < runs.run_folder_name(1_796_000_001_000)  # across a second


def test_two_default_runs_started_together_both_train(root):
    processes = [subprocess.Popen([sys.executable, "-m", "mnist_gpu", *FAST, "--max_steps", "3", "--seed", seed],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in "12"]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    folders = sorted(first_line(error)[2] for error in errors)
    assert folders[0] != folders[1] and runs.run_folders(str(root)) == folders
    assert [mnist_gpu.load_checkpoint(folder, backend="numpy").global_step for folder in folders] == [3, 3]


def test_eval_without_checkpoint_takes_the_newest_valid_checkpoint_under_the_root(root, capsys):
    for _ in range(2):
        assert run_main(capsys, *FAST, "--max_steps", "1000")[0] == 0
    older, newer = runs.run_folders(str(root))
    code, lines, _ = run_main(capsys, "eval", "--backend", "numpy")
    assert code == 0 and lines[0] == f"Evaluating {newer}/model.ckpt-999.safetensors (step 999)"
    damaged = os.path.join(newer, "model.ckpt-999.safetensors")
    with open(damaged, "r+b") as stream:
        stream.truncate(1000)
    code, lines, error = run_main(capsys, "eval", "--backend", "numpy")
    assert code == 0 and lines[0] == f"Evaluating {older}/model.ckpt-999.safetensors (step 999)"
    assert error.startswith(f"mnist-gpu: skipping a run with no valid checkpoint: {newer}: no valid checkpoint to "
                            f"use ({damaged}")


def test_resume_and_eval_take_only_real_run_folders_of_this_user(root, capsys, tmp_path):
    """A link or another user's folder named like a newer run folder is skipped with a note, never opened (the
    root is private, so only root could plant them, or an XDG_DATA_HOME in a shared folder)."""
    if os.geteuid() != 0:
        pytest.skip("making a folder of another user's needs root")
    assert run_main(capsys, *FAST, "--max_steps", "5")[0] == 0
    (mine,) = runs.run_folders(str(root))
    planted = tmp_path / "planted"
    assert run_main(capsys, *FAST, "--log_dir", str(planted), "--max_steps", "7")[0] == 0
    link = os.path.join(root, runs.run_folder_name(10 ** 13))
    os.symlink(planted, link)
    foreign = os.path.join(root, runs.run_folder_name(10 ** 13 + 1))
    os.makedirs(foreign)
    assert run_main(capsys, *FAST, "--log_dir", foreign, "--max_steps", "7")[0] == 0
    os.chown(foreign, 12345, 12345)
    code, lines, error = run_main(capsys, "eval", "--backend", "numpy")
    assert code == 0 and lines[0] == f"Evaluating {mine}/model.ckpt-4.safetensors (step 4)"
    assert error.splitlines()[:2] == [f"mnist-gpu: skipping {link}: a link, not a run folder of this user's",
                                      f"mnist-gpu: skipping {foreign}: owned by user 12345, not a run folder of this "
                                      "user's"]
    code, _, error = run_main(capsys, *FAST, "--resume", "--max_steps", "6")
    assert code == 0 and f"continuing the newest run under {root}, {os.path.basename(mine)}" in error


def test_with_no_run_under_the_root_resume_and_eval_say_so(root, capsys):
    code, _, error = run_main(capsys, *FAST, "--resume")
    assert code == 2
    assert one_error_line(error) == (f"mnist-gpu: error: --resume without --log_dir: no run under {root} has a "
                                     "checkpoint to continue from")
    code, _, error = run_main(capsys, "eval", "--backend", "numpy")
    assert code == 2
    assert one_error_line(error) == (f"mnist-gpu: error: no --checkpoint given, and no run under {root} has a "
                                     "checkpoint; pass --checkpoint with a checkpoint file or a log_dir")


def test_tensorboard_on_the_root_shows_every_run(root, capsys):
    for _ in range(2):
        assert run_main(capsys, *FAST, "--max_steps", "201")[0] == 0
    multiplexer = event_multiplexer.EventMultiplexer(size_guidance={event_accumulator.SCALARS: 0})
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    names = sorted(os.path.basename(folder) for folder in runs.run_folders(str(root)))
    assert sorted(multiplexer.Runs()) == names
    for name in names:
        assert [event.step for event in multiplexer.Scalars(name, "loss")] == [0, 100, 200]


def test_a_refused_default_run_leaves_no_folder(root, capsys):
    code, _, error = run_main(capsys, *FAST, "--cuda_graph", "on")
    assert code == 2 and "--cuda_graph on needs the cuda backend" in error
    assert runs.run_folders(str(root)) == []


def test_max_steps_0_keeps_no_run_folder(root, capsys):
    code, _, error = run_main(capsys, *FAST, "--max_steps", "0")
    assert code == 0 and error.splitlines()[-1].endswith("(no step, no checkpoint, no event file; the log_dir is "
                                                         "left as it was)")
    assert runs.run_folders(str(root)) == []
    result = mnist_gpu.train(fake_data=True, backend="numpy", hidden1=8, hidden2=4, max_steps=0, verbose=False)
    assert result.log_dir == "" and runs.run_folders(str(root)) == []


def test_train_from_python_says_where_the_run_went(root):
    result = mnist_gpu.train(fake_data=True, backend="numpy", hidden1=8, hidden2=4, max_steps=2, verbose=False)
    assert runs.run_folders(str(root)) == [result.log_dir]
    assert mnist_gpu.load_checkpoint(result.log_dir, backend="numpy").global_step == 2


def test_a_random_seed_has_at_most_10_digits_and_repeats_the_run(root, capsys):
    """The issue's report: a 39-digit seed (NumPy's SeedSequence entropy) that nobody retypes."""
    code, lines, error = run_main(capsys, *FAST, "--max_steps", "300")
    assert code == 0
    seed, folder = first_line(error).groups()
    assert len(seed) <= 10
    code, again, error = run_main(capsys, *FAST, "--max_steps", "300", "--seed", seed)
    assert code == 0 and without_timings(again) == without_timings(lines)
    repeated = mnist_gpu.load_checkpoint(first_line(error)[2], backend="numpy").model.host_variables()
    for name, value in mnist_gpu.load_checkpoint(folder, backend="numpy").model.host_variables().items():
        assert value.tobytes() == repeated[name].tobytes(), name
    drawn = {trainer.random_seed() for _ in range(1000)}
    assert len(drawn) > 990 and max(drawn) < 10 ** 10 and min(drawn) >= 0


def test_overwrite_lists_every_folder_before_it_deletes_anything():
    """--overwrite on a population whose second member folder its user may not read (mode 000, a real EACCES for a
    process of the user nobody, the folders' owner): one WriteError naming that folder, and every file still there.
    (It deleted the population's files and the first member's, then raised a PermissionError traceback.)"""
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root (CI runs as root)")
    import shutil
    import tempfile

    population = tempfile.mkdtemp(prefix="mnist-gpu-overwrite-")  # not under tmp_path: nobody must reach it
    try:
        files = ["population.json", "results.csv", "lr0.01_seed1/checkpoint", "lr0.01_seed1/model.ckpt-29.safetensors",
                 "lr0.01_seed2/checkpoint", "lr0.01_seed3/checkpoint"]
        for name in files:
            os.makedirs(os.path.join(population, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(population, name), "w") as stream:
                stream.write("x")
        for parent, folders, names in os.walk(population):
            for name in [".", *folders, *names]:
                os.chown(os.path.join(parent, name), 65534, 65534)
        os.chmod(population, 0o755)
        os.chmod(os.path.join(population, "lr0.01_seed2"), 0)
        message = as_nobody(lambda: runs.Run(population).start_writing(overwrite=True) or "deleted")
        assert message == (f"WriteError: --overwrite: {population}/lr0.01_seed2 cannot be listed (Permission denied); "
                           "nothing was deleted")
        assert all(os.path.exists(os.path.join(population, name)) for name in files)
    finally:
        os.chmod(os.path.join(population, "lr0.01_seed2"), 0o755)
        shutil.rmtree(population)


def test_a_sweeps_folder_and_a_runs_are_not_taken_for_each_other(root, tmp_path, capsys):
    """train, --resume and eval pointed at a sweep's folder, and sweep at a run's, each say what the folder holds
    (they said "a run that saved no checkpoint ... pass --overwrite", or "the state file lists none") and change
    nothing; eval without --checkpoint says which newer sweep it passed over."""
    code, _, _ = run_main(capsys, "sweep", "--seed", "1,2", *FAST, "--max_steps", "3")
    assert code == 0
    sweep = runs.run_folders(str(root), print)[-1]

    def every_file():
        return {os.path.join(folder, name): open(os.path.join(folder, name), "rb").read()
                for folder, _, names in os.walk(sweep) for name in names}

    before = every_file()
    held = (f"mnist-gpu: error: --log_dir {sweep} holds a sweep, not a run (continue it with `mnist-gpu sweep` and "
            "its flags with --resume; each of its member folders is a run of its own); pass another --log_dir, or "
            "--overwrite to delete it (every member folder too)")
    for more in ([], ["--resume"]):
        code, _, error = run_main(capsys, *FAST, "--max_steps", "3", "--log_dir", sweep, *more)
        assert code == 2 and one_error_line(error) == held
    code, _, error = run_main(capsys, "eval", "--backend", "numpy", "--checkpoint", sweep)
    assert code == 2 and one_error_line(error) == (f"mnist-gpu: error: --checkpoint {sweep} is a sweep's folder: pass "
                                                   f"one of its member folders (such as {sweep}/lr0.01_seed1)")
    member = os.path.join(sweep, "lr0.01_seed1")
    code, _, error = run_main(capsys, "sweep", "--seed", "1", *FAST, "--max_steps", "3", "--log_dir", member)
    assert code == 2 and one_error_line(error) == (f"mnist-gpu: error: --log_dir {member} holds a training run, not a "
                                                   "sweep; pass another --log_dir, or --overwrite to delete it")
    assert every_file() == before
    code, _, error = run_main(capsys, "eval", "--backend", "numpy")  # no run with a checkpoint of its own
    assert code == 2 and f"mnist-gpu: skipping {sweep}: a sweep (pass --checkpoint with one of its member " \
        "folders)" in error
