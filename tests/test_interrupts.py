"""Ctrl-C and SIGTERM, sent for real to a training process: the step finishes, is saved, and resumes exactly."""
import os
import random
import shlex
import signal
import subprocess
import sys
import time

import pytest

from mnist_gpu import checkpoint as checkpoints

from helpers import run_main, without_timings

STEPS = "3000"


def start_training(log_dir, mnist_dir, program=(sys.executable, "-m", "mnist_gpu"), **keywords):
    return subprocess.Popen(
        [*program, "--input_data_dir", mnist_dir, "--log_dir", str(log_dir),
         "--backend", "numpy", "--seed", "11", "--max_steps", STEPS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **keywords)


def interrupt_once_training(process, signals, delay):
    """Wait for the first step's line, wait `delay` more, then send each of `signals` in turn."""
    first_line = process.stdout.readline()
    assert first_line.startswith("Step 0: "), first_line + process.stderr.read()
    time.sleep(delay)
    for number in signals:
        process.send_signal(number)
        time.sleep(0.002)
    out, error = process.communicate(timeout=120)
    return [first_line.rstrip("\n")] + out.splitlines(), error


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_dir):
    log_dir = tmp_path_factory.mktemp("whole")
    process = start_training(log_dir, mnist_dir)
    out, error = process.communicate(timeout=300)
    assert process.returncode == 0, error
    return out.splitlines(), checkpoints.Saver(str(log_dir)).latest()[0]


@pytest.mark.slow
@pytest.mark.parametrize("signals, exit_code", [
    ([signal.SIGINT], 130),
    ([signal.SIGTERM], 143),
    ([signal.SIGINT, signal.SIGINT], 130),  # a second Ctrl-C while the first is being handled
])
def test_a_signal_saves_the_step_and_resume_is_exact(tmp_path, mnist_dir, capsys, uninterrupted, signals, exit_code):
    whole_lines, whole = uninterrupted
    delay = random.uniform(0, 1.0)
    process = start_training(tmp_path, mnist_dir)
    lines, error = interrupt_once_training(process, signals, delay)
    assert process.returncode == exit_code, f"after {delay:.3f} s: {error}"
    message = error.splitlines()[-1]
    assert message.startswith("mnist-gpu: interrupted at step ")
    assert "Traceback" not in error
    step = int(message.split("step ")[1].split(";")[0])
    saved = checkpoints.Saver(str(tmp_path)).latest()[0]
    assert message == f"mnist-gpu: interrupted at step {step}; saved model.ckpt-{step}.safetensors; to continue: " \
                      f"{shlex.quote(sys.executable)} -m mnist_gpu --resume --log_dir {shlex.quote(str(tmp_path))} " \
                      f"--max_steps {STEPS} --input_data_dir {shlex.quote(mnist_dir)} --backend numpy"
    assert saved.global_step == step + 1 and saved.path.endswith(f"model.ckpt-{step}.safetensors")
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".part")]
    # Resume: the same later lines and the same final weights, byte for byte.
    code, resumed, resume_error = run_main(capsys, "--input_data_dir", mnist_dir, "--log_dir", str(tmp_path),
                                           "--backend", "numpy", "--resume", "--max_steps", STEPS)
    assert code == 0, resume_error
    assert f"resuming from step {step + 1} (model.ckpt-{step}.safetensors)" in resume_error
    assert without_timings(lines + resumed) == without_timings(whole_lines)
    final = checkpoints.Saver(str(tmp_path)).latest()[0]
    for name, value in whole.variables.items():
        assert value.tobytes() == final.variables[name].tobytes(), name


def test_an_interrupt_before_training_saves_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    from mnist_gpu import trainer

    def interrupted_while_loading(*arguments, **keywords):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while data is loading: not yet deferred
        time.sleep(1)

    monkeypatch.setattr(trainer, "read_data_sets", interrupted_while_loading)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler; SIG_IGN in a job a shell started with &
    code, _, error = run_main(capsys, "--fake_data", "--log_dir", str(tmp_path / "run"), "--backend", "numpy")
    assert code == 130
    assert error.splitlines()[-1] == "mnist-gpu: interrupted before training started; nothing was saved"
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are given back


@pytest.mark.parametrize("program", ["python -m mnist_gpu", "mnist-gpu"])
def test_ctrl_c_while_the_command_loads_its_modules_is_one_line(tmp_path, program):
    """A real SIGINT while NumPy is being imported (before cli.main can take it): Python printed its traceback and
    died of the signal. Python's -X importtime names each module as it finishes loading: the signal goes at the first
    of NumPy's, and the command's own modules have not finished then (else, rarely, the try is repeated)."""
    script = os.path.join(os.path.dirname(sys.executable), "mnist-gpu")
    command = ["-m", "mnist_gpu"] if program.startswith("python") else [script]
    for attempt in range(5):
        log_dir = tmp_path / f"run{attempt}"
        process = subprocess.Popen([sys.executable, "-X", "importtime", *command, "--fake_data", "--log_dir",
                                    str(log_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            error = ""
            while line := process.stderr.readline():
                error += line
                if line.startswith("import time:") and line.split("|")[-1].strip().startswith("numpy"):
                    process.send_signal(signal.SIGINT)
                    break
            error += process.stderr.read()  # to its end: the process has ended or closed it
            out = process.stdout.read()
            process.wait(timeout=60)
        finally:
            process.kill()
        loaded = [line.split("|")[-1].strip() for line in error.splitlines() if line.startswith("import time:")]
        if "mnist_gpu.cli" not in loaded:  # the signal came while the command was loading
            break
    said = [line for line in error.splitlines() if not line.startswith("import time:")]
    assert (process.returncode, said, out) == (130, ["mnist-gpu: interrupted while starting; nothing was written"], "")
    assert not log_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("program", ["python -m mnist_gpu", "mnist-gpu"])
def test_the_printed_hint_run_as_printed_continues_the_run(tmp_path, mnist_dir, uninterrupted, program):
    """Ctrl-C on `--log_dir runs/b` (a relative folder), then the hint pasted into a shell in another folder,
    while a newer run under the default root is unfinished: the hint continues runs/b, exactly, and leaves the
    default run alone. Without an activated venv, `mnist-gpu` is the script's full path."""
    whole_lines, whole = uninterrupted
    home, started_in, elsewhere = tmp_path / "home", tmp_path / "project", tmp_path / "elsewhere"
    for folder in (home, started_in, elsewhere):
        folder.mkdir()
    environment = {**os.environ, "HOME": str(home), "TEST_TMPDIR": str(home / "tmp"),
                   "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    script = os.path.join(os.path.dirname(sys.executable), "mnist-gpu")
    command = (sys.executable, "-m", "mnist_gpu") if program.startswith("python") else (script,)
    process = start_training("runs/b", mnist_dir, command, cwd=started_in, env=environment)
    lines, error = interrupt_once_training(process, [signal.SIGINT], random.uniform(0, 1.0))
    assert process.returncode == 130, error
    message = error.splitlines()[-1]
    step = int(message.split("step ")[1].split(";")[0])
    hint = message.split("; to continue: ", 1)[1]
    assert hint.startswith(shlex.quote(script) if program == "mnist-gpu" else f"{shlex.quote(sys.executable)} -m ")
    assert f" --resume --log_dir {shlex.quote(str(started_in / 'runs' / 'b'))} " in hint
    # A newer run under the default root, with a checkpoint and short of the default --max_steps: a bare
    # `--resume` would continue it.
    newer = subprocess.run([sys.executable, "-m", "mnist_gpu", "--fake_data", "--backend", "numpy", "--max_steps", "3"],
                           capture_output=True, text=True, env=environment, cwd=elsewhere)
    assert newer.returncode == 0, newer.stderr
    newer_folder = newer.stderr.splitlines()[0].rsplit("log_dir ", 1)[1]
    newer_files = sorted(os.listdir(newer_folder))
    resumed = subprocess.run(["bash", "-c", hint], capture_output=True, text=True, env=environment, cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {step + 1} (model.ckpt-{step}.safetensors)" in resumed.stderr
    assert without_timings(lines + resumed.stdout.splitlines()) == without_timings(whole_lines)
    final = checkpoints.Saver(str(started_in / "runs" / "b")).latest()[0]
    for name, value in whole.variables.items():
        assert value.tobytes() == final.variables[name].tobytes(), name
    assert sorted(os.listdir(newer_folder)) == newer_files
