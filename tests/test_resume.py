"""log_dir safety and exact resume: refusals change nothing; resumed runs equal uninterrupted ones."""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing import event_accumulator

from mnist_gpu import checkpoint as checkpoints

from helpers import one_error_line, run_main, snapshot, without_timings


@pytest.fixture
def train(capsys, mnist_dir):
    def train(log_dir, *flags):
        return run_main(capsys, "--input_data_dir", mnist_dir, "--log_dir", str(log_dir), "--backend", "numpy", *flags)
    return train


def final_variables(log_dir):
    latest, _ = checkpoints.Saver(str(log_dir)).latest()
    return latest


def assert_same_tensors(first, second):
    assert first.global_step == second.global_step
    for name, value in first.variables.items():
        assert value.tobytes() == second.variables[name].tobytes(), name  # byte-identical


@pytest.mark.slow
def test_stop_at_1000_and_resume_equals_an_uninterrupted_run(train, tmp_path):
    code, whole, _ = train(tmp_path / "whole", "--seed", "4")
    assert code == 0
    code, first_half, _ = train(tmp_path / "split", "--seed", "4", "--max_steps", "1000")
    assert code == 0
    code, second_half, _ = train(tmp_path / "split", "--resume")
    assert code == 0
    assert second_half[0].startswith("Step 1000: ")
    assert without_timings(first_half + second_half) == without_timings(whole)
    assert_same_tensors(final_variables(tmp_path / "whole"), final_variables(tmp_path / "split"))


SYSCALL = re.compile(r'^(?P<pid>\d+) +(?P<call>\w+)\((?P<arguments>.*)\) += (?P<result>-?\d+)')


def calls(trace):
    """strace's lines, each call whole: a call another thread interrupted is split into `<unfinished ...>` and
    `<... name resumed>`, joined here."""
    pending = {}
    for line in trace.read_text().splitlines():
        pid = line.split(" ", 1)[0]
        if line.endswith("<unfinished ...>"):
            pending[pid] = line[:-len("<unfinished ...>")].rstrip()
        elif "<... " in line and " resumed>" in line and pid in pending:
            yield pending.pop(pid) + line.split(" resumed>", 1)[1]
        else:
            yield line


@pytest.mark.slow
@pytest.mark.parametrize("command", [["--seed", "1"], ["sweep", "--seed", "1,2"]], ids=["run", "population"])
def test_every_event_is_on_disk_before_a_checkpoint_commits(tmp_path, mnist_dir, command):
    """The real system calls of a real run, in order (strace): before each commit of a folder's checkpoint (the
    rename of its `checkpoint` index), its event file was fsync'ed since the previous commit. Else a SIGKILL just
    after a commit loses the events since the last flush, and the resume, purging those after its checkpoint,
    leaves a hole (what test_sigkill_at_a_random_moment_then_resume_is_exact catches by chance)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    trace = tmp_path / "trace.txt"
    result = subprocess.run(["strace", "-f", "-e", "trace=openat,close,fsync,rename,clone,clone3", "-o", str(trace),
                             sys.executable, "-m", "mnist_gpu", *command, "--backend", "numpy", "--input_data_dir",
                             mnist_dir, "--log_dir", str(tmp_path / "run"), "--max_steps", "300", "--eval_every",
                             "100", "--hidden1", "12", "--hidden2", "5", "--batch_size", "13"],
                            capture_output=True, text=True)
    if result.returncode != 0 and "ptrace" in result.stderr + trace.read_text(errors="replace")[:2000]:
        pytest.skip(f"strace cannot trace here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    events = {}  # (process, fd) -> the folder of the event file it has open (a child's fds are its own)
    flushed = {}  # folder -> whether its event file was fsync'ed since its last commit
    commits = []
    process = {}  # a thread's id -> its process's (threads share their fds: members are saved on several threads)
    for line in calls(trace):
        found = SYSCALL.match(line)
        if found is None:
            continue
        call, arguments, value = found["call"], found["arguments"], int(found["result"])
        if call.startswith("clone") and value > 0:
            process[str(value)] = process.get(found["pid"], found["pid"]) if "CLONE_THREAD" in arguments else str(value)
            continue
        fd = (process.get(found["pid"], found["pid"]), int(arguments) if call in ("close", "fsync") else value)
        if call == "openat" and "/events.out.tfevents." in arguments and value >= 0:
            events[fd] = os.path.dirname(arguments.split('"')[1])
        elif call == "close":
            events.pop(fd, None)
        elif call == "fsync" and fd in events:
            flushed[events[fd]] = True
        elif call == "rename" and arguments.split('"')[3].endswith("/checkpoint"):
            folder = os.path.dirname(arguments.split('"')[3])
            commits.append((folder, flushed.get(folder, False)))
            flushed[folder] = False
    members = 2 if command[0] == "sweep" else 1
    assert len(commits) == 3 * members  # steps 99, 199 and 299 of each run folder
    assert [folder for folder, on_disk in commits if not on_disk] == []


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_is_exact(train, tmp_path, mnist_dir):
    steps = "4000"
    code, whole, _ = train(tmp_path / "whole", "--seed", "8", "--max_steps", steps)
    assert code == 0
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_gpu", "--input_data_dir", mnist_dir, "--log_dir", str(killed_dir),
         "--backend", "numpy", "--seed", "8", "--max_steps", steps],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (killed_dir / "checkpoint").exists():  # wait for the first committed checkpoint
            assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.01)
        delay = random.uniform(0, 2.0)
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    code, resumed, error = train(killed_dir, "--resume", "--max_steps", steps)
    assert code == 0, f"resume after SIGKILL at +{delay:.3f}s failed: {error}"
    if resumed:  # the shared steps print the same lines
        assert without_timings(resumed) == without_timings(whole)[-len(resumed):], f"killed at +{delay:.3f}s"
    assert_same_tensors(final_variables(tmp_path / "whole"), final_variables(killed_dir))
    assert not [name for name in os.listdir(killed_dir) if name.endswith(".part")]
    # Events the killed run wrote after its checkpoint are purged: each step's loss appears once.
    accumulator = event_accumulator.EventAccumulator(str(killed_dir), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("loss")] == list(range(0, int(steps), 100))


def test_existing_run_is_refused_and_left_unchanged(train, tmp_path):
    log_dir = tmp_path / "run"
    assert train(log_dir, "--fake_data", "--max_steps", "2")[0] == 0
    before = snapshot(log_dir)
    code, _, error = train(log_dir, "--fake_data", "--max_steps", "2")
    assert code == 2
    assert "already holds a run" in error and "--resume" in error and "--overwrite" in error
    assert snapshot(log_dir) == before


@pytest.mark.parametrize("flags, message", [
    (["--hidden1", "64"], "--hidden1 64 does not match the checkpoint"),
    (["--hidden2", "16"], "--hidden2 16 does not match the checkpoint"),
    (["--seed", "99"], "--seed 99 does not match the checkpoint"),
    (["--dataset", "fashion_mnist"], "--dataset fashion_mnist does not match the checkpoint"),
    (["--overwrite"], "--resume and --overwrite exclude each other"),
])
def test_resume_refusals_change_nothing(train, tmp_path, flags, message):
    log_dir = tmp_path / "run"
    assert train(log_dir, "--seed", "1", "--max_steps", "5")[0] == 0
    before = snapshot(log_dir)
    code, _, error = train(log_dir, "--resume", "--max_steps", "10", *flags)
    assert code == 2
    assert message in error and "128" in error if "hidden1" in message else message in error
    assert snapshot(log_dir) == before


def test_resume_with_nothing_to_resume_is_refused(train, tmp_path):
    code, _, error = train(tmp_path / "empty", "--resume")
    assert code == 2 and "has no checkpoint to continue from" in error
    assert not (tmp_path / "empty").exists()


@pytest.mark.slow
def test_resume_skips_a_damaged_newest_checkpoint(train, tmp_path):
    log_dir = tmp_path / "run"
    assert train(log_dir, "--seed", "2", "--max_steps", "2000")[0] == 0
    newest = log_dir / "model.ckpt-1999.safetensors"
    newest.write_bytes(newest.read_bytes()[:-7])
    code, lines, error = train(log_dir, "--resume", "--max_steps", "2000")
    assert code == 0
    assert "skipping a damaged checkpoint" in error and "model.ckpt-1999.safetensors" in error
    assert lines[0].startswith("Step 1000: ")  # continued from model.ckpt-999
    assert final_variables(log_dir).global_step == 2000


def test_resume_with_every_checkpoint_damaged_is_refused(train, tmp_path):
    log_dir = tmp_path / "run"
    assert train(log_dir, "--fake_data", "--max_steps", "1")[0] == 0
    path = log_dir / "model.ckpt-0.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    before = snapshot(log_dir)
    code, _, error = train(log_dir, "--fake_data", "--resume", "--max_steps", "5")
    assert code == 1 and "no valid checkpoint" in error  # a checkpoint that fails its checks: exit 1
    assert snapshot(log_dir) == before


def test_overwrite_removes_only_the_old_runs_files(train, tmp_path):
    log_dir = tmp_path / "run"
    assert train(log_dir, "--fake_data", "--max_steps", "1")[0] == 0
    old_events = [name for name in os.listdir(log_dir) if name.startswith("events.out.tfevents.")]
    (log_dir / "notes.txt").write_text("mine")
    assert train(log_dir, "--fake_data", "--max_steps", "2", "--overwrite")[0] == 0
    names = os.listdir(log_dir)
    assert "notes.txt" in names and not set(old_events) & set(names)
    assert checkpoints.read_state(str(log_dir)) == ["model.ckpt-1.safetensors"]
    assert "model.ckpt-0.safetensors" not in names


def test_eval_command_prints_the_runs_last_evaluation(train, capsys, tmp_path, mnist_dir):
    log_dir = tmp_path / "run"
    code, lines, _ = train(log_dir, "--seed", "3", "--max_steps", "1000")
    assert code == 0
    for target in (str(log_dir), str(log_dir / "model.ckpt-999.safetensors")):
        code, evaluated, _ = run_main(capsys, "eval", "--checkpoint", target, "--input_data_dir", mnist_dir,
                                      "--backend", "numpy")
        assert code == 0
        assert evaluated[0] == f"Evaluating {log_dir / 'model.ckpt-999.safetensors'} (step 999)"
        assert evaluated[1:] == lines[-6:]


def test_eval_command_refuses_a_damaged_checkpoint(capsys, tmp_path):
    path = tmp_path / "model.ckpt-5.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    code, _, error = run_main(capsys, "eval", "--checkpoint", str(path), "--backend", "numpy")
    assert code == 1 and "model.ckpt-5.safetensors" in error
    code, _, error = run_main(capsys, "eval", "--checkpoint", str(tmp_path), "--backend", "numpy")
    assert code == 1 and "no valid checkpoint" in error


def test_temporaries_of_a_killed_save_are_cleaned_up_on_resume(train, tmp_path):
    log_dir = tmp_path / "run"
    assert train(log_dir, "--fake_data", "--max_steps", "1")[0] == 0
    leftovers = [".model.ckpt-5.safetensors.k3j9x2.part", ".checkpoint.a8f0q1.part"]
    for name in leftovers:
        (log_dir / name).write_bytes(b"half")
    (log_dir / ".notes.txt.zz.part").write_bytes(b"not ours")
    assert train(log_dir, "--fake_data", "--resume", "--max_steps", "2")[0] == 0
    names = os.listdir(log_dir)
    assert not set(leftovers) & set(names)
    assert ".notes.txt.zz.part" in names


def test_a_resume_without_the_runs_shape_names_the_flags_to_repeat(tmp_path, capsys):
    """A run of --fake_data --hidden1 8 --hidden2 4 resumed with only --fake_data, or without it: each refusal names
    the run's own flags to repeat (it named only the default the user never typed, or the wrong flag)."""
    log_dir = str(tmp_path / "run")
    assert run_main(capsys, "--fake_data", "--hidden1", "8", "--hidden2", "4", "--backend", "numpy", "--max_steps",
                    "2", "--log_dir", log_dir)[0] == 0
    for given in (["--fake_data"], ["--hidden1", "8", "--hidden2", "4"]):
        code, _, error = run_main(capsys, *given, "--backend", "numpy", "--max_steps", "4", "--log_dir", log_dir,
                                  "--resume")
        assert code == 2 and one_error_line(error).endswith("; repeat the run's --hidden1 8 --hidden2 4 --fake_data"), \
            error
