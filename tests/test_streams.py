"""Standard streams that go away, for real: a reader that leaves a pipe, a closed descriptor, a full device.

Each command runs in a real shell with real redirections (`2>&1 | head -N`, `>&-`, `2>&-`,
`>/dev/full`). Lost output never loses a run: training saves its final checkpoint and exits with
its own code; eval, predict and check, whose result is what they print, exit 1 when stdout
could not take it, except when its reader closed it on purpose (docs/cli.md, "Streams").
"""
import os
import shlex
import subprocess
import sys

import pytest
from PIL import Image

from mnist_gpu import checkpoint as checkpoints

PYTHON = f"{shlex.quote(sys.executable)} -m mnist_gpu"


def shell(command, cwd=None):
    """Run `command` in bash; returns (exit code of its first pipeline stage, stdout, stderr)."""
    finished = subprocess.run(["bash", "-c", f"{command}; exit ${{PIPESTATUS[0]}}"], capture_output=True,
                              text=True, errors="replace", cwd=cwd, timeout=600)
    return finished.returncode, finished.stdout, finished.stderr


def quoted(path):
    return shlex.quote(str(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A log_dir with one checkpoint (fake data, numpy: a second), and a picture of a digit."""
    folder = tmp_path_factory.mktemp("streams")
    code, _, error = shell(f"{PYTHON} --fake_data --backend numpy --max_steps 1 --seed 3 "
                           f"--log_dir {quoted(folder / 'run')}")
    assert code == 0, error
    picture = Image.new("L", (40, 40), 255)
    picture.paste(0, (15, 5, 25, 35))
    picture.save(folder / "one.png")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("lines", [1, 3, 14])
def test_a_pipe_that_closes_keeps_the_run(tmp_path, mnist_dir, lines):
    """`mnist-gpu --max_steps 2500 ... 2>&1 | head -N`: the reader leaves after N lines of the one pipe that
    carries both streams; the run still trains to the end, saves step 2499, and exits 0 (the run finished)."""
    log_dir = tmp_path / "run"
    code, out, error = shell(f"{PYTHON} --max_steps 2500 --seed 1 --input_data_dir {quoted(mnist_dir)} "
                             f"--log_dir {quoted(log_dir)} 2>&1 | head -{lines}")
    assert code == 0, out + error
    assert len(out.splitlines()) == lines and "Traceback" not in out and error == ""
    assert checkpoints.read_state(str(log_dir))[-1] == "model.ckpt-2499.safetensors"
    assert checkpoints.Saver(str(log_dir)).latest()[0].global_step == 2500


@pytest.mark.slow
def test_the_note_about_a_lost_stdout_goes_to_a_stderr_that_still_works(tmp_path, mnist_dir):
    log_dir = tmp_path / "run"
    code, out, error = shell(f"{PYTHON} --max_steps 1100 --seed 1 --backend numpy --input_data_dir "
                             f"{quoted(mnist_dir)} --log_dir {quoted(log_dir)} | head -1")
    assert code == 0, error
    assert out.startswith("Step 0: ") and len(out.splitlines()) == 1
    assert "mnist-gpu: stdout was closed by its reader; the command goes on without printing its lines" in error
    assert "Traceback" not in error
    assert checkpoints.read_state(str(log_dir))[-1] == "model.ckpt-1099.safetensors"


def test_closed_stdout(tmp_path, trained):
    """`>&-`: training saves and exits 0, saying so; eval and predict, whose output is their result, exit 1."""
    code, _, error = shell(f"{PYTHON} --fake_data --backend numpy --max_steps 2 --log_dir {quoted(tmp_path / 'a')} >&-")
    assert code == 0, error
    assert error.splitlines()[-1] == "mnist-gpu: stdout is closed; the command goes on without printing its lines"
    assert checkpoints.read_state(str(tmp_path / "a")) == ["model.ckpt-1.safetensors"]
    code, _, error = shell(f"{PYTHON} eval --backend numpy --checkpoint {quoted(trained / 'run')} >&-")
    assert code == 1 and "Traceback" not in error
    assert error.splitlines()[-1] == "mnist-gpu: error: stdout is closed: what `eval` printed was lost"
    code, _, error = shell(f"{PYTHON} predict --backend numpy --checkpoint {quoted(trained / 'run')} "
                           f"{quoted(trained / 'one.png')} >&-")
    assert code == 1 and "Traceback" not in error
    assert error.splitlines()[-1] == "mnist-gpu: error: stdout is closed: what `predict` printed was lost"


def test_closed_stderr(tmp_path, trained):
    """`2>&-`: nothing of mnist_gpu's own reaches stdout, and a refusal keeps its exit code (2)."""
    log_dir = tmp_path / "run"
    code, out, _ = shell(f"{PYTHON} --fake_data --backend numpy --max_steps 2 --seed 1 "
                         f"--log_dir {quoted(log_dir)} 2>&-")
    assert code == 0
    assert out.splitlines()[0].startswith("Step 0: ") and "mnist-gpu" not in out
    code, out, _ = shell(f"{PYTHON} --fake_data --backend numpy --max_steps 2 --log_dir {quoted(log_dir)} 2>&-")
    assert (code, out) == (2, "")  # the log_dir already holds a run
    code, out, _ = shell(f"{PYTHON} eval --backend numpy --checkpoint {quoted(trained / 'run')} 2>&-")
    assert code == 0 and out.startswith("Evaluating ") and "mnist-gpu" not in out


def test_full_stdout(tmp_path, trained):
    """`>/dev/full`: every write to stdout fails with ENOSPC. Training goes on and says so; eval exits 1."""
    code, _, error = shell(f"{PYTHON} --fake_data --backend numpy --max_steps 2 --log_dir "
                           f"{quoted(tmp_path / 'a')} >/dev/full")
    assert code == 0, error
    assert error.splitlines()[-1] == ("mnist-gpu: stdout cannot be written (No space left on device); the command "
                                      "goes on without printing its lines")
    assert checkpoints.read_state(str(tmp_path / "a")) == ["model.ckpt-1.safetensors"]
    code, _, error = shell(f"{PYTHON} eval --backend numpy --checkpoint {quoted(trained / 'run')} >/dev/full")
    assert code == 1 and "Traceback" not in error
    assert error.splitlines()[-1] == ("mnist-gpu: error: stdout cannot be written (No space left on device): what "
                                      "`eval` printed was lost")


@pytest.mark.slow
def test_check_into_a_pipe_that_closes():
    code, out, error = shell(f"{PYTHON} check | head -1")
    assert code == 0, error  # every usable backend passed: the reader leaving changes nothing
    assert out.startswith("mnist-gpu check (") and len(out.splitlines()) == 1
    assert "Traceback" not in error and "BrokenPipeError" not in error


def test_help_into_a_pipe_that_closes():
    code, out, error = shell(f"{PYTHON} train --help | head -1")
    assert code == 0 and out.startswith("usage: mnist-gpu train") and error == ""


@pytest.mark.parametrize("asked", ["--help", "sweep --help", "--version"])
def test_help_and_version_into_a_full_stdout_is_an_error(asked):
    """What the command is asked to print is its result: lost, it is exit 1 and one line (it was exit 0, silent)."""
    code, _, error = shell(f"{PYTHON} {asked} >/dev/full")
    assert code == 1 and error == (f"mnist-gpu: error: stdout cannot be written (No space left on device): what "
                                   f"`{asked}` printed was lost\n"), error


def test_a_name_with_a_newline_or_an_escape_code_prints_as_one_escaped_line(tmp_path):
    log_dir = tmp_path / "two\nlines\x1b[31mred"
    code, out, error = shell(f"{PYTHON} --fake_data --backend numpy --max_steps 1 "
                             f"--log_dir $'{tmp_path}/two\\nlines\\x1b[31mred'")
    assert code == 0, error
    assert os.path.isdir(log_dir)
    first = error.splitlines()[0]
    assert first.endswith(f"log_dir {tmp_path}/two\\nlines\\x1b[31mred") and "\x1b" not in error
