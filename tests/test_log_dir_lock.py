"""One run per log_dir, with real processes: a run holds its log_dir's lock from its first check to its exit."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import runs

from helpers import one_error_line, run_main

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4"]
FOREVER = "100000000"  # steps: such a run ends when the test stops it


def start(log_dir, *flags):
    return subprocess.Popen([sys.executable, "-m", "mnist_gpu", *FAST, "--log_dir", str(log_dir), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, what):
    deadline = time.time() + 120
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr.read()}"
        assert time.time() < deadline, f"no {what} after 120 s"
        time.sleep(0.01)


def stop(process):
    """SIGINT: the run saves the step it is at and exits 130."""
    process.send_signal(signal.SIGINT)
    out, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    return error


@pytest.mark.parametrize("flags", [["--seed", "2"], ["--resume"], ["--overwrite"]])
def test_a_run_a_resume_or_an_overwrite_of_a_log_dir_in_use_is_refused_at_once(tmp_path, capsys, flags):
    log_dir = tmp_path / "run"
    first = start(log_dir, "--seed", "1", "--max_steps", FOREVER)
    try:
        wait_for(lambda: (log_dir / "checkpoint").exists(), first, "a first checkpoint")
        code, lines, error = run_main(capsys, *FAST, "--log_dir", str(log_dir), "--max_steps", "2000", *flags)
        assert code == 2 and lines == []
        line = one_error_line(error)
        assert line.startswith(f"mnist-gpu: error: --log_dir {log_dir} is in use by process {first.pid} "
                               f"({sys.executable} -m mnist_gpu --fake_data"), line
        assert line.endswith("one run writes a log_dir at a time; wait for it to end, or pass another --log_dir")
    finally:
        stop(first)
    # The run in progress went on untouched: one event file, and its own checkpoint.
    assert len([name for name in os.listdir(log_dir) if name.startswith("events.")]) == 1
    assert checkpoints.Saver(str(log_dir)).latest()[0].flags["seed"] == 1


def test_two_runs_started_together_into_one_log_dir_one_trains_the_other_is_refused(tmp_path):
    """The issue's report: both exited 0, and the log_dir held two event files and the checkpoints of the later."""
    log_dir = tmp_path / "run"
    processes = [start(log_dir, "--seed", seed, "--max_steps", "3000") for seed in ("1", "2")]
    results = [(process, *process.communicate(timeout=300)) for process in processes]
    codes = sorted(process.returncode for process in processes)
    assert codes == [0, 2], [error for _, _, error in results]
    (winner, _, _), = [result for result in results if result[0].returncode == 0]
    (_, out, error), = [result for result in results if result[0].returncode == 2]
    line = one_error_line(error)
    assert out == "" and (f"is in use by process {winner.pid} (" in line or "already holds a run" in line), line
    assert len([name for name in os.listdir(log_dir) if name.startswith("events.")]) == 1
    winner_seed = winner.args[winner.args.index("--seed") + 1]
    assert checkpoints.Saver(str(log_dir)).latest()[0].flags["seed"] == int(winner_seed)


def test_a_run_refused_the_lock_leaves_the_folder_it_made_to_the_run_that_holds_it(tmp_path, monkeypatch):
    """The race of two runs started together, made to happen every time: this command makes the log_dir, and
    another process locks it before this one can. The refused command must not take the folder away from under
    the run that holds it (which would then fail writing its first file)."""
    log_dir = tmp_path / "a" / "run"
    make_folders, holders = runs.make_folders, []

    def made_then_locked_by_another_process(path, created, what="--log_dir"):
        make_folders(path, created, what)
        if not holders:
            holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                                       "fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX); "
                                       "print('locked', flush=True); time.sleep(600)", str(path)],
                                      stdout=subprocess.PIPE, text=True)
            holders.append(holder)
            assert holder.stdout.readline() == "locked\n"

    monkeypatch.setattr(runs, "make_folders", made_then_locked_by_another_process)
    try:
        with pytest.raises(runs.LogDirInUse, match=r"is in use by process \d+ \("):
            with runs.claim(str(log_dir)):
                pass
        assert log_dir.is_dir()
    finally:
        for holder in holders:
            holder.kill()
            holder.communicate()


def test_kill_9_leaves_nothing_to_clean_up(tmp_path, capsys):
    """The lock is the OS's: it dies with the process, and there is no lock file to be left behind."""
    log_dir = tmp_path / "run"
    process = start(log_dir, "--seed", "1", "--max_steps", FOREVER)
    try:
        wait_for(lambda: (log_dir / "checkpoint").exists(), process, "a first checkpoint")
    finally:
        process.kill()
        process.communicate()
    assert all(runs.is_run_file(name) for name in os.listdir(log_dir)), os.listdir(log_dir)
    code, _, error = run_main(capsys, *FAST, "--log_dir", str(log_dir), "--resume", "--max_steps", "2000")
    assert code == 0, error


def test_the_lock_is_held_from_the_first_check_and_given_back_at_the_end(tmp_path, capsys):
    log_dir = tmp_path / "run"
    with runs.claim(str(log_dir)) as run:
        assert run.log_dir == str(log_dir)
        code, _, error = run_main(capsys, *FAST, "--log_dir", str(log_dir), "--max_steps", "1")
        assert code == 2 and f"is in use by process {os.getpid()} (" in error
    assert not log_dir.exists()  # nothing was written: the folder made for the lock is gone again
    assert run_main(capsys, *FAST, "--log_dir", str(log_dir), "--max_steps", "1")[0] == 0


@pytest.mark.slow
def test_eval_while_a_run_writes_and_prunes_its_checkpoints(tmp_path, capsys):
    """With --max_to_keep 1 each save prunes the checkpoint an eval may have just found listed."""
    log_dir = tmp_path / "run"
    process = start(log_dir, "--seed", "1", "--max_steps", FOREVER, "--max_to_keep", "1")
    try:
        wait_for(lambda: (log_dir / "checkpoint").exists(), process, "a first checkpoint")
        steps = set()
        while len(steps) < 5:
            code, lines, error = run_main(capsys, "eval", "--checkpoint", str(log_dir), "--backend", "numpy")
            assert code == 0, error
            steps.add(lines[0])
    finally:
        stop(process)


def test_latest_reads_the_state_file_again_when_a_save_pruned_what_it_listed(tmp_path, monkeypatch):
    """The same race, made to happen every time: the run saves (and prunes) between the reader's two reads."""
    from test_checkpoint import sample_checkpoint

    saver = checkpoints.Saver(str(tmp_path), max_to_keep=1)
    saver.save(1, sample_checkpoint(2))
    read = checkpoints.read
    raced = threading.Event()

    def read_after_a_save(path, **options):
        if not raced.is_set():
            raced.set()
            saver.save(3, sample_checkpoint(4))  # commits model.ckpt-3 and deletes model.ckpt-1
        return read(path, **options)

    monkeypatch.setattr(checkpoints, "read", read_after_a_save)
    latest, skipped = checkpoints.Saver(str(tmp_path)).latest()
    assert raced.is_set() and latest.global_step == 4 and skipped == []


def test_a_member_of_a_population_in_training_is_not_written_by_another_run(tmp_path, capsys):
    """A sweep holds its population's folder; a run into one of its members' folders (--overwrite deleted the
    member's checkpoints under the sweep, --resume trained it beside the sweep) is refused at once, naming the
    sweep's process. Once the sweep has ended, the member resumes like any run."""
    population = tmp_path / "population"
    member = population / "lr0.01_seed1"
    sweep = subprocess.Popen([sys.executable, "-m", "mnist_gpu", "sweep", "--seed", "1,2", *FAST, "--log_dir",
                              str(population), "--max_steps", FOREVER, "--eval_every", "100"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (population / "population.json").exists(), sweep, "a first commit")
        for flags in (["--overwrite"], ["--resume"]):
            code, lines, error = run_main(capsys, *FAST, "--log_dir", str(member), "--max_steps", "2000", *flags)
            assert code == 2 and lines == []
            assert one_error_line(error).startswith(f"mnist-gpu: error: --log_dir {member} is a member of the "
                                                    f"population in {population}, which is in use by process "
                                                    f"{sweep.pid} ("), error
    finally:
        stop(sweep)
    saved = checkpoints.Saver(str(member)).latest()[0]
    code, _, error = run_main(capsys, *FAST, "--log_dir", str(member), "--max_steps", str(saved.global_step + 10),
                              "--resume")
    assert code == 0, error
