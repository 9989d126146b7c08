"""No writable folder for Numba's cache: an installation and a HOME that cannot be written, for real.

The package is copied onto a real tmpfs that is then remounted read-only, HOME lies on it too,
and the commands run from that copy. Before, Numba refused to define the cpu kernels ("cannot
cache function 'prefetch_row': no locator available", a traceback on train, predict and check);
now they compile into a private temporary folder, said in one line, removed at exit.
"""
import os
import shutil
import subprocess
import sys

import pytest

from helpers import small_filesystem

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTE = "mnist-gpu: Numba cannot keep compiled kernels here: no writable cache folder beside mnist_gpu's kernels or " \
       "under {home}; compiling them into "


@pytest.fixture
def read_only_install(tmp_path):
    """(environment, the read-only folder): mnist_gpu importable only from a read-only copy, HOME read-only."""
    with small_filesystem(tmp_path / "install", size="64m") as install:
        ignore = shutil.ignore_patterns("__pycache__", "data")
        # As an install lays it out: kernels/ copied into the package (in place of the checkout's link to it).
        shutil.copytree(os.path.join(REPOSITORY, "mnist_gpu"), install / "mnist_gpu",
                        ignore=shutil.ignore_patterns("__pycache__", "data", "kernels"))
        shutil.copytree(os.path.join(REPOSITORY, "kernels"), install / "mnist_gpu" / "kernels", ignore=ignore)
        (install / "home").mkdir()
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(install)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs read-only here: {remounted.stderr.strip()}")
        environment = {name: value for name, value in os.environ.items()
                       if name not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
        environment.update(PYTHONPATH=str(install), HOME=str(install / "home"), TMPDIR=str(tmp_path))
        where = subprocess.run([sys.executable, "-c", "import mnist_gpu; print(mnist_gpu.__file__)"],
                               capture_output=True, text=True, env=environment, cwd=tmp_path)
        assert where.stdout.startswith(str(install)), where.stdout + where.stderr
        yield environment, install


def run(arguments, environment, cwd):
    return subprocess.run([sys.executable, "-m", "mnist_gpu", *arguments], capture_output=True, text=True,
                          env=environment, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_train_and_predict_compile_into_a_private_folder(tmp_path, read_only_install):
    environment, install = read_only_install
    trained = run(["--fake_data", "--backend", "cpu", "--max_steps", "2", "--log_dir", str(tmp_path / "run")],
                  environment, tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    notes = [line for line in trained.stderr.splitlines() if line.startswith("mnist-gpu: Numba cannot")]
    assert len(notes) == 1 and notes[0].startswith(NOTE.format(home=install / "home")), trained.stderr
    assert notes[0].endswith(" for this run only (set NUMBA_CACHE_DIR to a writable folder to keep them)")
    private = notes[0].split("compiling them into ")[1].split(" for this run only")[0]
    assert os.path.dirname(private) == str(tmp_path) and not os.path.exists(private)  # removed at exit
    from PIL import Image

    picture = Image.new("L", (30, 30), 0)
    picture.paste(255, (12, 4, 18, 26))
    picture.save(tmp_path / "one.png")
    predicted = run(["predict", "--backend", "cpu", "--checkpoint", str(tmp_path / "run"), str(tmp_path / "one.png")],
                    environment, tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith(f"{tmp_path / 'one.png'}: ") and "Traceback" not in predicted.stderr


@pytest.mark.slow
def test_check_compiles_into_a_private_folder(tmp_path, read_only_install):
    environment, _ = read_only_install
    checked = run(["check"], environment, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "backend cpu: usable" in checked.stdout and "Traceback" not in checked.stderr


@pytest.mark.slow
def test_a_study_compiles_into_a_private_folder(tmp_path, read_only_install):
    """A sweep that is an Optuna study (its flag checks and its workers make backends of their own): the same one note
    (it was a RuntimeError traceback: "cannot cache function 'prefetch_row'")."""
    pytest.importorskip("optuna", reason="the sweep extra (pip install '.[sweep]') is not installed")
    environment, install = read_only_install
    swept = run(["sweep", "--fake_data", "--backend", "cpu", "--learning_rate", "0.001:0.1:log", "--trials", "1",
                 "--max_steps", "2", "--hidden1", "8", "--log_dir", str(tmp_path / "study")], environment, tmp_path)
    assert swept.returncode == 0 and "Traceback" not in swept.stderr, swept.stderr
    notes = [line for line in swept.stderr.splitlines() if line.startswith("mnist-gpu: Numba cannot")]
    assert len(notes) == 1 and notes[0].startswith(NOTE.format(home=install / "home")), swept.stderr


@pytest.mark.slow
def test_the_packages_get_backend_compiles_into_a_private_folder(tmp_path, read_only_install):
    """mnist_gpu.get_backend("cpu") from Python: it was backends.get_backend, which raised Numba's RuntimeError
    ("cannot cache function ...") here; now the one the commands use, its note to a caller's `note`."""
    environment, install = read_only_install
    made = subprocess.run([sys.executable, "-c", "import mnist_gpu; notes = []; "
                           "backend = mnist_gpu.get_backend('cpu', notes.append); print(backend.name, len(notes)); "
                           "print(notes[0])"], capture_output=True, text=True, env=environment, cwd=tmp_path,
                          timeout=600)
    assert made.returncode == 0 and "Traceback" not in made.stderr, made.stderr
    name, count = made.stdout.splitlines()[0].split()
    assert (name, count) == ("cpu", "1")
    assert ("mnist-gpu: " + made.stdout.splitlines()[1]).startswith(NOTE.format(home=install / "home"))
