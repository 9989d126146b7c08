"""A run that cannot write, cannot fit, or diverges: one line naming what and why, and nothing lost."""
import errno
import io
import os
import re
import subprocess
import sys

import pytest

from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import trainer

from helpers import as_nobody, one_error_line, run_main, snapshot

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--seed", "1"]


def test_log_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "not_a_folder"
    path.write_text("mine")
    code, _, error = run_main(capsys, *FAST, "--log_dir", str(path))
    assert code == 1
    assert one_error_line(error) == f"mnist-gpu: error: --log_dir {path} is a file, not a folder"
    assert path.read_text() == "mine"


def main_as_nobody(*arguments):
    """(exit code, stderr) of the command line run in a forked process of the user nobody: real permission faults."""
    from mnist_gpu.cli import main

    def run():
        sys.stderr = io.StringIO()  # not pytest's capture, which the child shares with the parent
        try:
            code = main(list(arguments))
        except SystemExit as exit_info:
            code = exit_info.code
        return f"{code}\n{sys.stderr.getvalue()}"

    code, error = as_nobody(run).split("\n", 1)
    return int(code), error


def test_log_dir_that_cannot_be_written():
    """A real EACCES: a process of the user nobody, its log_dir a folder of root's (mode 0755), or a new folder
    inside it (a real read-only file system, EROFS, is tested in test_disk_faults.py)."""
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root (CI runs as root)")
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="mnist-gpu-not-yours-")  # not under tmp_path: nobody must reach it
    try:
        os.chmod(folder, 0o755)
        for log_dir in (folder, os.path.join(folder, "run")):
            code, error = main_as_nobody(*FAST, "--log_dir", log_dir)
            assert code == 1
            assert one_error_line(error) == f"mnist-gpu: error: --log_dir {log_dir} cannot be written: " \
                                            f"{os.strerror(errno.EACCES)}"
            assert os.listdir(folder) == []
    finally:
        shutil.rmtree(folder)


def test_input_data_dir_that_cannot_take_a_download(tmp_path, capsys):
    blocked = tmp_path / "a_file"
    blocked.write_text("mine")
    code, _, error = run_main(capsys, "--dataset", "fashion_mnist", "--input_data_dir", str(blocked),
                              "--log_dir", str(tmp_path / "run"), "--backend", "numpy")
    assert code == 1
    assert one_error_line(error) == ("mnist-gpu: error: train-images-idx3-ubyte.gz must be downloaded, but "
                                     f"--input_data_dir {blocked} is a file, not a folder")
    assert not (tmp_path / "run").exists()


def test_cuda_graph_on_needs_the_cuda_backend(tmp_path, capsys):
    code, _, error = run_main(capsys, *FAST, "--cuda_graph", "on", "--log_dir", str(tmp_path / "run"))
    assert code == 2
    assert one_error_line(error) == "mnist-gpu: error: --cuda_graph on needs the cuda backend; this run would use " \
                                    "numpy (asked for)"
    assert not (tmp_path / "run").exists()


def test_sizes_that_cannot_fit_are_refused_before_anything_is_allocated(tmp_path, capsys):
    code, _, error = run_main(capsys, *FAST, "--hidden1", "100000000", "--log_dir", str(tmp_path / "run"))
    assert code == 2
    line = one_error_line(error)
    assert re.fullmatch(r"mnist-gpu: error: --hidden1 100000000 --hidden2 4 --batch_size 100 need about [\d.]+ TB "
                        r"for the model and its buffers, with the rest of the run; this process may take [\d.]+ "
                        r"[KMGT]?B more: the host's available memory \(MemAvailable\)", line), line
    assert not (tmp_path / "run").exists()


def test_a_loss_that_blows_up_and_stays_up_stops_the_run(tmp_path, capsys, mnist_dir):
    code, lines, error = run_main(capsys, "--input_data_dir", mnist_dir, "--log_dir", str(tmp_path),
                                  "--backend", "numpy", "--seed", "1", "--learning_rate", "1000", "--max_steps", "2000")
    assert code == 1
    line = one_error_line(error)
    assert line.startswith("mnist-gpu: error: loss is ") and " at step 200 and was " in line
    assert "it diverged; try a smaller --learning_rate (now 1000.0)" in line
    assert [line.split(":")[0] for line in lines] == ["Step 0", "Step 100", "Step 200"]


@pytest.mark.parametrize("loss, earlier", [(30.0, 2.0), (2.0, 30.0), (23.0, 30.0), (1e9, None), (0.0, 1e9)])
def test_one_high_loss_read_is_not_divergence(loss, earlier):
    assert trainer.divergence(200, loss, earlier) is None


@pytest.mark.parametrize("loss, earlier", [(23.1, 23.1), (500.0, 400.0), (float("nan"), 2.0), (float("inf"), None)])
def test_two_high_reads_or_a_non_finite_one_are(loss, earlier):
    assert trainer.divergence(200, loss, earlier).startswith(f"loss is {loss:.4g} at step 200")


def test_refusals_leave_the_log_dir_unchanged(tmp_path, capsys):
    assert run_main(capsys, *FAST, "--log_dir", str(tmp_path), "--max_steps", "3")[0] == 0
    before = snapshot(tmp_path)
    assert run_main(capsys, *FAST, "--log_dir", str(tmp_path), "--hidden1", "100000000", "--resume")[0] == 2
    assert snapshot(tmp_path) == before


def test_a_reader_that_leaves_does_not_stop_the_run(tmp_path):
    """`mnist-gpu | head -1`: stdout closes after the first line; the run finishes and saves, no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "mnist_gpu", *FAST, "--log_dir", str(tmp_path),
                                "--max_steps", "3000"],  # still printing for a second after the first line
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("Step 0: ")
    process.stdout.close()
    error = process.stderr.read()
    assert process.wait() == 0, error
    assert "stdout was closed by its reader; the command goes on" in error and "Traceback" not in error
    assert checkpoints.Saver(str(tmp_path)).latest()[0].global_step == 3000
