"""What a newcomer meets first: the README's example runs as written, its commands work without an activated venv,
what they make is ignored by git, and an empty TEST_TMPDIR writes nothing into the working folder."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

REPOSITORY = Path(__file__).resolve().parent.parent
README = (REPOSITORY / "README.md").read_text(encoding="utf-8")


def block_after(heading, language):
    """The first fenced block of `language` after the heading."""
    section = README[README.index(heading):]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)[1]


def test_the_python_example_runs_as_written(tmp_path, monkeypatch):
    """Before, `model.predict(images)` used an `images` the example never defined (a NameError)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_TMPDIR", str(tmp_path / "tmp"))
    for name, box in (("seven.png", (8, 4, 20, 26)), ("photo.jpg", (10, 3, 18, 27))):
        picture = Image.new("RGB", (28, 30), "white")
        ImageDraw.Draw(picture).rectangle(box, fill="black")
        picture.save(name)
    namespace = {}
    exec(compile(block_after("## From Python", "python"), "README.md", "exec"), namespace)
    assert namespace["model"].predict(namespace["images"]).tolist() == [7, 2, 1, 0, 4]


def test_the_python_example_can_follow_the_shell_example():
    """A reader who runs the README in order: the Python example's run folders are not the shell example's (it reused
    runs/a, which the shell example had made: a FlagError)."""
    shell = set(re.findall(r"--(?:log_dir|checkpoint) (\S+)", block_after("## The command line at a glance", "sh")))
    python = set(re.findall(r'(?:log_dir=|load_checkpoint\()"([^"]+)"', block_after("## From Python", "python")))
    assert shell and python and not shell & python, (shell, python)


def test_the_shell_examples_need_no_activated_venv(tmp_path):
    """Each command of the README's example runs from the checkout with the venv's bin folder off the PATH."""
    lines = [line.split("#")[0].strip() for line in block_after("## The command line at a glance", "sh").splitlines()]
    assert lines and all(line.startswith(".venv/bin/") for line in lines), lines
    venv = Path(sys.executable).parent
    if not (REPOSITORY / ".venv" / "bin" / "mnist-gpu").exists() or venv.parent != REPOSITORY / ".venv":
        pytest.skip("the checkout's .venv is not the one running the tests")
    path = os.pathsep.join(folder for folder in os.environ["PATH"].split(os.pathsep) if Path(folder) != venv)
    assert shutil.which("mnist-gpu", path=path) is None
    finished = subprocess.run(["bash", "-c", ".venv/bin/mnist-gpu --version"], cwd=REPOSITORY, capture_output=True,
                              text=True, env={**os.environ, "PATH": path})
    assert finished.returncode == 0 and finished.stdout.startswith("mnist-gpu "), finished.stderr


@pytest.mark.parametrize("path", ["runs/a/model.ckpt-999.safetensors", "MNIST_data/t10k-labels-idx1-ubyte"])
def test_what_the_readme_makes_is_ignored_by_git(path):
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPOSITORY)
    assert ignored.returncode == 0, f"{path} is not ignored"


def test_an_empty_test_tmpdir_writes_nothing_into_the_working_folder(tmp_path):
    """TEST_TMPDIR (the tutorial's convention), even set but empty, is not read: the default run folder is the
    user's own data folder, never the working folder."""
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    finished = subprocess.run([sys.executable, "-m", "mnist_gpu", "--fake_data", "--backend", "numpy", "--max_steps",
                               "1"], cwd=work, capture_output=True, text=True,
                              env={**os.environ, "TEST_TMPDIR": "", "XDG_DATA_HOME": str(data)})
    assert finished.returncode == 0, finished.stderr
    assert os.listdir(work) == []
    assert f"log_dir {data}{os.sep}mnist-gpu{os.sep}runs{os.sep}" in finished.stderr.splitlines()[0]
