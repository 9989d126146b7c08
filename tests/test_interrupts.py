"""Ctrl-C and SIGTERM, sent for real to a training process: the step finishes, is saved, and resumes exactly."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mnist_gpu import checkpoint as checkpoints

from helpers import run_main, without_timings

STEPS = "3000"


def start_training(log_dir, mnist_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_gpu", "--input_data_dir", mnist_dir, "--log_dir", str(log_dir),
         "--backend", "numpy", "--seed", "11", "--max_steps", STEPS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    assert message.startswith("mnist-gpu: interrupted at step ") and message.endswith("; continue with --resume")
    assert "Traceback" not in error
    step = int(message.split("step ")[1].split(";")[0])
    saved = checkpoints.Saver(str(tmp_path)).latest()[0]
    assert message == f"mnist-gpu: interrupted at step {step}; saved model.ckpt-{step}.safetensors; " \
                      "continue with --resume"
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
    code, _, error = run_main(capsys, "--fake_data", "--log_dir", str(tmp_path / "run"), "--backend", "numpy")
    assert code == 130
    assert error.splitlines()[-1] == "mnist-gpu: interrupted before training started; nothing was saved"
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back
