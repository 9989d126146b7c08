"""The command line: every bad flag is refused with exit code 2 and a message naming it."""
import os
import re
import subprocess
import sys

import pytest

from mnist_gpu.backends.gpu_probe import gpu_available
from mnist_gpu.cli import main

from helpers import needs_cuda_packages, run_main


@pytest.mark.parametrize("flags, message", [
    (["--batch_size", "0"], "argument --batch_size: expected a positive integer, got '0'"),
    (["--batch_size", "-5"], "argument --batch_size: expected a positive integer"),
    (["--batch_size", "5001"], "--batch_size 5001 is larger than the validation set (5000 examples)"),
    (["--hidden1", "0"], "argument --hidden1: expected a positive integer"),
    (["--hidden2", "-1"], "argument --hidden2: expected a positive integer"),
    (["--learning_rate", "0"], "argument --learning_rate: expected a finite number > 0, got '0'"),
    (["--learning_rate", "-0.1"], "argument --learning_rate: expected a finite number > 0"),
    (["--learning_rate", "nan"], "argument --learning_rate: expected a finite number > 0, got 'nan'"),
    (["--learning_rate", "inf"], "argument --learning_rate: expected a finite number > 0"),
    (["--max_steps", "-1"], "argument --max_steps: expected an integer >= 0, got '-1'"),
    (["--max_steps", "ten"], "argument --max_steps: expected an integer >= 0, got 'ten'"),
    (["--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
])
def test_bad_flags_exit_2_with_a_message(flags, message, mnist_dir, tmp_path, capsys):
    code, _, error = run_main(capsys, "--input_data_dir", mnist_dir, "--log_dir", str(tmp_path / "logs"),
                              "--backend", "numpy", *flags)
    assert code == 2
    assert message in error
    assert len(error.splitlines()) == 1 and error.startswith(f"mnist-gpu: error: {message}")  # no usage block


def test_batch_size_is_checked_against_fake_data_too(tmp_path, capsys):
    code, _, error = run_main(capsys, "--fake_data", "--batch_size", "10001", "--log_dir", str(tmp_path),
                              "--backend", "numpy")
    assert code == 2
    assert error == "mnist-gpu: error: --batch_size 10001 is larger than the train set (10000 examples)\n"


def test_help_shows_defaults_and_version_prints_it(capsys):
    from mnist_gpu import __version__

    code, lines, _ = run_main(capsys, "train", "--help")
    text = "\n".join(lines)
    assert code == 0 and "(default: 0.01)" in text and "(default: 2000)" in text and "(default: 128)" in text
    assert "divide evenly" not in text and "at most the smallest split" in text
    assert "23.0 at two loss reads in a row" in " ".join(text.split())  # the divergence rule, in --help
    code, lines, _ = run_main(capsys, "--version")
    assert code == 0 and lines == [f"mnist-gpu {__version__}"]


def test_diverging_loss_stops_with_a_message(mnist_dir, tmp_path, capsys):
    code = main(["--input_data_dir", mnist_dir, "--log_dir", str(tmp_path), "--backend", "numpy", "--seed", "1",
                 "--learning_rate", "1e30", "--max_steps", "500"])
    assert code == 1
    error = capsys.readouterr().err
    assert "mnist-gpu: error: loss is nan at step" in error and "--learning_rate" in error


@pytest.mark.skipif(gpu_available(), reason="this machine has a usable GPU")
@needs_cuda_packages
def test_cuda_backend_without_a_gpu_says_what_is_missing(tmp_path, capsys):
    code = main(["--fake_data", "--max_steps", "1", "--log_dir", str(tmp_path), "--backend", "cuda"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("mnist-gpu: error: --backend cuda needs")
    assert "pip install '.[cuda13]'" in error or "--backend cpu" in error


CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "mnist-gpu")


@pytest.mark.parametrize("command", [[sys.executable, "-m", "mnist_gpu"], [CONSOLE_SCRIPT], [CONSOLE_SCRIPT, "train"]])
def test_entry_points_train_on_fake_data(command, tmp_path):
    result = subprocess.run([*command, "--fake_data", "--max_steps", "3", "--batch_size", "10",
                             "--log_dir", str(tmp_path), "--backend", "numpy", "--hidden1", "4", "--hidden2", "3"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Step 0: loss = ")
    assert lines[1] == "Training Data Eval:"
    assert re.fullmatch(r"  Num examples: 10000  Num correct: \d+  Precision @ 1: [01]\.\d{4}", lines[2])
    assert lines[3::2] == ["Validation Data Eval:", "Test Data Eval:"]


@pytest.mark.parametrize("cupy, expected", [
    ('raise ImportError("No module named cupy")', ("cpu", "auto: no usable GPU, CuPy is not installed")),
    ("def is_available():\n    return False", ("cpu", "auto: no usable GPU, CuPy sees no CUDA device")),
    ('def is_available():\n    raise RuntimeError("cudaErrorInsufficientDriver")',
     ("cpu", "auto: no usable GPU, CUDA failed: cudaErrorInsufficientDriver")),
    ("def is_available():\n    return True", ("cuda", "auto: a usable GPU")),
])
def test_auto_picks_cuda_with_a_gpu_else_the_fast_cpu_backend(tmp_path, cupy, expected):
    """What `auto` chooses, in a process whose CuPy (a stand-in module first on its path) is missing, sees no
    device, fails in its driver, or sees one (with the cuda backend's other packages, stand-ins too, found)."""
    for package, text in (("cupy", cupy), ("numba_cuda", ""), ("nvmath", "")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(text + "\n")
    chosen = subprocess.run([sys.executable, "-c", "from mnist_gpu.backends import resolve_backend_name as r; "
                             "print(*r('auto'), sep='|')"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert chosen.returncode == 0, chosen.stderr
    assert tuple(chosen.stdout.strip().split("|")) == expected


@pytest.mark.parametrize("typed, meant", [("--max-steps", "--max_steps"), ("--lr", "--learning_rate"),
                                          ("--log-dir=runs/a", "--log_dir"), ("--hiden1", "--hidden1"),
                                          ("--bs", "--batch_size")])
def test_a_mistyped_flag_gets_the_nearest_one_in_one_line(capsys, typed, meant):
    code, _, error = run_main(capsys, typed, "5")
    assert code == 2
    assert error == f"mnist-gpu: error: train: unrecognized argument {typed}; did you mean {meant}?\n"


def test_an_unknown_flag_with_nothing_near_points_at_the_help(capsys):
    code, _, error = run_main(capsys, "eval", "--frobnicate")
    assert code == 2
    assert error == "mnist-gpu: error: eval: unrecognized argument --frobnicate (mnist-gpu eval --help lists its " \
                    "flags)\n"


@pytest.mark.parametrize("typed, hint", [(["swep", "--seed", "1-2"], "; did you mean sweep?"),
                                         (["evl"], "; did you mean eval?"),
                                         (["runs/a"], "; the commands are train, sweep, eval, predict, check (without "
                                                      "one, train; its flags begin with --)")])
def test_a_mistyped_command_gets_the_nearest_one_in_one_line(capsys, typed, hint):
    """Before, `mnist-gpu swep --seed 1-2` (trained, as a word that is no command means) said only that 1-2 is not
    an integer, and `mnist-gpu evl` "unrecognized argument evl"."""
    code, _, error = run_main(capsys, *typed)
    assert code == 2
    assert error == f"mnist-gpu: error: unknown command {typed[0]}{hint}\n"


@pytest.mark.parametrize("typed, expected", [
    (["sweep", "--seed", "1", "2"], "sweep: unrecognized argument 2"),  # a word after the command: no command hint
    (["check", "extra"], "check: unrecognized argument extra"),
    (["eval", "check"], "eval: unrecognized argument check")])
def test_a_stray_word_after_the_command_is_named_alone(capsys, typed, expected):
    code, _, error = run_main(capsys, *typed)
    assert code == 2 and error == f"mnist-gpu: error: {expected}\n"


@pytest.mark.parametrize("typed", [["--help", "sweep"], ["-h", "train"]])
def test_help_before_a_word_prints_the_usage(capsys, typed):
    code, lines, error = run_main(capsys, *typed)
    assert code == 0 and lines[0].startswith("usage: mnist-gpu") and error == ""


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_help_shows_each_default_once(capsys, command):
    """Before, `eval --help` said "(default: the checkpoint's). (default: None)" and two defaults for --checkpoint."""
    code, lines, _ = run_main(capsys, command, "--help")
    text = " ".join(" ".join(lines).split())
    assert code == 0 and "(default: None)" not in text
    for chunk in re.split(r" (?=--\w+ [A-Z{])", text[text.index("options:"):]):
        assert chunk.count("default") <= 1, chunk
