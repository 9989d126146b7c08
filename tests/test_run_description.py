"""A run says what it is (backend and why, seed, data, log_dir) on stderr; stdout stays the tutorial's."""
import os
import re

import pytest

from mnist_gpu.backends.gpu_probe import gpu_available

from helpers import needs_numba_cuda, run_main, snapshot, without_timings

FAST = ["--fake_data", "--hidden1", "8", "--hidden2", "4"]


def test_the_first_line_says_backend_seed_data_and_log_dir(tmp_path, capsys):
    code, lines, error = run_main(capsys, *FAST, "--log_dir", str(tmp_path), "--max_steps", "3")
    assert code == 0 and lines[0].startswith("Step 0: loss = ")  # stdout: only the tutorial's lines
    backend, why = ("cuda", "auto: a usable GPU") if gpu_available() else \
        ("cpu", "auto: no usable GPU, CuPy is not installed")
    first = error.splitlines()[0]
    assert re.fullmatch(rf"mnist-gpu: training on the {backend} backend \({re.escape(why)}\), seed \d+, data: fake "
                        rf"data \(--fake_data\), log_dir {re.escape(str(tmp_path))}", first), first


@pytest.mark.parametrize("missing, why", [
    pytest.param({"nvmath"}, "nvmath-python is not installed", marks=needs_numba_cuda),  # only nvmath missing
    ({"numba_cuda", "nvmath"}, "numba-cuda and nvmath-python are not installed"),
    (set(), None)])
def test_auto_picks_cuda_only_when_its_packages_are_installed_too(monkeypatch, missing, why):
    """A GPU CuPy can use is not enough for auto: without the cuda backend's other packages, cpu, saying why."""
    import importlib.util
    import sys
    from types import SimpleNamespace

    from mnist_gpu.backends import resolve_backend_name
    from mnist_gpu.backends.gpu_probe import why_no_gpu

    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(is_available=lambda: True))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name in missing else find_spec(name))
    if why is None and why_no_gpu() is not None:
        pytest.skip(f"this machine lacks a GPU package: {why_no_gpu()}")
    assert why_no_gpu() == why
    assert resolve_backend_name("auto") == (("cpu", f"auto: no usable GPU, {why}") if why
                                            else ("cuda", "auto: a usable GPU"))


def test_the_printed_seed_repeats_the_run(tmp_path, capsys, mnist_dir):
    common = ["--input_data_dir", mnist_dir, "--backend", "numpy", "--max_steps", "200"]
    code, first, error = run_main(capsys, *common, "--log_dir", str(tmp_path / "a"))
    assert code == 0
    assert f"data: mnist from {mnist_dir} (--input_data_dir)" in error
    seed = re.search(r"seed (\d+),", error)[1]
    code, again, _ = run_main(capsys, *common, "--log_dir", str(tmp_path / "b"), "--seed", seed)
    assert code == 0 and without_timings(again) == without_timings(first)


def test_data_from_the_shipped_copy_is_named(tmp_path, capsys):
    code, _, error = run_main(capsys, "--input_data_dir", str(tmp_path / "empty"), "--log_dir", str(tmp_path / "run"),
                              "--backend", "numpy", "--max_steps", "0")
    assert code == 0
    assert "data: mnist from the copy shipped in the package (" in error


def test_max_steps_0_writes_nothing(tmp_path, capsys):
    code, lines, error = run_main(capsys, *FAST, "--backend", "numpy", "--log_dir", str(tmp_path / "run"),
                                  "--max_steps", "0")
    assert code == 0 and lines == []
    assert error.splitlines()[-1] == ("mnist-gpu: nothing to do: --max_steps 0 (no step, no checkpoint, no event "
                                      "file; the log_dir is left as it was)")
    assert not (tmp_path / "run").exists()
    code, _, _ = run_main(capsys, *FAST, "--backend", "numpy", "--log_dir", str(tmp_path / "run"), "--max_steps", "2")
    assert code == 0  # nothing blocks the log_dir afterwards


def test_resume_says_where_from_and_when_there_is_nothing_left(tmp_path, capsys):
    common = [*FAST, "--backend", "numpy", "--log_dir", str(tmp_path)]
    assert run_main(capsys, *common, "--max_steps", "1000")[0] == 0
    code, lines, error = run_main(capsys, *common, "--resume", "--max_steps", "1001")
    assert code == 0 and "mnist-gpu: resuming from step 1000 (model.ckpt-999.safetensors) on the " in error
    before = snapshot(tmp_path)
    code, lines, error = run_main(capsys, *common, "--resume", "--max_steps", "1001")
    assert code == 0 and lines == []
    assert error.splitlines()[-1] == f"mnist-gpu: nothing to do: the run in {tmp_path} has taken its 1001 steps " \
                                     "(step 1000 is saved), --max_steps is 1001"
    assert snapshot(tmp_path) == before


def test_eval_notes_a_damaged_newest_checkpoint(tmp_path, capsys):
    common = [*FAST, "--backend", "numpy", "--log_dir", str(tmp_path)]
    assert run_main(capsys, *common, "--max_steps", "2000")[0] == 0
    newest = tmp_path / "model.ckpt-1999.safetensors"
    newest.write_bytes(newest.read_bytes()[:-9])
    code, lines, error = run_main(capsys, "eval", "--checkpoint", str(tmp_path), "--backend", "numpy")
    assert code == 0
    assert error.startswith(f"mnist-gpu: skipping a damaged checkpoint: {newest}: ")
    assert lines[0] == f"Evaluating {tmp_path / 'model.ckpt-999.safetensors'} (step 999)"


def test_an_existing_run_is_counted_in_words(tmp_path, capsys):
    (tmp_path / "checkpoint").write_text("")
    code, _, error = run_main(capsys, *FAST, "--log_dir", str(tmp_path))
    assert code == 2 and "already holds a run (1 file: checkpoint)" in error
    assert os.listdir(tmp_path) == ["checkpoint"]
