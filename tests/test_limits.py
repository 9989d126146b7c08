"""Resource limits set for real on a real process: `ulimit -v` (RLIMIT_AS), a memory control group, open files and
threads (RLIMIT_NOFILE, RLIMIT_NPROC).

The memory check (memory.py) takes the tightest of the host's available memory, the process's
address-space limit and its control group's limit: a run that cannot fit is refused before
anything is written (exit 2, one line naming the limit), instead of a traceback after its first
checkpoint or a kill by the kernel.
"""
import contextlib
import glob
import io
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mnist_gpu import trainer
from mnist_gpu.cli import main
from mnist_gpu.memory import cgroup_folders

from helpers import as_nobody, run_main

PYTHON = f"{shlex.quote(sys.executable)} -m mnist_gpu"


def shell(command):
    finished = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
    return finished.returncode, finished.stdout, finished.stderr


@pytest.mark.parametrize("kilobytes, flags", [
    (250_000, "--backend numpy --max_steps 1000"),  # the issue's: it saved model.ckpt-999, then failed evaluating
    (2_000_000, "--hidden1 300000 --max_steps 10"),  # "Unable to allocate 897 MiB", a traceback
])
def test_an_address_space_limit_is_a_refusal_before_anything_is_written(tmp_path, mnist_dir, kilobytes, flags):
    log_dir = tmp_path / "run"
    code, _, error = shell(f"ulimit -v {kilobytes}; {PYTHON} {flags} --seed 1 "
                           f"--input_data_dir {shlex.quote(mnist_dir)} --log_dir {shlex.quote(str(log_dir))}")
    assert code == 2, error
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    assert re.search(rf"need about [\d.]+ [MGT]B for the model and its buffers, with the rest of the run; this "
                     rf"process may take [\d.]+ [KMG]?B more: this process's address-space limit of [\d.]+ [MG]B "
                     rf"\(ulimit -v {kilobytes}\), [\d.]+ MB of it mapped already$", error), error
    assert not log_dir.exists()


def new_memory_cgroup(limit):
    """A child of this process's memory control group limited to `limit` bytes (v1 or v2), or skip."""
    if os.geteuid() != 0:
        pytest.skip("making a control group needs root (CI runs as root)")
    folders = cgroup_folders()
    if not folders:
        pytest.skip("no memory control group here")
    parent, version = folders[0]
    folder = os.path.join(parent, f"mnist_gpu_test_{os.getpid()}")
    try:
        os.mkdir(folder)
        with open(os.path.join(folder, "memory.max" if version == 2 else "memory.limit_in_bytes"), "w") as stream:
            stream.write(str(limit))
    except OSError as error:
        if os.path.isdir(folder):
            os.rmdir(folder)
        pytest.skip(f"cannot make a memory control group in {parent}: {error}")
    return folder, version


def test_a_control_group_limit_is_a_refusal_before_anything_is_written(tmp_path):
    """The group allows 400 MB; the model alone needs 3.6 GB. Before, the check read MemAvailable only and
    the kernel killed the run in the middle of allocating."""
    folder, version = new_memory_cgroup(400 * 2 ** 20)
    log_dir = tmp_path / "run"
    try:
        def enter():
            with open(os.path.join(folder, "cgroup.procs"), "w") as stream:
                stream.write(str(os.getpid()))

        finished = subprocess.run([sys.executable, "-m", "mnist_gpu", "--fake_data", "--backend", "numpy",
                                   "--hidden1", "300000", "--max_steps", "10", "--log_dir", str(log_dir)],
                                  capture_output=True, text=True, timeout=600, preexec_fn=enter)
    finally:
        os.rmdir(folder)
    limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
    assert finished.returncode == 2, finished.stderr
    assert re.search(rf"this process may take [\d.]+ [KMG]?B more: the control group {re.escape(folder)}'s limit of "
                     rf"419.4 MB \({limit_file}\), [\d.]+ [KM]B of it in use$", finished.stderr), finished.stderr
    assert not log_dir.exists()


SWEEP_40 = "sweep --seed 1-40 --fake_data --backend numpy --hidden1 8 --hidden2 4 --max_steps 2"


def test_a_population_raises_its_soft_open_file_limit(tmp_path):
    """`ulimit -Sn 40` (the hard limit left as it is) under 40 members, each keeping its event file open: the run
    raises its own soft limit and trains (it failed at the first save: "Too many open files")."""
    log_dir = tmp_path / "population"
    code, _, error = shell(f"ulimit -Sn 40; {PYTHON} {SWEEP_40} --log_dir {shlex.quote(str(log_dir))}")
    assert code == 0, error[-2000:]
    assert len(os.listdir(log_dir)) == 40 + 3  # the members' folders, population.json, results.csv, results.md


def test_a_population_the_hard_open_file_limit_cannot_hold_is_refused_before_anything_is_written(tmp_path):
    log_dir = tmp_path / "population"
    code, _, error = shell(f"ulimit -n 100; {PYTHON} {SWEEP_40} --log_dir {shlex.quote(str(log_dir))}")
    assert code == 2, error
    assert error.splitlines() == ["mnist-gpu: error: a population of 40 members keeps 40 event files open, but this "
                                  "process may open at most 100 files (ulimit -Hn): at most 36 members; raise the "
                                  "limit or train fewer"]
    assert not log_dir.exists()


def test_a_run_the_open_file_limit_cannot_hold_is_refused_in_its_own_words(tmp_path):
    """A run of one under `ulimit -n 50` (it was "a population of 1 members keeps 1 event files open ... at most 0
    members")."""
    log_dir = tmp_path / "run"
    code, _, error = shell(f"ulimit -n 50; {PYTHON} --fake_data --backend numpy --max_steps 1 --log_dir "
                           f"{shlex.quote(str(log_dir))}")
    assert code == 2 and error.splitlines() == [
        "mnist-gpu: error: a run needs about 65 open files (its event file, the data, the libraries), but this "
        "process may open at most 50 (ulimit -Hn); raise the limit"], error
    assert not log_dir.exists()


def test_member_saves_go_on_where_no_thread_can_start():
    """A real thread limit (RLIMIT_NPROC 1, in a forked process of the user nobody: root is exempt): every member's
    save still runs, each in turn on the calling thread. (Starting a save thread raised "can't start new thread", a
    traceback after training, as under a tight `ulimit -v`.) Without the limit some saves run on the save threads."""
    def saves(limit):
        def call():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (limit, resource.getrlimit(resource.RLIMIT_NPROC)[1]))

            def save(index):
                time.sleep(0.05)  # long enough for each thread that starts to take a member
                return index, threading.current_thread().name
            return json.dumps(trainer.each_member(save, 5))
        return as_nobody(call)

    limited, free = json.loads(saves(1)), json.loads(saves(None))
    assert limited == [[index, "MainThread"] for index in range(5)]
    assert [index for index, _ in free] == list(range(5)) and {name for _, name in free} > {"MainThread"}


@pytest.fixture
def open_folder():
    """A folder the user nobody can write (pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o777)
        yield Path(folder)


def test_a_study_worker_that_cannot_start_its_heartbeat_takes_no_trial(open_folder, mnist_dir, capsys, monkeypatch):
    """The same real thread limit on a study's worker: one line, exit 1, and no trial taken (without its beat, other
    workers would take its trials over while it trained them)."""
    optuna = pytest.importorskip("optuna", reason="the sweep extra (pip install '.[sweep]') is not installed")
    from mnist_gpu.study_journal import journal_storage

    monkeypatch.setenv("XDG_CACHE_HOME", str(open_folder))
    flags = ["sweep", "--learning_rate", "0.01,0.1", "--trials", "2", "--backend", "numpy", "--max_steps", "2",
             "--hidden1", "8", "--input_data_dir", mnist_dir, "--log_dir"]
    # The same study once without the limit: every module it needs is imported before the fork (nobody may not be
    # able to read this Python's library), and the data cache is made.
    assert run_main(capsys, *flags, str(open_folder / "unlimited"))[0] == 0
    log_dir = open_folder / "study"

    def call():
        resource.setrlimit(resource.RLIMIT_NPROC, (1, resource.getrlimit(resource.RLIMIT_NPROC)[1]))
        with contextlib.redirect_stderr(io.StringIO()) as error:
            code = main([*flags, str(log_dir)])
        return f"{code}\n{error.getvalue()}"

    found = as_nobody(call)
    assert "\n" in found, found
    code, error = found.split("\n", 1)
    assert code == "1" and error.splitlines()[-1] == (
        "mnist-gpu: error: this worker cannot start its heartbeat thread (can't start new thread: an address-space "
        "or thread limit); it took no trial"), error
    study = optuna.load_study(study_name="mnist-gpu", storage=journal_storage(str(log_dir / "study.journal")))
    assert [trial.state.name for trial in study.get_trials()] == ["WAITING", "WAITING"]


@pytest.mark.slow
def test_a_population_that_passes_the_memory_check_fits_its_address_space(tmp_path):
    """Under `ulimit -v`, a study's populations of 28 and 32 members of 1024 x 512 (about 0.55 and 0.62 GB by the
    check, with the rest of the run) train and save. Before, the 16 save threads' malloc arenas (64 MB of address
    space each) broke it: out of memory, a segfault or a hang in 6 of 8 tries at these limits."""
    for kilobytes in (1_060_000, 1_120_000):
        log_dir = tmp_path / str(kilobytes)
        code, _, error = shell(f"ulimit -v {kilobytes}; timeout 300 {PYTHON} sweep --fake_data --backend numpy "
                               f"--hidden1 1024 --hidden2 512 --seed 1-4 --learning_rate 0.001:0.1:log --trials 8 "
                               f"--population 32 --max_steps 1 --log_dir {shlex.quote(str(log_dir))}")
        assert code == 0 and "Traceback" not in error, error[-2000:]
        assert len(glob.glob(str(log_dir / "pop*" / "trial*" / "model.ckpt-0.safetensors"))) == 8 * 4
