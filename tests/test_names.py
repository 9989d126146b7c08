"""Names as they really are on disk: bytes that are not UTF-8, newlines, names too long; and the folders a refused
command made, a report replaced on a full disk, the hints and errors a person or a Python caller reads."""
import hashlib
import os
import signal
import threading

import pytest

import mnist_gpu
from mnist_gpu import checkpoint as checkpoints
from mnist_gpu.report import CONFUSION_MATRIX, MISCLASSIFIED, REPORT

from helpers import fill_leaving, one_error_line, pages, run_main, small_filesystem

FAST = ("--fake_data", "--backend", "numpy")
NOT_UTF8 = b"run\xff\xfe"  # not UTF-8: Python holds these bytes as the surrogates \udcff\udcfe


def test_a_log_dir_that_is_not_utf8(tmp_path, capsys):
    """Before: model.ckpt-999 saved, then UnicodeEncodeError from the HParams summary; eval --report: a traceback
    and an empty folder."""
    log_dir = os.fsdecode(os.path.join(os.fsencode(tmp_path), NOT_UTF8))
    code, _, error = run_main(capsys, *FAST, "--max_steps", "1000", "--log_dir", log_dir)
    assert code == 0, error
    assert "Traceback" not in error and error.splitlines()[0].endswith(f"log_dir {tmp_path}/run\\xff\\xfe")
    code, _, error = run_main(capsys, *FAST, "--max_steps", "1100", "--log_dir", log_dir, "--resume")
    assert code == 0, error
    assert checkpoints.read_state(log_dir) == ["model.ckpt-999.safetensors", "model.ckpt-1099.safetensors"]
    report = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"report\xff"))
    code, lines, error = run_main(capsys, "eval", "--backend", "numpy", "--checkpoint", log_dir, "--report", report)
    assert code == 0, error
    assert lines[0] == f"Evaluating {tmp_path}/run\\xff\\xfe/model.ckpt-1099.safetensors (step 1099)"
    markdown = open(os.path.join(report, REPORT), encoding="utf-8").read()  # UTF-8, the bytes shown escaped
    assert f"Checkpoint `{tmp_path}/run\\xff\\xfe/model.ckpt-1099.safetensors`" in markdown


def test_an_image_name_with_a_newline_prints_on_one_line(tmp_path, capsys):
    from PIL import Image

    assert run_main(capsys, *FAST, "--max_steps", "1", "--log_dir", str(tmp_path / "run"))[0] == 0
    picture = Image.new("L", (30, 30), 0)
    picture.paste(255, (12, 4, 18, 26))
    name = str(tmp_path / "one\nline\x1b[2J.png")
    picture.save(name, format="PNG")
    code, lines, _ = run_main(capsys, "predict", "--backend", "numpy", "--checkpoint", str(tmp_path / "run"), name)
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith(f"{tmp_path}/one\\nline\\x1b[2J.png: ")


def test_a_refused_log_dir_or_report_leaves_no_folder_it_made(tmp_path, capsys):
    """The last name is too long for the file system: the parents this command made are taken back."""
    too_long = "x" * 300
    code, _, error = run_main(capsys, *FAST, "--log_dir", str(tmp_path / "a" / "b" / too_long))
    assert code == 1 and one_error_line(error).endswith("cannot be written: File name too long")
    assert os.listdir(tmp_path) == []
    assert run_main(capsys, *FAST, "--max_steps", "1", "--log_dir", str(tmp_path / "run"))[0] == 0
    code, _, error = run_main(capsys, "eval", "--backend", "numpy", "--checkpoint", str(tmp_path / "run"),
                              "--report", str(tmp_path / "c" / "d" / too_long))
    assert code == 1 and one_error_line(error).endswith("cannot be written: File name too long")
    assert os.listdir(tmp_path) == ["run"]


@pytest.mark.parametrize("flag", ["--log_dir", "--report"])
def test_an_empty_folder_name_is_refused_in_one_line(tmp_path, capsys, flag):
    assert run_main(capsys, *FAST, "--max_steps", "1", "--log_dir", str(tmp_path / "run"))[0] == 0
    arguments = (*FAST, "--log_dir", "") if flag == "--log_dir" else \
        ("eval", "--backend", "numpy", "--checkpoint", str(tmp_path / "run"), "--report", "")
    code, _, error = run_main(capsys, *arguments)
    assert code == 2
    assert one_error_line(error).startswith(f"mnist-gpu: error: {flag} is empty: name a folder")
    with pytest.raises(mnist_gpu.FlagError, match="^log_dir is empty: name a folder"):
        mnist_gpu.train(fake_data=True, backend="numpy", log_dir="", verbose=False)


def test_a_diverged_run_is_not_offered_a_resume(tmp_path, capsys, mnist_dir):
    """`--learning_rate 1e9` stops at step 100, leaving only an event file: re-running into it must not advise
    --resume, which has no checkpoint to continue from."""
    real = ("--input_data_dir", mnist_dir, "--backend", "numpy", "--seed", "1")
    code, _, _ = run_main(capsys, *real, "--learning_rate", "1e9", "--log_dir", str(tmp_path))
    assert code == 1 and not os.path.exists(tmp_path / checkpoints.STATE_FILE)
    code, _, error = run_main(capsys, *real, "--log_dir", str(tmp_path))
    assert code == 2
    line = one_error_line(error)
    assert line.startswith(f"mnist-gpu: error: --log_dir {tmp_path} holds a run that saved no checkpoint (1 file: "
                           "events.out.tfevents.")
    assert line.endswith("nothing to resume; pass --overwrite to delete it and start fresh, or another --log_dir")
    assert "--resume" not in line


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_report_is_replaced_as_a_whole_on_a_full_disk(tmp_path, capsys, mnist_dir):
    """Before: the new confusion_matrix.png beside the old report.md and misclassified.png."""
    runs = {}
    for seed in ("1", "2"):
        runs[seed] = tmp_path / f"run{seed}"
        assert run_main(capsys, "--input_data_dir", mnist_dir, "--backend", "numpy", "--seed", seed, "--hidden1",
                        "8", "--hidden2", "4", "--max_steps", "100", "--log_dir", str(runs[seed]))[0] == 0

    def report(run, folder):
        return run_main(capsys, "eval", "--checkpoint", str(run), "--input_data_dir", mnist_dir, "--backend",
                        "numpy", "--report", str(folder))

    assert report(runs["2"], tmp_path / "sizes")[0] == 0
    new_picture = os.path.getsize(tmp_path / "sizes" / CONFUSION_MATRIX)
    with small_filesystem(tmp_path / "full") as full:
        folder = full / "report"
        assert report(runs["1"], folder)[0] == 0
        old = {name: digest(folder / name) for name in (CONFUSION_MATRIX, MISCLASSIFIED, REPORT)}
        fill_leaving(full, pages=pages(new_picture))  # room for the new matrix, not for the next picture
        code, _, error = report(runs["2"], folder)
        assert code == 1
        assert one_error_line(error) == (f"mnist-gpu: error: --report: writing {folder / MISCLASSIFIED} failed: "
                                         "No space left on device")
        assert {name: digest(folder / name) for name in os.listdir(folder)} == old  # the old report, whole


def test_errors_raised_to_python_speak_python(tmp_path):
    log_dir = str(tmp_path / "a")
    mnist_gpu.train(fake_data=True, backend="numpy", max_steps=1, log_dir=log_dir, verbose=False)
    with pytest.raises(mnist_gpu.FlagError) as raised:
        mnist_gpu.train(fake_data=True, backend="numpy", max_steps=1, log_dir=log_dir, verbose=False)
    message = str(raised.value)
    assert message.startswith(f"log_dir={log_dir!r} already holds a run (")
    assert message.endswith("; pass resume=True to continue it from its latest checkpoint, or overwrite=True to "
                            "delete it and start fresh") and "--" not in message
    assert raised.value.command_line().startswith(f"--log_dir {log_dir} already holds a run")
    assert "pass --resume to continue it" in raised.value.command_line()
    for name in ("Error", "FlagError", "LogDirInUse", "DataError", "CheckpointError", "WriteError", "ImageError",
                 "BackendUnavailable", "CudaGraphError", "TrainingDiverged"):
        assert issubclass(getattr(mnist_gpu, name), mnist_gpu.Error), name
    assert issubclass(mnist_gpu.TrainingInterrupted, KeyboardInterrupt)
    assert not issubclass(mnist_gpu.TrainingInterrupted, Exception)


def test_an_interrupted_python_run_says_how_to_continue_it_in_python(tmp_path):
    log_dir = str(tmp_path / "b")
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(mnist_gpu.TrainingInterrupted) as raised:
            mnist_gpu.train(fake_data=True, backend="numpy", max_steps=100000, seed=1, log_dir=log_dir,
                            verbose=False)
    finally:
        timer.cancel()
    step = raised.value.step
    assert str(raised.value) == (f"interrupted at step {step}; saved model.ckpt-{step}.safetensors; to continue: "
                                 f"mnist_gpu.train(resume=True, log_dir={log_dir!r}, max_steps=100000, "
                                 "backend='numpy', fake_data=True)")
