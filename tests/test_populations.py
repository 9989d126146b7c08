"""Populations (`mnist-gpu sweep`, mnist_gpu.sweep): each member is exactly its own solo run, on real MNIST.

The oracle is the solo run (`mnist-gpu --seed S --learning_rate R`, a population of one): a
member must print the same losses and counts and end with the same variables, bit for bit, on
the numpy and cpu backends. (The cuda backend's members are checked against their own programs of
one in tests/cuda/test_step_program.py, in the simulator and on a GPU.) Small layers and an odd
batch keep each run short; every run evaluates all 70,000 examples.
"""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mnist_gpu
from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import population as populations

from helpers import one_error_line, run_main

SHAPE = ["--hidden1", "12", "--hidden2", "5", "--batch_size", "13"]
STEPS = 120  # step lines at 0 and 100, one evaluation at the end (step 119)


def flags(backend, mnist_dir, **more):
    values = {"hidden1": 12, "hidden2": 5, "batch_size": 13, "max_steps": STEPS, "backend": backend,
              "input_data_dir": mnist_dir}
    values.update(more)
    return values


def final_variables(log_dir):
    return checkpoints.Saver(str(log_dir)).latest()[0].variables


def assert_same_run(member, solo, member_dir, solo_dir):
    """Every printed loss, every count and every final variable, bit for bit."""
    assert member.losses == solo.losses and member.losses  # floats compared exactly
    assert member.evaluations == solo.evaluations and member.evaluations
    got, expected = final_variables(member_dir), final_variables(solo_dir)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name].view(np.uint32), value.view(np.uint32), err_msg=name)


GRIDS = {1: ((4,), (0.01,)), 2: ((1, 2), (0.01,)), 3: ((7,), (0.01, 0.05, 0.1)), 5: ((1, 2, 3, 4, 5), (0.02,))}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("members", sorted(GRIDS))
def test_each_member_is_bit_for_bit_its_solo_run(backend, members, mnist_dir, tmp_path):
    seeds, rates = GRIDS[members]
    swept = mnist_gpu.sweep(seed=list(seeds), learning_rate=list(rates), log_dir=str(tmp_path / "grid"),
                            verbose=False, **flags(backend, mnist_dir))
    assert len(swept.members) == members == len(seeds) * len(rates)
    assert [(member.learning_rate, member.seed) for member in swept.members] == \
        [(rate, seed) for rate in rates for seed in seeds]  # a learning rate's members side by side
    for member in swept.members:
        solo_dir = tmp_path / f"solo-{member.seed}-{member.learning_rate}"
        solo = mnist_gpu.train(seed=member.seed, learning_rate=member.learning_rate, log_dir=str(solo_dir),
                               verbose=False, **flags(backend, mnist_dir))
        assert os.path.basename(member.log_dir) == populations.member_name(member.seed, member.learning_rate)
        assert_same_run(member, solo, member.log_dir, solo_dir)


@pytest.mark.slow
def test_printed_lines_are_the_solo_runs_lines_after_the_members_name(mnist_dir, tmp_path, capsys):
    common = ["--backend", "cpu", "--input_data_dir", mnist_dir, "--max_steps", str(STEPS), *SHAPE]
    code, lines, _ = run_main(capsys, "sweep", "--seed", "1,2", "--log_dir", str(tmp_path / "grid"), *common)
    assert code == 0
    for seed in (1, 2):
        code, solo, _ = run_main(capsys, "--seed", str(seed), "--log_dir", str(tmp_path / f"solo{seed}"), *common)
        prefix = f"{populations.member_name(seed, 0.01)}: "
        mine = [line[len(prefix):] for line in lines if line.startswith(prefix)]
        assert [line.split(" (")[0] for line in mine] == [line.split(" (")[0] for line in solo]  # without timings
        assert len(solo) == 2 + 6  # two step lines, three eval blocks


@pytest.mark.slow
@pytest.mark.parametrize("shape, steps, rate, why", [
    (["--batch_size", "13"], 60, "1e9", "loss is nan at step "),  # the tutorial's layers: NaN within a few steps
    (SHAPE, 250, "1e9", "far above ln 10 = 2.30 where training starts: it diverged"),  # finite, and stays up
])
def test_a_diverging_member_stops_alone_and_the_run_says_so(mnist_dir, tmp_path, capsys, shape, steps, rate, why):
    common = ["--backend", "cpu", "--input_data_dir", mnist_dir, "--max_steps", str(steps), "--seed", "3", *shape]
    code, lines, error = run_main(capsys, "sweep", "--learning_rate", f"0.01,{rate}", "--log_dir",
                                  str(tmp_path / "grid"), *common)
    assert code == 3  # finished, some members diverged
    diverged = populations.member_name(3, float(rate))
    assert f"mnist-gpu: {diverged} diverged (" in error and why in error
    stopped = checkpoints.Saver(str(tmp_path / "grid" / diverged)).latest()[0]
    assert why in stopped.stopped["why"]
    rows = list(csv.DictReader(open(tmp_path / "grid" / populations.RESULTS_CSV).read().split("\n\n")[0].splitlines()))
    assert [row["diverged_at_step"] for row in rows] == ["", str(stopped.stopped["step"])]
    # The finite member is exactly its solo run.
    assert run_main(capsys, "--learning_rate", "0.01", "--log_dir", str(tmp_path / "solo"), *common)[0] == 0
    finite = tmp_path / "grid" / populations.member_name(3, 0.01)
    for name, value in final_variables(tmp_path / "solo").items():
        np.testing.assert_array_equal(final_variables(finite)[name], value, err_msg=name)
    # Alone, the same learning rate is the tutorial's error, naming the same step.
    code, _, error = run_main(capsys, "--learning_rate", rate, "--log_dir", str(tmp_path / "alone"), *common)
    assert code == 1 and f"error: {stopped.stopped['why']}; try a smaller --learning_rate" in error


def results_table(folder, columns):
    """results.csv's two tables (members, groups), only the given columns."""
    tables = open(folder / populations.RESULTS_CSV).read().strip().split("\n\n")
    return [[{key: row[key] for key in columns if key in row} for row in csv.DictReader(table.splitlines())]
            for table in tables]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_stopped_member_leaves_the_step_program_and_nothing_else_changes(backend, mnist_dir, tmp_path, capsys):
    """At the first evaluation after a member stops, the step program is rebuilt without it (its share of every
    later step reclaimed). The others stay their solo runs bit for bit; the stopped one keeps its variables, its
    last evaluation (the ensemble leaves it out); a population resumed past that point starts without it and ends
    as the uninterrupted one."""
    common = ["--backend", backend, "--input_data_dir", mnist_dir, "--seed", "3", "--batch_size", "13",
              "--eval_every", "50"]
    rates = ["0.01", "1e9", "0.02"]  # 1e9: NaN within a few steps (the tutorial's layers)
    sweep = ["sweep", "--learning_rate", ",".join(rates), *common]
    code, lines, error = run_main(capsys, *sweep, "--max_steps", "200", "--log_dir", str(tmp_path / "whole"))
    assert code == 3
    assert "mnist-gpu: 1 stopped member left the step program at step 49: it trains the 2 still training" in error
    diverged = populations.member_name(3, 1e9)
    evaluated = [line for line in lines if line.endswith("Training Data Eval:")]
    assert sum(line.startswith(f"{diverged}: ") for line in evaluated) == 1  # at step 49 only
    assert len(evaluated) == 1 + 2 * 4
    saved = {step: checkpoints.read(str(tmp_path / "whole" / diverged / checkpoints.checkpoint_name(step)))
             for step in (49, 199)}
    assert saved[199].stopped == saved[49].stopped and saved[49].stopped["step"] < 49
    for name, value in saved[49].variables.items():
        np.testing.assert_array_equal(saved[199].variables[name].view(np.uint32), value.view(np.uint32))
    members, groups = results_table(tmp_path / "whole", ("member", "train", "validation", "test", "ensemble_test"))
    last = {split: line.split("Precision @ 1: ")[1] for split, line in
            zip(("train", "validation", "test"), [lines[index + 1] for index, line in enumerate(lines)
                                                  if line.startswith(f"{diverged}: ") and "Data Eval:" in line],
                strict=True)}
    row = next(row for row in members if row["member"] == diverged)
    assert {split: f"{float(row[split]):.4f}" for split in last} == last  # its one evaluation, carried to the end
    for rate in ("0.01", "0.02"):  # the others: their solo runs
        solo = tmp_path / f"solo{rate}"
        code, solo_lines, _ = run_main(capsys, "--learning_rate", rate, "--max_steps", "200", "--log_dir", str(solo),
                                       *common)
        assert code == 0
        prefix = f"{populations.member_name(3, float(rate))}: "
        assert [line[len(prefix):].split(" (")[0] for line in lines if line.startswith(prefix)] == \
            [line.split(" (")[0] for line in solo_lines]
        expected = final_variables(solo)
        for name, value in final_variables(tmp_path / "whole" / prefix[:-2]).items():
            np.testing.assert_array_equal(value.view(np.uint32), expected[name].view(np.uint32), err_msg=name)
    # Stopped at 100 steps, resumed to 200: the same variables and the same results (the ensemble included).
    assert run_main(capsys, *sweep, "--max_steps", "100", "--log_dir", str(tmp_path / "split"))[0] == 3
    code, _, error = run_main(capsys, *sweep, "--max_steps", "200", "--log_dir", str(tmp_path / "split"), "--resume")
    assert code == 3 and "left the step program" not in error  # it was out of it from the start
    for rate in rates:
        name = populations.member_name(3, float(rate))
        expected = final_variables(tmp_path / "whole" / name)
        for variable, value in final_variables(tmp_path / "split" / name).items():
            np.testing.assert_array_equal(value.view(np.uint32), expected[variable].view(np.uint32))
    assert results_table(tmp_path / "split", ("member", "train", "validation", "test", "ensemble_test")) == \
        [members, groups]


@pytest.mark.slow
def test_every_member_folder_is_an_ordinary_run(mnist_dir, tmp_path, capsys):
    """eval, predict and load_checkpoint on a member's folder; the results table equals the members' evaluations."""
    grid = tmp_path / "grid"
    code, _, _ = run_main(capsys, "sweep", "--seed", "5,6", "--learning_rate", "0.01,0.03", "--log_dir", str(grid),
                          "--backend", "cpu", "--input_data_dir", mnist_dir, "--max_steps", str(STEPS), *SHAPE)
    assert code == 0
    found = populations.read(str(grid))
    assert found["global_step"] == STEPS and len(found["members"]) == 4
    tables = open(grid / populations.RESULTS_CSV).read().split("\n\n")
    members = list(csv.DictReader(tables[0].splitlines()))
    for row in members:
        folder = grid / row["member"]
        code, lines, _ = run_main(capsys, "eval", "--checkpoint", str(folder), "--backend", "cpu",
                                  "--input_data_dir", mnist_dir)
        assert code == 0
        precisions = [float(line.split("Precision @ 1: ")[1]) for line in lines if "Precision @ 1" in line]
        assert precisions == [round(float(row[split]), 4) for split in ("train", "validation", "test")]
        classifier = mnist_gpu.load_checkpoint(str(folder), backend="cpu")
        assert classifier.global_step == STEPS
        image = tmp_path / "digit.png"
        from PIL import Image

        Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(image)
        code, lines, _ = run_main(capsys, "predict", "--checkpoint", str(folder), "--backend", "cpu", str(image))
        assert code == 0 and lines[0].startswith(f"{image}: ")
    groups = list(csv.DictReader(tables[1].splitlines()))
    assert [float(group["learning_rate"]) for group in groups] == [0.01, 0.03]
    for group in groups:
        tests = [float(row["test"]) for row in members if float(row["learning_rate"]) == float(group["learning_rate"])]
        assert float(group["test_mean"]) == pytest.approx(np.mean(tests))
        assert float(group["test_std"]) == pytest.approx(np.std(tests, ddof=1))
        assert 0 < float(group["ensemble_test"]) < 1


@pytest.mark.parametrize("group_sizes, diverged", [((1,), ()), ((2, 3), ()), ((5, 1, 2), ()), ((3, 2), (1, 3, 4)),
                                                     ((1, 2), (0, 2))])
def test_the_ensemble_is_the_precision_of_the_averaged_softmax(group_sizes, diverged):
    """Each group's ensemble against float64 arithmetic written out here: the mean of the softmaxes of its members
    that did not diverge, a row right when no class has a larger mean than its label's; NaN when all diverged.
    Random logits of three scales; groups of 1, 2, 3, 5; a diverged member's logits NaN or huge, or a pruned one's
    (pruned members count)."""
    generator = np.random.default_rng(sum(group_sizes))
    members = [populations.Member(f"m{rate}-{seed}", seed, rate, "") for rate, size in enumerate(group_sizes, 1)
               for seed in range(size)]
    rows, classes = 997, 10
    logits = (generator.standard_normal((len(members), rows, classes))
              * generator.choice([0.3, 3.0, 30.0], (len(members), 1, 1))).astype(np.float32)
    for index in diverged:
        members[index].stopped = {"step": 7, "why": "loss is nan at step 7"}
        logits[index] = np.nan if index % 2 else logits[index] * 1e6
    if not diverged:
        members[-1].stopped = {"step": 7, "why": populations.PRUNED + " at step 7"}
    labels = generator.integers(0, classes, rows + 3).astype(np.int32)  # more labels than logits: the first are used
    found = populations.ensemble_precisions(members, logits, labels)
    assert list(found) == [(None, float(rate)) for rate in range(1, len(group_sizes) + 1)]
    first = 0
    for (_, rate), size in zip(found, group_sizes, strict=True):
        kept = [index for index in range(first, first + size) if index not in diverged]
        first += size
        if not kept:
            assert np.isnan(found[(None, rate)])
            continue
        group = logits[kept].astype(np.float64)
        probabilities = np.exp(group - group.max(axis=2, keepdims=True))
        mean = (probabilities / probabilities.sum(axis=2, keepdims=True)).mean(axis=0)
        right = mean[np.arange(rows), labels[:rows]] >= mean.max(axis=1)
        assert found[(None, rate)] == right.sum() / rows


def sweep_command(log_dir, mnist_dir, *more):
    return [sys.executable, "-m", "mnist_gpu", "sweep", "--seed", "1,2", "--learning_rate", "0.01,0.05",
            "--log_dir", str(log_dir), "--backend", "cpu", "--input_data_dir", mnist_dir, "--max_steps", "2300",
            *SHAPE, *more]


def run_until(command, line_start, signal_number, timeout=300):
    """Start `command`, wait for a stdout line starting with `line_start`, send `signal_number`; its exit code."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if line.startswith(line_start):
            process.send_signal(signal_number)
            break
        assert time.monotonic() < deadline, "the run did not get there in time"
    process.stdout.read()
    return process.wait(timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_population_resumes_exactly(mnist_dir, tmp_path, signal_number):
    """Real signals on a real process: SIGINT saves every member at the step it finished; SIGKILL leaves the last
    committed step. Either way --resume ends with the variables of an uninterrupted sweep."""
    whole = subprocess.run(sweep_command(tmp_path / "whole", mnist_dir), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    broken = tmp_path / "broken"
    code = run_until(sweep_command(broken, mnist_dir), "lr0.05_seed2: Step 1500", signal_number)
    assert code == (130 if signal_number == signal.SIGINT else -9)
    committed = populations.read(str(broken))["global_step"]
    assert (committed > 1500) if signal_number == signal.SIGINT else (committed == 1000)
    resumed = subprocess.run(sweep_command(broken, mnist_dir, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from step {committed} (every member)" in resumed.stderr
    for member in populations.read(str(broken))["members"]:
        expected = final_variables(tmp_path / "whole" / member["name"])
        for name, value in final_variables(broken / member["name"]).items():
            np.testing.assert_array_equal(value, expected[name], err_msg=f"{member['name']} {name}")
    assert json.loads((broken / populations.POPULATION_FILE).read_text())["global_step"] == 2300


def test_a_population_too_large_for_memory_is_refused_naming_what_fits(tmp_path, capsys):
    code, _, error = run_main(capsys, "sweep", "--seed", "1-64", "--hidden1", "100000", "--fake_data",
                              "--backend", "numpy", "--log_dir", str(tmp_path / "huge"))
    assert code == 2
    line = error.splitlines()[-1]
    assert line.startswith("mnist-gpu: error: a population of 64 members with --hidden1 100000 ")
    fits = int(line.split("enough for ")[1].split(" member")[0])
    assert 0 <= fits < 64
    assert not (tmp_path / "huge").exists()
    # The number named is the rule's, and the one a study sizes its populations by (search.Worker.group).
    from mnist_gpu.backends import get_backend
    from mnist_gpu.errors import FlagError
    from mnist_gpu.flags import parse_flags
    from mnist_gpu.memory import check_memory, members_that_fit

    backend, flags = get_backend("numpy"), parse_flags("train", hidden1=100000, fake_data=True)
    assert members_that_fit(backend, flags) == fits
    if fits:
        check_memory(backend, flags, fits)
    with pytest.raises(FlagError, match=f"a population of {fits + 1} members .* enough for {fits} member"):
        check_memory(backend, flags, fits + 1)


def test_the_grid_and_its_lists(tmp_path, capsys):
    from mnist_gpu.flags import parse_flags

    parsed = parse_flags("sweep", seed=range(1, 4), learning_rate=[0.1, 0.01])
    assert parsed.seed == (1, 2, 3) and parsed.learning_rate == (0.1, 0.01)
    assert parse_flags("sweep", seed="1-3,7").seed == (1, 2, 3, 7)
    members = populations.grid((1, 2), (0.1, 0.01), "g")
    assert [member.name for member in members] == ["lr0.1_seed1", "lr0.1_seed2", "lr0.01_seed1", "lr0.01_seed2"]
    code, _, error = run_main(capsys, "sweep", "--seed", "3,3", "--log_dir", str(tmp_path / "x"))
    assert code == 2 and "3 is given more than once" in error


def test_a_population_file_is_checked_like_any_file_we_read(tmp_path):
    good = {"format": populations.FORMAT, "global_step": 1000, "max_steps": 2000,
            "flags": {"hidden1": 12, "hidden2": 5, "batch_size": 13, "dataset": "mnist", "fake_data": False},
            "members": [{"name": "lr0.01_seed1", "seed": 1, "learning_rate": 0.01}]}
    (tmp_path / populations.POPULATION_FILE).write_text(json.dumps(good))
    assert populations.read(str(tmp_path)) == good
    for change, field in (({"members": [{"name": "../../etc", "seed": 1, "learning_rate": 0.01}]}, "members[0]"),
                          ({"global_step": -1}, "global_step"), ({"flags": {}}, "flags"),
                          ({"format": "something else"}, "format")):
        (tmp_path / populations.POPULATION_FILE).write_text(json.dumps({**good, **change}))
        with pytest.raises(mnist_gpu.CheckpointError, match=re.escape(f"{populations.POPULATION_FILE}: {field} ")):
            populations.read(str(tmp_path))
    path = tmp_path / populations.POPULATION_FILE
    (tmp_path / "elsewhere.json").write_text(json.dumps(good))

    def huge(name):  # sparse: larger than the bound without writing it
        with open(name, "wb") as stream:
            stream.truncate(65 << 20)

    for make, refusal in ((os.mkfifo, "a FIFO, not a regular file"), (os.mkdir, "a folder, not a regular file"),
                          (lambda name: os.symlink(tmp_path / "elsewhere.json", name), "a link, not a regular file"),
                          (huge, "more than a population file may be")):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)
        make(str(path))
        with pytest.raises(mnist_gpu.CheckpointError, match=re.escape(f"{path}: ") + ".*" + re.escape(refusal)):
            populations.read(str(tmp_path))


def test_a_member_checkpoint_must_be_the_populations_own_file(mnist_dir, tmp_path, capsys):
    """A resume reads each member's committed checkpoint as the population's: another population's checkpoint of the
    same member (a different shape, or other data) and a link to a good copy are refused in one line naming the file
    and the field; the solo run's rules, as for a checkpoint a state file names."""
    def sweep(log_dir, *more):
        return run_main(capsys, "sweep", "--seed", "1,2", "--log_dir", str(log_dir), "--backend", "numpy",
                        "--input_data_dir", mnist_dir, "--hidden2", "5", "--batch_size", "13", *more)

    assert sweep(tmp_path / "ours", "--hidden1", "12", "--max_steps", "30")[0] == 0
    assert sweep(tmp_path / "wider", "--hidden1", "11", "--max_steps", "30")[0] == 0
    assert sweep(tmp_path / "fake", "--hidden1", "12", "--max_steps", "30", "--fake_data")[0] == 0
    name = "lr0.01_seed2/" + checkpoints.checkpoint_name(29)

    def replaced_by(make, field):
        folder = tmp_path / f"try_{field}"
        shutil.copytree(tmp_path / "ours", folder)
        os.remove(folder / name)
        make(folder / name)
        code, _, error = sweep(folder, "--hidden1", "12", "--max_steps", "40", "--resume")
        assert code != 0 and error.count("\n") == 1 and "Traceback" not in error
        assert f"{folder / name}: {field}" in error
        assert populations.read(str(folder))["global_step"] == 30  # nothing trained, nothing committed

    replaced_by(lambda path: shutil.copy(tmp_path / "wider" / name, path), "hidden1 is 11, the population's is 12")
    replaced_by(lambda path: shutil.copy(tmp_path / "fake" / name, path),
                "fake_data is True, the population's is False")
    replaced_by(lambda path: os.symlink(tmp_path / "ours" / name, path), "a link, not a regular file")
    # The second member's state file names a path: refused before the first member writes anything.
    folder = tmp_path / "try_state"
    shutil.copytree(tmp_path / "ours", folder)
    state = folder / "lr0.01_seed2" / checkpoints.STATE_FILE
    state.write_text(state.read_text().replace(checkpoints.checkpoint_name(29), "../../x.safetensors"))
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*")}
    code, _, error = sweep(folder, "--hidden1", "12", "--max_steps", "40", "--resume")
    assert code != 0 and "Traceback" not in error and f"{state}: line " in error.splitlines()[-1]
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*")} == before


@pytest.mark.parametrize("blocked", [populations.POPULATION_FILE, populations.RESULTS_CSV, populations.RESULTS_MD])
def test_a_population_file_that_cannot_be_written_is_one_line(tmp_path, capsys, blocked):
    """A real failed replace (a folder where the file goes: os.replace raises IsADirectoryError) is a WriteError naming
    the file, never a traceback; the members' checkpoints of the step are saved before it."""
    log_dir = tmp_path / "population"
    os.makedirs(log_dir / blocked)
    code, _, error = run_main(capsys, "sweep", "--seed", "1,2", "--fake_data", "--backend", "numpy", "--hidden1", "8",
                              "--hidden2", "4", "--max_steps", "20", "--log_dir", str(log_dir))
    assert code == 1
    intact = "no step of this population was committed: it starts again with --overwrite" \
        if blocked == populations.POPULATION_FILE else "every member's checkpoint of this step is saved"
    assert one_error_line(error) == f"mnist-gpu: error: saving {log_dir / blocked} failed: Is a directory; {intact}"
    for member in ("lr0.01_seed1", "lr0.01_seed2"):
        assert checkpoints.read_state(str(log_dir / member)) == [checkpoints.checkpoint_name(19)]


KILLED_BEFORE_THE_COMMIT = """
import os, signal, sys
from mnist_gpu import population
from mnist_gpu.cli import main

commits = []
def commit(*arguments, real=population.commit):
    commits.append(arguments)
    if len(commits) == 2:  # every member has saved (and listed) its second checkpoint; the population not yet
        os.kill(os.getpid(), signal.SIGKILL)
    real(*arguments)
population.commit = commit
sys.exit(main(sys.argv[1:]))
"""


def test_a_population_killed_before_its_commit_resumes_with_max_to_keep_1(tmp_path, capsys, mnist_dir):
    """--max_to_keep 1, a real SIGKILL after every member saved its second checkpoint but before the population file
    named it: the members keep the checkpoint the population file still names, and --resume ends as an unkilled
    sweep. (Each member had already deleted it: 'checkpoint file not found', and only --overwrite went on.)"""
    flags = ["sweep", "--seed", "1,2", "--backend", "numpy", "--input_data_dir", mnist_dir, "--max_steps", "3",
             "--eval_every", "1", "--max_to_keep", "1", *SHAPE]
    assert run_main(capsys, *flags, "--log_dir", str(tmp_path / "whole"))[0] == 0
    killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_COMMIT, *flags, "--log_dir",
                             str(tmp_path / "killed")], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert populations.read(str(tmp_path / "killed"))["global_step"] == 1
    code, _, error = run_main(capsys, *flags, "--log_dir", str(tmp_path / "killed"), "--resume")
    assert code == 0, error
    for seed in (1, 2):
        name = populations.member_name(seed, 0.01)
        expected = final_variables(tmp_path / "whole" / name)
        for variable, value in final_variables(tmp_path / "killed" / name).items():
            np.testing.assert_array_equal(value.view(np.uint32), expected[variable].view(np.uint32))
        assert sorted(found for found in os.listdir(tmp_path / "killed" / name) if found.startswith("model.ckpt")) \
            == ["model.ckpt-2.safetensors"]  # the one the population had named is pruned once it commits again


def test_a_resumed_population_stops_a_blown_up_member_where_an_uninterrupted_one_does(tmp_path, capsys, mnist_dir):
    """The blow-up rule compares a loss read with the one 100 steps before: a checkpoint keeps that earlier read, so a
    population stopped at step 150 and resumed stops its learning rate 60 members at step 200 as the uninterrupted
    one does (it forgot it: one member stopped at 300, the other trained on, its loss 28)."""
    flags = ["sweep", "--seed", "1,2", "--learning_rate", "0.05,60", "--backend", "numpy", "--input_data_dir",
             mnist_dir, "--eval_every", "600", "--hidden1", "8", "--hidden2", "4", "--batch_size", "13"]
    assert run_main(capsys, *flags, "--max_steps", "1000", "--log_dir", str(tmp_path / "whole"))[0] == 3
    assert run_main(capsys, *flags, "--max_steps", "150", "--log_dir", str(tmp_path / "split"))[0] == 0
    assert run_main(capsys, *flags, "--max_steps", "1000", "--log_dir", str(tmp_path / "split"), "--resume")[0] == 3
    # Stopped at 300, after those members stopped: their final loss (it was nan) comes back from their checkpoints.
    assert run_main(capsys, *flags, "--max_steps", "300", "--log_dir", str(tmp_path / "late"))[0] == 3
    assert run_main(capsys, *flags, "--max_steps", "1000", "--log_dir", str(tmp_path / "late"), "--resume")[0] == 3
    # Resumed once more, it has nothing to do, and its exit code still says some of its members diverged.
    code, lines, error = run_main(capsys, *flags, "--max_steps", "1000", "--log_dir", str(tmp_path / "late"),
                                  "--resume")
    assert code == 3 and lines == [] and error.splitlines()[-1].endswith(
        "steps (step 999 is saved), --max_steps is 1000; 2 of its 4 members had diverged")
    whole, split, late = (results_table(tmp_path / folder, ("member", "diverged_at_step", "test", "final_loss"))
                          for folder in ("whole", "split", "late"))
    assert split == whole and late == whole and [row["diverged_at_step"] for row in whole[0]] == ["", "", "200", "200"]
    assert all(float(row["final_loss"]) > 23 for row in whole[0][2:])
    for member in (row["member"] for row in whole[0]):
        expected = final_variables(tmp_path / "whole" / member)
        for folder in ("split", "late"):
            for name, value in final_variables(tmp_path / folder / member).items():
                np.testing.assert_array_equal(value.view(np.uint32), expected[name].view(np.uint32), err_msg=member)


def test_resuming_a_population_whose_members_all_stopped_trains_nothing(tmp_path, capsys, mnist_dir):
    """Every member diverged: the population ended at that step, short of --max_steps. --resume trained the stopped
    members again (nothing updated, every step run, new checkpoints); now it says so and writes nothing."""
    flags = ["sweep", "--seed", "3,4", "--learning_rate", "1e9", "--backend", "numpy", "--input_data_dir", mnist_dir,
             "--batch_size", "13", "--max_steps", "300", "--log_dir", str(tmp_path / "grid")]
    code, _, error = run_main(capsys, *flags)
    assert code == 3 and "every member has stopped training" in error
    committed = populations.read(str(tmp_path / "grid"))["global_step"]
    assert committed < 300
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    code, lines, error = run_main(capsys, *flags, "--resume")
    assert code == 3 and lines == []  # as the run that ended there: its members diverged
    assert error.splitlines()[-1] == f"mnist-gpu: nothing to do: every member of the population in " \
        f"{tmp_path / 'grid'} had stopped training by global_step {committed} (each one's checkpoint says why); " \
        "2 of its 2 members had diverged"
    # From Python: each member's result says where it diverged, as the run's results.csv does.
    result = mnist_gpu.sweep(seed=[3, 4], learning_rate=1e9, backend="numpy", input_data_dir=mnist_dir, batch_size=13,
                             max_steps=300, log_dir=str(tmp_path / "grid"), resume=True)
    rows = results_table(tmp_path / "grid", ("member", "seed", "diverged_at_step"))[0]
    assert [(str(member.seed), str(member.diverged_at_step)) for member in result.members] == \
        [(row["seed"], row["diverged_at_step"]) for row in rows] and rows[0]["diverged_at_step"] != ""
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")} == before


def test_a_diverged_members_evaluation_prints_no_numpy_warning(tmp_path, capsys, mnist_dir):
    """eval of a member stopped for a NaN loss on the numpy backend: its weights overflow to inf and NaN, counted
    wrong, and stderr holds no RuntimeWarning ("overflow encountered in matmul", unprefixed, from NumPy)."""
    common = ["--backend", "numpy", "--input_data_dir", mnist_dir]
    assert run_main(capsys, "sweep", "--batch_size", "13", "--seed", "3", "--learning_rate", "1e9", "--max_steps",
                    "60", "--log_dir", str(tmp_path / "grid"), *common)[0] == 3
    evaluated = subprocess.run([sys.executable, "-m", "mnist_gpu", "eval", "--checkpoint",
                                str(tmp_path / "grid" / populations.member_name(3, 1e9)), *common],
                               capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0 and "Warning" not in evaluated.stderr, evaluated.stderr
    assert evaluated.stdout.count("Precision @ 1: ") == 3
