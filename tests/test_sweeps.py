"""Sweeps on Optuna (search.py): real workers (processes), a real journal file, a real PostgreSQL server, real signals.

No part of Optuna or of a database is replaced: the tests run `mnist-gpu sweep` as a user would, kill
it as a machine would, and read the study back with Optuna itself. Small layers and an odd batch keep
each population short (tests/test_populations.py's shapes); every evaluation counts all 70,000 examples.
"""
import collections
import contextlib
import csv
import getpass
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import mnist_gpu
from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import population as populations
from mnist_gpu import search, study_journal
from mnist_gpu.flag_values import Range, searchable_int, searchable_learning_rate

from helpers import PAGE, fill_leaving, one_error_line, run_main, small_filesystem

optuna = pytest.importorskip("optuna", reason="the sweep extra (pip install '.[sweep]') is not installed")

SHAPE = ["--hidden2", "5", "--batch_size", "13"]
GRID = ["--learning_rate", "0.01,0.03,0.1", "--hidden1", "8,12", "--hidden2", "4,5", "--batch_size", "13"]  # 12


def command(log_dir, mnist_dir, *more):
    return [sys.executable, "-m", "mnist_gpu", "sweep", "--backend", "cpu", "--input_data_dir", mnist_dir,
            "--log_dir", str(log_dir), "--seed", "1", *more]


def load(log_dir=None, storage=None, name="mnist-gpu"):
    """The study as Optuna itself reads it."""
    if storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(log_dir / search.STUDY_JOURNAL)))
    elif storage.startswith("postgresql://"):
        storage = "postgresql+psycopg://" + storage[len("postgresql://"):]
    return optuna.load_study(study_name=name, storage=storage)


def study_table(log_dir):
    with open(log_dir / populations.RESULTS_CSV, newline="") as stream:
        return list(csv.DictReader(stream))


def snapshot(folder):
    """{path: bytes} of every file under `folder`, to prove a command changed nothing."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}


def final_variables(folder):
    return checkpoints.Saver(str(folder)).latest()[0].variables


# -- flags -------------------------------------------------------------------------------------------------------
def test_searchable_values_are_lists_or_ranges():
    assert searchable_int("64,128") == (64, 128)
    assert searchable_int("32:512") == Range(32, 512, False, int)
    assert searchable_learning_rate("0.001:0.3:log") == Range(0.001, 0.3, True, float)
    assert repr(searchable_learning_rate("0.001:0.3:log")) == "0.001:0.3:log"
    for bad, why in (("0.3:0.001", "is empty"), ("0.1:0.1", "is empty"), ("0.001:0.3:lin", "LOW:HIGH or"),
                     ("a:b", "each a finite number > 0"), ("1:2:3:4", "LOW:HIGH or")):
        with pytest.raises(Exception, match=why):
            searchable_learning_rate(bad)
    with pytest.raises(Exception, match="LOW:HIGH:log, each a positive integer, got '32.5:64'"):
        searchable_int("32.5:64")


def test_eval_every_moves_the_checkpoints_and_evaluations(tmp_path, capsys, mnist_dir):
    """--eval_every (train's and sweep's): a checkpoint and the three evaluations every N steps and after the last."""
    code, lines, error = run_main(capsys, "--max_steps", "250", "--eval_every", "100", "--seed", "1", "--hidden1", "8",
                                  *SHAPE, "--backend", "cpu", "--input_data_dir", mnist_dir, "--log_dir",
                                  str(tmp_path / "run"))
    assert code == 0, error
    assert sum(line == "Training Data Eval:" for line in lines) == 3
    expected = [checkpoints.checkpoint_name(step) for step in (99, 199, 249)]
    assert checkpoints.read_state(str(tmp_path / "run")) == expected


# -- bad input: one line, nothing written ---------------------------------------------------------------------------
@pytest.mark.parametrize("flags, code, message", [
    (["--learning_rate", "0.3:0.001", "--trials", "4"], 2, "the range '0.3:0.001' is empty"),
    (["--hidden1", "8.5:64", "--trials", "4"], 2, "each a positive integer, got '8.5:64'"),
    (["--learning_rate", "0.001:0.3:lin", "--trials", "4"], 2, "expected a range LOW:HIGH or LOW:HIGH:log"),
    (["--learning_rate", "0.001:0.3:log"], 2, "--learning_rate 0.001:0.3:log is a range: pass --trials, how many"),
    (["--learning_rate", "0.01,0.1", "--hidden1", "8,12", "--trials", "5"], 2,
     "--trials 5 is more than the grid has: 4 points (2 --hidden1 x 2 --learning_rate)"),
    (["--learning_rate", "0.001:0.3", "--sampler", "grid", "--trials", "4"], 2, "--sampler grid takes lists"),
    (["--learning_rate", "0.01,0.1", "--storage", "postgresql://mnist@127.0.0.1:1/nothing"], 1,
     "--storage postgresql://mnist@127.0.0.1:1/nothing cannot be reached"),
    (["--learning_rate", "0.01,0.1", "--storage", "not-a-url"], 2, "--storage not-a-url: expected a database URL"),
    (["--learning_rate", "0.01,0.1", "--trials", "2", "--max_steps", "0"], 2, "--max_steps 0 trains nothing"),
    (["--hidden1", "8,12", "--batch_size", "10:6000", "--trials", "3"], 2, "larger than the validation set"),
    (["--learning_rate", "0.01,0.1", "--trials", "2", "--resume"], 2, "--resume: no study 'mnist-gpu'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, mnist_dir, flags, code, message):
    log_dir = tmp_path / "sweep"
    found, _, error = run_main(capsys, "sweep", "--log_dir", str(log_dir), "--input_data_dir", mnist_dir,
                               "--backend", "numpy", *flags)
    assert found == code
    assert message in error.splitlines()[-1] and "Traceback" not in error, error
    if code == 1 or "usage:" not in error:  # a run-time refusal is one line (a parse error prints the usage first)
        assert len([line for line in error.splitlines() if line.startswith("mnist-gpu: error:")]) == 1
        assert error.splitlines()[-1].startswith("mnist-gpu: error: ")
    assert not log_dir.exists()


@pytest.mark.parametrize("keywords, message", [
    ({"learning_rate": "0.001:0.3:log"}, "learning_rate='0.001:0.3:log' is a range: pass trials, how many"),
    ({"learning_rate": [0.01, 0.1], "trials": 2, "max_steps": 0}, "max_steps=0 trains nothing"),
    ({"learning_rate": [0.01, 0.1], "trials": 2, "resume": True}, "resume=True: no study 'mnist-gpu'"),
    ({"learning_rate": [0.01, 0.1], "storage": "not-a-url"}, "storage='not-a-url': expected a database URL")])
def test_a_study_refused_from_python_speaks_python(tmp_path, mnist_dir, keywords, message):
    """mnist_gpu.sweep's refusals name its keywords, not the command line's flags (it said `--max_steps 0`)."""
    with pytest.raises(mnist_gpu.FlagError) as refused:
        mnist_gpu.sweep(log_dir=str(tmp_path / "sweep"), input_data_dir=mnist_dir, backend="numpy", **keywords)
    assert message in str(refused.value) and "--" not in str(refused.value), str(refused.value)
    assert not (tmp_path / "sweep").exists()


def test_without_optuna_a_search_flag_says_what_to_install_and_the_grid_still_runs(tmp_path, mnist_dir):
    """Optuna made unimportable the way Python itself does it (a None in sys.modules), in a real process."""
    blocked = "import sys; sys.modules['optuna'] = None; from mnist_gpu.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", blocked, "sweep", "--learning_rate", "0.001:0.3:log", "--trials",
                          "4", "--log_dir", str(tmp_path / "search")], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.splitlines() == ["mnist-gpu: error: --learning_rate 0.001:0.3:log makes this sweep an Optuna "
                                       "study, and Optuna is not installed: pip install 'mnist_gpu[sweep]'"]
    assert not (tmp_path / "search").exists()
    grid = subprocess.run([sys.executable, "-c", blocked, "sweep", "--seed", "1,2", "--learning_rate", "0.01,0.1",
                           "--max_steps", "2", "--backend", "cpu", "--input_data_dir", mnist_dir, "--log_dir",
                           str(tmp_path / "grid"), "--hidden1", "8", *SHAPE], capture_output=True, text=True)
    assert grid.returncode == 0, grid.stderr[-2000:]
    assert populations.read(str(tmp_path / "grid"))["global_step"] == 2


@pytest.mark.slow
def test_a_study_of_another_sweep_is_refused_and_left_as_it_was(tmp_path, capsys, mnist_dir):
    log_dir = tmp_path / "sweep"
    first = ["--learning_rate", "0.01,0.1", "--max_steps", "2", "--hidden1", "8", *SHAPE]
    code, _, error = run_main(capsys, "sweep", "--log_dir", str(log_dir), "--input_data_dir", mnist_dir, "--backend",
                              "cpu", "--seed", "3", "--trials", "2", *first)
    assert code == 0, error
    before = snapshot(log_dir)
    for changed, message in (
            (["--learning_rate", "0.01,0.2", "--max_steps", "2", "--trials", "2"],
             "its --learning_rate is 0.01,0.1, this command's 0.01,0.2"),
            (["--learning_rate", "0.01,0.1", "--max_steps", "3", "--trials", "2"],
             "its --max_steps is 2, this command's 3"),
            (["--learning_rate", "0.001:0.1", "--max_steps", "2", "--trials", "2"], "its --learning_rate is 0.01,0.1"),
            (["--learning_rate", "0.01,0.1", "--max_steps", "2", "--seed", "4"], "its --seed is 3, this command's 4")):
        code, _, error = run_main(capsys, "sweep", "--log_dir", str(log_dir), "--input_data_dir", mnist_dir,
                                  "--backend", "cpu", "--hidden1", "8", *SHAPE, *changed)
        assert code == 2 and error.splitlines()[-1].startswith(f"mnist-gpu: error: study 'mnist-gpu' in {log_dir}"), \
            error
        assert message in error.splitlines()[-1] and "another sweep's" in error, error
        assert snapshot(log_dir) == before
    # A grid's flags with --overwrite: it made a study of one trial in its place; now a refusal, nothing deleted.
    code, _, error = run_main(capsys, "sweep", "--log_dir", str(log_dir), "--input_data_dir", mnist_dir, "--backend",
                              "cpu", "--seed", "1,2", "--learning_rate", "0.01", "--max_steps", "2", "--overwrite")
    assert code == 2 and error.splitlines()[-1] == (
        f"mnist-gpu: error: --log_dir {log_dir} holds an Optuna study, and these flags make a grid population (no "
        "range, no several shapes, no study flag): --overwrite would start the study again, not the grid; pass "
        "another --log_dir, or the study's flags"), error
    assert snapshot(log_dir) == before
    # The same flags join the study: it is complete, so the worker only prints its table.
    code, lines, error = run_main(capsys, "sweep", "--log_dir", str(log_dir), "--input_data_dir", mnist_dir,
                                  "--backend", "cpu", "--trials", "2", "--resume", *first)
    assert code == 0 and "2 trials: 2 complete" in "\n".join(lines), error


def test_a_study_without_seed_draws_one_and_its_workers_adopt_it(tmp_path, capsys, mnist_dir):
    flags = ["sweep", "--log_dir", str(tmp_path / "sweep"), "--input_data_dir", mnist_dir, "--backend", "cpu",
             "--learning_rate", "0.01,0.1", "--trials", "2", "--max_steps", "2", "--hidden1", "8", *SHAPE]
    for _ in range(2):  # the second worker finds the study complete, with the seed the first drew
        code, _, error = run_main(capsys, *flags)
        assert code == 0, error
        seeds = {int(row["seed"]) for row in study_table(tmp_path / "sweep")}
        recorded = load(tmp_path / "sweep").user_attrs[search.SWEEP_KEY]["seeds"]
        assert len(seeds) == 1 and seeds == set(recorded) and recorded[0] < 10 ** 10
        assert f"seeds {recorded[0]}, populations of" in error


def test_journal_files_and_folder_names_are_checked_before_use(tmp_path, capsys, mnist_dir):
    flags = ["sweep", "--learning_rate", "0.01,0.1", "--trials", "2", "--backend", "numpy", "--input_data_dir",
             mnist_dir]
    for kind in ("fifo", "link", "garbage", "unknown operation", "wrong fields", "wrong types", "too large"):
        log_dir = tmp_path / kind
        log_dir.mkdir()
        journal = log_dir / search.STUDY_JOURNAL
        if kind == "fifo":
            os.mkfifo(journal)
        elif kind == "link":
            os.symlink("/etc/passwd", journal)
        elif kind == "garbage":
            journal.write_bytes(b'{"op_code": 0, "worker_id": "x", "study_name": "mnist-gpu", "directions": [1]}\n'
                                b"\x00\xffnot json\n")
        elif kind == "wrong types":  # a trial's distributions a list, not an object: Optuna's replay AttributeError
            journal.write_bytes(b'{"op_code": 0, "worker_id": "x", "study_name": "mnist-gpu", "directions": [1]}\n'
                                b'{"op_code": 4, "worker_id": "x", "study_id": 0, "datetime_start": '
                                b'"2026-01-01T00:00:00.000000", "distributions": []}\n')
        elif kind == "too large":  # sparse: over the bound without writing it; refused before Optuna reads a byte
            with open(journal, "wb") as stream:
                stream.truncate(study_journal.MAX_JOURNAL_BYTES + 1)
        else:
            journal.write_bytes(b'{"op_code": 99}\n' if kind == "unknown operation" else b"[1, 2]\n")
        code, _, error = run_main(capsys, *flags, "--log_dir", str(log_dir))
        assert code == 1 and "Traceback" not in error, error
        line = error.splitlines()[-1]
        assert line.startswith("mnist-gpu: error: ") and str(journal) in line, line
        assert {"fifo": "not a regular file", "link": "is a link", "wrong types": "AttributeError: ",
                "too large": "more than a study journal may be"}.get(kind, "Error: ") in line, line
        assert os.listdir(log_dir) == [search.STUDY_JOURNAL]
    # A trial's attribute names its population's folder: only a name of ours, never a path.
    study = optuna.create_study(direction="maximize")
    for name, expected in (("pop3", "pop3"), ("pop3-1", "pop3-1"), ("../pop3", None), ("pop3/..", None),
                           ("/etc", None), (7, None), ("pop03", None)):
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, search.FOLDER, name)
        assert search.folder_name(study._storage.get_trial(trial._trial_id)) == expected


def whole_json_lines(journal):
    """The journal's lines, each checked to be a whole JSON object (the file ends with a newline)."""
    text = journal.read_bytes()
    assert text.endswith(b"\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines()]


def test_a_journal_append_cut_short_by_a_full_disk_leaves_whole_lines(tmp_path, capsys, mnist_dir):
    """A real full disk (a tmpfs) in the middle of a worker's first journal line: that worker fails in one line and
    the journal keeps its whole lines; once there is room, the next worker finishes the study. (Optuna's own append
    left the torn line, the next worker's line went after it, and every read of the study failed from then on.)"""
    log_dir = tmp_path / "disk" / "study"
    flags = ["--learning_rate", "0.01,0.1", "--hidden1", "8", *SHAPE, "--max_steps", "2", "--population", "1"]
    with small_filesystem(tmp_path / "disk", size="4m"):
        # A worker makes the study, then blocks writing to its stderr (a pipe this test has filled) and is killed:
        # its two trials wait in the queue, and the next worker's first write is the line that takes one.
        read_end, write_end = os.pipe()
        filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(filler, b"x" * 4096)
        maker = start(command(log_dir, mnist_dir, *flags), stdout=subprocess.DEVNULL, stderr=write_end)
        journal = log_dir / study_journal.STUDY_JOURNAL
        try:
            deadline = time.monotonic() + 60
            while search.QUEUED_KEY.encode() not in (journal.read_bytes() if journal.exists() else b""):
                assert maker.poll() is None and time.monotonic() < deadline, "the study was not made"
                time.sleep(0.05)
        finally:
            maker.kill()
            maker.wait()
            for descriptor in (filler, write_end, read_end):
                os.close(descriptor)
        # Plain Optuna pads the journal (a study attribute of ours ignores) to 10 bytes short of a page's end.
        storage = load(log_dir)._storage
        size = journal.stat().st_size
        storage.set_study_user_attr(0, "test:padding", "")
        padding = journal.stat().st_size - size  # the same line with n more x's is n bytes longer
        storage.set_study_user_attr(0, "test:padding", "x" * ((PAGE - 10 - size - 2 * padding) % PAGE))
        assert journal.stat().st_size % PAGE == PAGE - 10
        before = journal.read_bytes()
        fill_leaving(log_dir.parent, 0)
        code, _, error = run_main(capsys, *command(log_dir, mnist_dir, *flags, "--resume")[3:])
        assert code == 1
        line = one_error_line(error)
        assert f"study 'mnist-gpu' in {journal}: OSError: [Errno 28] No space left on device" in line, line
        assert journal.read_bytes() == before
        os.remove(log_dir.parent / "filler")
        code, _, error = run_main(capsys, *command(log_dir, mnist_dir, *flags, "--resume")[3:])
        assert code == 0, error
        assert len(whole_json_lines(journal)) > len(before.splitlines())
        assert [trial.state.name for trial in load(log_dir).get_trials()] == ["COMPLETE", "COMPLETE"]


def test_a_torn_line_left_by_a_dead_writer_is_cut_before_the_next_append(tmp_path):
    """A journal whose writer died mid-line (the bytes it left, longer than one read from the end): the next append
    cuts them and adds its own whole line; Optuna reads every operation back."""
    path = tmp_path / study_journal.STUDY_JOURNAL
    storage = study_journal.journal_storage(str(path))
    study = optuna.create_study(storage=storage, study_name="torn")
    study.set_user_attr("first", 1)
    whole = path.read_bytes()
    for torn in (b'{"op_code":', b'{"op_code":5,"worker_id":"' + b"x" * (2 * study_journal.TAIL_CHUNK)):
        path.write_bytes(whole + torn)
        again = optuna.load_study(storage=study_journal.journal_storage(str(path)), study_name="torn")
        again.set_user_attr("second", 2)
        lines = whole_json_lines(path)
        assert path.read_bytes().startswith(whole) and len(lines) == len(whole.splitlines()) + 1
        assert load(tmp_path, name="torn").user_attrs == {"first": 1, "second": 2}
    path.write_bytes(b'{"op_code":0')  # no whole line at all
    study_journal.journal_storage(str(path))._backend.append_logs([{"op_code": 99}])
    assert path.read_bytes() == b'{"op_code":99}\n'


@pytest.mark.parametrize("blocked", [populations.RESULTS_CSV, populations.RESULTS_MD])
def test_a_study_table_that_cannot_be_written_is_one_line(tmp_path, capsys, mnist_dir, blocked):
    """A real failed replace (a folder where the study's table goes) after every trial is told: one line naming the
    file, exit 1, the trials COMPLETE in the journal (it was an OSError traceback)."""
    log_dir = tmp_path / "study"
    os.makedirs(log_dir / blocked)
    code, _, error = run_main(capsys, "sweep", "--input_data_dir", mnist_dir, "--backend", "numpy", "--learning_rate",
                              "0.01,0.1", "--trials", "2", "--max_steps", "2", "--hidden1", "8", "--seed", "1", *SHAPE,
                              "--log_dir", str(log_dir))
    assert code == 1
    assert one_error_line(error) == (f"mnist-gpu: error: saving {log_dir / blocked} failed: Is a directory; every "
                                     "trial is recorded in the study's storage (this command again writes the table)")
    assert {trial.state.name for trial in load(log_dir).get_trials()} == {"COMPLETE"}


def test_the_study_tables_name_each_members_checkpoint_whole(tmp_path, capsys, mnist_dir):
    """A drawn learning rate makes a member's checkpoint path long (over 80 characters here): results.csv and results.md
    name the file itself (they cut every value read back at 80 characters, naming no file)."""
    log_dir = tmp_path / "study"
    code, _, error = run_main(capsys, "sweep", "--input_data_dir", mnist_dir, "--backend", "numpy", "--learning_rate",
                              "0.001:0.1:log", "--trials", "2", "--max_steps", "2", "--hidden1", "8", "--seed",
                              "1234567890", *SHAPE, "--log_dir", str(log_dir))
    assert code == 0, error
    rows = study_table(log_dir)
    assert len(rows) == 2 and max(len(row["checkpoint"]) for row in rows) > 80
    code, _, error = run_main(capsys, "eval", "--backend", "numpy", "--checkpoint", str(log_dir))
    assert code == 2 and one_error_line(error) == (f"mnist-gpu: error: --checkpoint {log_dir} is a study's folder: "
                                                   "pass one of its members' folders, pop<N>/trial<T>_..., as its "
                                                   "results.md names them")  # it said "the state file lists none"
    markdown = (log_dir / populations.RESULTS_MD).read_text()
    for row in rows:
        assert (log_dir / row["checkpoint"]).is_file() and f" {row['checkpoint']} " in markdown


def test_a_trial_value_read_back_is_a_number_or_not_a_value(tmp_path, capsys, mnist_dir):
    """A finished study's journal, one COMPLETE trial's value made text, null or NaN: the worker that joins it prints
    the table with no value for that trial and names the best of the others (max() over the raw values raised a
    TypeError traceback, or picked by NaN's order)."""
    flags = ["sweep", "--input_data_dir", mnist_dir, "--backend", "numpy", "--learning_rate", "0.01,0.1",
             "--trials", "2", "--max_steps", "2", "--hidden1", "8", "--seed", "1", *SHAPE]
    assert run_main(capsys, *flags, "--log_dir", str(tmp_path / "study"))[0] == 0
    journal = (tmp_path / "study" / search.STUDY_JOURNAL).read_text()
    assert journal.count('"values":[') == 2
    for hostile in ('["x"]', "null", "[NaN]"):
        log_dir = tmp_path / hostile.strip('[]"')
        shutil.copytree(tmp_path / "study", log_dir)
        (log_dir / search.STUDY_JOURNAL).write_text(re.sub(r'"values":\[[^]]*\]', '"values":' + hostile, journal,
                                                          count=1))
        code, lines, error = run_main(capsys, *flags, "--log_dir", str(log_dir), "--resume")
        assert code == 0 and "Traceback" not in error, error
        assert "Best: trial 1, " in "\n".join(lines)
        assert [row["value"] for row in study_table(log_dir)][0] == ""


def test_a_population_file_names_its_trials_members(tmp_path):
    good = {"format": populations.FORMAT, "global_step": 100, "max_steps": 300,
            "flags": {"hidden1": 8, "hidden2": 5, "batch_size": 13, "dataset": "mnist", "fake_data": False},
            "members": [{"name": "trial7_h8x5_b13_lr0.01_seed1", "seed": 1, "learning_rate": 0.01, "trial": 7}]}
    (tmp_path / populations.POPULATION_FILE).write_text(json.dumps(good))
    assert populations.read(str(tmp_path)) == good
    for member in ({**good["members"][0], "trial": 8}, {**good["members"][0], "name": "trial7_h9x5_b13_lr0.01_seed1"},
                   {**good["members"][0], "trial": -1}, {**good["members"][0], "name": "../trial7"}):
        (tmp_path / populations.POPULATION_FILE).write_text(json.dumps({**good, "members": [member]}))
        with pytest.raises(Exception, match="members\\[0\\]"):
            populations.read(str(tmp_path))


# -- workers that die -----------------------------------------------------------------------------------------------
def start(arguments, **options):
    return subprocess.Popen(arguments, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **options)


def two_workers_one_killed(log_dir, mnist_dir, storage=()):
    """Worker A, then worker B (once A has taken its first population) on a 12-trial grid in populations of 3; A is
    SIGKILLed once it has committed step 200 of its first population. Returns (the trials A was training, A's pid,
    B's pid, B's stderr)."""
    arguments = command(log_dir, mnist_dir, *GRID, "--max_steps", "300", "--eval_every", "100", "--population", "3",
                        "--heartbeat", "0.5", *storage)
    a = start(arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    b = None
    killed = set()
    deadline = time.monotonic() + 600
    for line in a.stdout:
        match = re.match(r"trial(\d+)_\S+: Step (\d+):", line)
        if match:
            b = b or start(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            killed.add(int(match[1]))
            if match[2] == "200":
                a.send_signal(signal.SIGKILL)
                break
        assert time.monotonic() < deadline, "worker A did not reach step 200"
    assert a.wait(timeout=60) == -signal.SIGKILL
    _, error = b.communicate(timeout=900)
    assert b.returncode == 0, error[-3000:]
    return killed, a.pid, b.pid, error


def check_every_trial_complete_once(study, killed, a_pid, b_pid, error, log_dir):
    trials = study.get_trials()
    complete = [trial for trial in trials if trial.state.name == "COMPLETE"]
    keys = [(trial.params["learning_rate"], trial.params["hidden1"], trial.params["hidden2"]) for trial in complete]
    assert len(keys) == 12 and len(set(keys)) == 12  # every grid point COMPLETE exactly once (counted by parameters)
    assert len(killed) == 3  # A's first population: its three trials
    for trial in trials:
        worker = trial.system_attrs[search.WORKER].split(":")[1]
        if trial.number in killed:  # taken over in place, from A's last commit, and finished by B
            assert trial.state.name == "COMPLETE" and worker == str(b_pid)
        elif trial.state.name == "FAIL":  # a trial A had taken but not started: failed, and queued again
            assert worker == str(a_pid) and search.FOLDER not in trial.system_attrs
            retried = [other for other in complete if other.system_attrs.get("failed_trial") == trial.number]
            assert len(retried) == 1 and retried[0].params == trial.params
        else:
            assert trial.state.name == "COMPLETE"
    assert re.search(r"taking over pop\d+ \(trials [\d, ]+; worker \S+ stopped\): resuming from step 200", error), error
    rows = study_table(log_dir)
    assert len(rows) == 12 and {row["state"] for row in rows} == {"complete"}
    for row in rows:  # every member with its final checkpoint
        assert row["checkpoint"].endswith("model.ckpt-299.safetensors")
        checkpoint = checkpoints.read(str(log_dir / row["checkpoint"]))
        assert checkpoint.global_step == 300


@pytest.mark.slow
def test_two_workers_on_a_journal_file_one_killed_finish_every_trial_once(tmp_path, mnist_dir):
    log_dir = tmp_path / "sweep"
    killed, a_pid, b_pid, error = two_workers_one_killed(log_dir, mnist_dir)
    check_every_trial_complete_once(load(log_dir), killed, a_pid, b_pid, error, log_dir)


@pytest.mark.slow
def test_a_worker_killed_after_its_last_checkpoint_before_telling_is_told_by_the_next(tmp_path, capsys, mnist_dir):
    """Worker A trains its population to the end, commits the last checkpoints, and is SIGKILLed before it tells
    Optuna: its stdout is a real pipe that this test fills once A has printed its step 200 (A then blocks printing
    the final evaluation, which it prints after saving). Worker B takes the population over at its last step: no
    step trained again, each member's evaluation taken from its checkpoint, every trial told by B with the
    validation precision `mnist-gpu eval` gives for its member; the learning rate 60 member, which diverged at step
    200, is recorded so (B recorded no divergence and no final loss)."""
    log_dir = tmp_path / "sweep"
    flags = ["--learning_rate", "0.01,0.03,60", "--hidden1", "8", *SHAPE, "--max_steps", "300", "--population", "3",
             "--heartbeat", "0.5"]
    read_end, write_end = os.pipe()
    a = start(command(log_dir, mnist_dir, *flags), stdout=write_end, stderr=subprocess.DEVNULL)
    lines, printed = os.fdopen(read_end, "r"), set()
    while len(printed) < 3:  # every member's step 200 (no line is printed after it before the final evaluation)
        line = lines.readline()
        assert line, "worker A ended before its step 200"
        if re.match(r"trial\d+_\S+: Step 200:", line):
            printed.add(line.split(":")[0])
    # The pipe filled through a file description of its own (A's stays blocking): A's next line waits for a reader.
    filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(filler, b"x" * 4096)
    deadline = time.monotonic() + 300
    population = log_dir / "pop0" / populations.POPULATION_FILE
    while not (population.exists() and json.loads(population.read_text())["global_step"] == 300):
        assert a.poll() is None and time.monotonic() < deadline, "worker A did not commit its step 300"
        time.sleep(0.05)
    time.sleep(1)  # had it not been blocked, A would tell and end now
    a.send_signal(signal.SIGKILL)
    assert a.wait(timeout=60) == -signal.SIGKILL
    for descriptor in (filler, write_end):
        os.close(descriptor)
    lines.close()
    b = subprocess.run(command(log_dir, mnist_dir, *flags), capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stderr[-3000:]
    assert re.search(r"taking over pop0 \(trials 0, 1, 2; worker \S+ stopped\): resuming from step 300", b.stderr)
    assert "Step " not in b.stdout  # nothing trained again
    trials = load(log_dir).get_trials()
    assert len(trials) == 3 and {trial.state.name for trial in trials} == {"COMPLETE"}
    for trial in trials:
        assert trial.system_attrs[search.WORKER].split(":")[1] != str(a.pid)  # B told it, not A
        member = log_dir / trial.user_attrs["members"][0]["folder"]
        code, evaluated, _ = run_main(capsys, "eval", "--checkpoint", str(member), "--backend", "cpu",
                                      "--input_data_dir", mnist_dir)
        assert code == 0
        validation = [line for line in evaluated if "Precision @ 1" in line][1]
        assert float(validation.split("Precision @ 1: ")[1]) == round(trial.value, 4)
        stopped = checkpoints.Saver(str(member)).latest()[0].stopped
        record = trial.user_attrs["members"][0]
        assert (record["diverged_at_step"], record["final_loss"]) == \
            ((None, None) if stopped is None else (stopped["step"], stopped["loss"]))
        assert (stopped is None) == (trial.params["learning_rate"] != 60)


def postgres_binaries():
    for folder in [os.path.dirname(shutil.which("initdb") or "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin")):
        if folder and all(os.access(os.path.join(folder, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


@pytest.fixture
def postgres_url():
    """A real PostgreSQL server in a temporary folder, on a free port of 127.0.0.1, stopped afterwards.

    PostgreSQL refuses to run as root: as root (CI), the server runs as the `postgres` user Debian's package
    makes (else `nobody`)."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server here (initdb, pg_ctl, postgres): CI installs Debian's postgresql package")
    folder = tempfile.mkdtemp(prefix="mnist-gpu-postgres-")
    prefix = []
    if os.geteuid() == 0:
        user = "postgres" if "postgres" in {entry.pw_name for entry in pwd.getpwall()} else "nobody"
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
        prefix = ["runuser", "-u", user, "--"]
    else:
        user = getpass.getuser()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = os.path.join(folder, "data")
    subprocess.run([*prefix, f"{binaries}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, f"{binaries}/pg_ctl", "-D", data, "-w", "-l", os.path.join(folder, "log"), "-o",
                    f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, f"{binaries}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_a_real_postgresql_server_one_killed_finish_every_trial_once(tmp_path, mnist_dir,
                                                                                    postgres_url):
    log_dir = tmp_path / "sweep"
    storage = ("--storage", postgres_url, "--study", "grid12")
    killed, a_pid, b_pid, error = two_workers_one_killed(log_dir, mnist_dir, storage)
    assert not (log_dir / search.STUDY_JOURNAL).exists()
    check_every_trial_complete_once(load(storage=postgres_url, name="grid12"), killed, a_pid, b_pid, error, log_dir)


# -- search and pruning ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_search_prunes_and_its_best_trial_evaluates_to_the_recorded_precision(tmp_path, capsys, mnist_dir):
    log_dir = tmp_path / "search"
    code, printed, error = run_main(capsys, "sweep", "--log_dir", str(log_dir), "--input_data_dir", mnist_dir,
                                    "--backend", "cpu", "--seed", "2", "--learning_rate", "0.001:0.5:log", "--trials",
                                  "16", "--prune", "halving", "--max_steps", "300", "--eval_every", "100",
                                  "--population", "4", "--hidden1", "8", *SHAPE)
    assert code == 0, error
    study = load(log_dir)
    trials = study.get_trials()
    states = collections.Counter(trial.state.name for trial in trials)
    assert len(trials) == 16 and states["COMPLETE"] + states["PRUNED"] == 16 and states["PRUNED"] >= 1, states
    rows = study_table(log_dir)
    pruned = [row for row in rows if row["state"] == "pruned"]
    assert pruned and all(row["pruned_at_step"] == "99" for row in pruned)  # halving's first rung: the first evaluation
    for row in pruned:  # a pruned member stopped updating: its last checkpoint holds its variables of step 99
        member = log_dir / row["member"]
        stopped = checkpoints.Saver(str(member)).latest()[0]
        assert stopped.stopped["step"] == 99 and stopped.stopped["why"].startswith("pruned at step 99 by the halving")
        assert f"trial {row['trial']} pruned at step 99" in error
    best = study.best_trial
    member = log_dir / best.user_attrs["members"][0]["folder"]
    code, lines, _ = run_main(capsys, "eval", "--checkpoint", str(member), "--backend", "cpu", "--input_data_dir",
                              mnist_dir)
    assert code == 0
    validation = [line for line in lines if "Precision @ 1" in line][1]
    assert float(validation.split("Precision @ 1: ")[1]) == round(best.value, 4)
    assert f"Best: trial {best.number}, validation precision {best.value:.4f}" in "\n".join(printed)


# -- Ctrl-C and --resume ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_resumed_after_ctrl_c_ends_as_an_uninterrupted_one(tmp_path, mnist_dir):
    """Populations of 4 trials: the worker takes trials 0-3, trains 0-2 (hidden1 8) and holds 3 (hidden1 12, another
    population) when Ctrl-C stops it. --resume takes 0-2 over in their folder, and queues 3 again (Optuna's retry:
    trial 6, its folders still named trial3), saying it was interrupted before it trained."""
    flags = ["--learning_rate", "0.01,0.05,0.1", "--hidden1", "8,12", *SHAPE, "--max_steps", "300", "--eval_every",
             "100", "--population", "4"]
    whole = subprocess.run(command(tmp_path / "whole", mnist_dir, *flags), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    broken = tmp_path / "broken"
    process = start(command(broken, mnist_dir, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stdout:
        if re.match(r"trial\d+_\S+: Step 200:", line):
            process.send_signal(signal.SIGINT)
            break
    process.stdout.read()
    assert process.wait(timeout=300) == 130
    error = process.stderr.read()
    assert re.search(r"interrupted at step \d+; saved pop0/population.json; the same mnist-gpu sweep command with "
                     r"--resume continues the study", error), error
    resumed = subprocess.run(command(broken, mnist_dir, *flags, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "taking over pop0 (trials 0, 1, 2" in resumed.stderr
    assert re.search(r"trial 3 \(worker \S+\) was interrupted before it trained: failed, and queued again as trial 6 "
                     r"\(its folders will keep the name trial3\)", resumed.stderr), resumed.stderr
    study = load(broken)
    assert [trial.state.name for trial in study.get_trials()] == ["COMPLETE"] * 3 + ["FAIL"] + ["COMPLETE"] * 3
    # The same members (their folders' names; the populations that held them are numbered as they were taken).
    members, whole = ({os.path.basename(row["member"]): row["member"] for row in study_table(folder)}
                      for folder in (broken, tmp_path / "whole"))
    assert sorted(members) == sorted(whole) and len(members) == 6
    for member, path in members.items():
        expected = final_variables(tmp_path / "whole" / whole[member])
        for name, value in final_variables(broken / path).items():
            np.testing.assert_array_equal(value.view(np.uint32), expected[name].view(np.uint32),
                                          err_msg=f"{member} {name}")


@pytest.mark.slow
def test_a_trial_interrupted_while_training_whose_folder_is_gone_is_queued_again_saying_so(tmp_path, mnist_dir):
    """Ctrl-C while trials 0-2 train, then their population folder deleted: --resume fails and queues them again,
    saying they were interrupted and their folder cannot be resumed (not "before it trained"), and finishes them."""
    flags = ["--learning_rate", "0.01,0.05,0.1", "--hidden1", "8", *SHAPE, "--max_steps", "300", "--population", "3"]
    process = start(command(tmp_path / "s", mnist_dir, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stdout:
        if re.match(r"trial\d+_\S+: Step 200:", line):
            process.send_signal(signal.SIGINT)
            break
    process.stdout.read()
    assert process.wait(timeout=300) == 130, process.stderr.read()
    shutil.rmtree(tmp_path / "s" / "pop0")
    resumed = subprocess.run(command(tmp_path / "s", mnist_dir, *flags, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for number in range(3):
        assert re.search(rf"trial {number} \(worker \S+\) was interrupted and its population folder cannot be resumed "
                         rf"here: failed, and queued again as trial {number + 3} \(its folders will keep the name "
                         rf"trial{number}\)", resumed.stderr), resumed.stderr
    assert [trial.state.name for trial in load(tmp_path / "s").get_trials()] == ["FAIL"] * 3 + ["COMPLETE"] * 3


def test_a_signal_between_populations_is_an_interruption_that_says_so(tmp_path, mnist_dir):
    """A real SIGTERM to a worker that holds no population: worker A holds both trials (its stdout a real pipe this
    test has filled, so A blocks printing its step 0); worker B, finding nothing to take, waits between populations.
    B stops at once with exit 143 and says so; A, its pipe drained, finishes both trials."""
    log_dir = tmp_path / "sweep"
    flags = ["--learning_rate", "0.01,0.1", "--hidden1", "8", *SHAPE, "--max_steps", "30", "--population", "2",
             "--heartbeat", "0.5"]
    read_end, write_end = os.pipe()
    filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)  # A's description stays blocking
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(filler, b"x" * 4096)
    a = start(command(log_dir, mnist_dir, *flags), stdout=write_end, stderr=subprocess.PIPE)
    b = None
    try:
        while "log_dir " + str(log_dir / "pop0") not in (line := a.stderr.readline()):
            assert line, "worker A ended before its population"
        b = start(command(log_dir, mnist_dir, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while "worker of study" not in (line := b.stderr.readline()):
            assert line, "worker B ended before it worked"
        time.sleep(1)  # B looks for a trial, finds none free, and waits
        b.send_signal(signal.SIGTERM)
        error = b.communicate(timeout=60)[1]
        assert b.returncode == 143, error
        assert error.splitlines()[-1] == ("mnist-gpu: interrupted between populations; the trials this worker held "
                                          "are marked for another worker (or --resume) to take over"), error
        assert a.poll() is None  # still blocked, holding both trials
        for descriptor in (filler, write_end):
            os.close(descriptor)
        with os.fdopen(read_end, "rb") as stream:
            stream.read()
        assert a.wait(timeout=120) == 0, a.stderr.read()
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    trials = load(log_dir).get_trials()
    assert len(trials) == 2 and {trial.state.name for trial in trials} == {"COMPLETE"}
    assert {trial.system_attrs[search.WORKER].split(":")[1] for trial in trials} == {str(a.pid)}


KILLED_HOLDING_THE_LOCK = """
import os, signal, sys
from optuna.storages.journal import JournalFileSymlinkLock
from mnist_gpu.cli import main

taken = []
def acquire(self, real=JournalFileSymlinkLock.acquire):
    held = real(self)
    taken.append(held)
    if len(taken) == int(sys.argv[1]):  # killed holding the journal's lock: its link stays
        os.kill(os.getpid(), signal.SIGKILL)
    return held
JournalFileSymlinkLock.acquire = acquire
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_worker_killed_holding_the_journal_lock_holds_up_the_others_only_for_its_grace_period(tmp_path, mnist_dir):
    """A real SIGKILL of a worker just after it took the journal's lock (its 7th append: taking its first trial), the
    study named by a relative --log_dir: the next worker waits out Optuna's 30 s grace period, then finishes the
    study. (The lock linked to the relative path, which dangles from the journal's folder: Optuna could never see
    its age, and every other worker waited forever, deaf to SIGTERM.)"""
    flags = ["sweep", "--backend", "numpy", "--input_data_dir", mnist_dir, "--learning_rate", "0.01,0.1", "--trials",
             "2", "--max_steps", "2", "--hidden1", "8", *SHAPE, "--seed", "1", "--heartbeat", "1", "--log_dir", "study"]
    killed = subprocess.run([sys.executable, "-c", KILLED_HOLDING_THE_LOCK, "7", *flags], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert os.path.islink(tmp_path / "study" / "study.journal.lock")
    started = time.monotonic()
    resumed = subprocess.run([sys.executable, "-m", "mnist_gpu", *flags, "--resume"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert time.monotonic() - started < 150
    states = [trial.state.name for trial in load(tmp_path / "study").get_trials()]
    assert states.count("COMPLETE") == 2 and set(states) <= {"COMPLETE", "FAIL"}  # the dead one's trial retried
