"""Populations: the step of K members per member against the step of one, and a sweep against its solo runs.

Within a group every K is timed in the same run, so the ratios are comparable even on a noisy
shared machine: the report divides each K's median by K (per member) and by K = 1's.
"""
import itertools
import os
import subprocess
import sys
import tempfile

import pytest

from bench.workloads import ProgramStep, Step, backend_or_skip
from mnist_gpu.backends import blas_library

HOST_MEMBERS = [1, 4, 16, 64]
GPU_MEMBERS = [1, 16, 256, 1024, 4096]


@pytest.fixture
def one_blas_thread():
    """As the trainer runs: OpenBLAS on one thread, the members spread over the cores (see cpu_backend.py)."""
    with blas_library.threads_for(1):
        yield


@pytest.mark.parametrize("members", HOST_MEMBERS)
@pytest.mark.parametrize("backend_name", ["numpy", "cpu"])
def test_population_step(benchmark, one_blas_thread, backend_name, members):
    """One training step of K members (B=100, 784-128-32-10), finished; per member: the median / K."""
    benchmark.group = f"population step, {backend_name} (B=100): divide by K for a member's share"
    benchmark.extra_info["members"] = members
    step = Step(backend_or_skip(backend_name), 100, members=members)
    for _ in range(5):
        step()
    benchmark(step)


@pytest.mark.parametrize("members", GPU_MEMBERS)
@pytest.mark.parametrize("graph", ["off", "on"])
def test_population_step_on_a_gpu(benchmark, graph, members):
    """The cuda step program of K members, eager (prepared launches) or one CUDA graph, finished."""
    benchmark.group = f"population step, cuda {'graph' if graph == 'on' else 'eager'} (B=100)"
    benchmark.extra_info["members"] = members
    step = ProgramStep(backend_or_skip("cuda"), 100, graph=graph, members=members)
    for _ in range(5):
        step()
    benchmark.extra_info["ran"] = step.program.describe()
    benchmark(step)


# (members, of which stopped): a population step with stopped members kept in it, against the step of the members
# still training alone, which is what the trainer's repack leaves (trainer.py, TrainingLoop.repack).
HOST_STOPPED, GPU_STOPPED = (16, 8), (1024, 768)


def stopped_members_step(make_step, way, members, stopped):
    """The step of `members` of which `stopped` are stopped ("kept"), or of the others alone ("repacked")."""
    if way == "repacked":
        return make_step(members - stopped)
    step = make_step(members)
    step.model.set_active([1] * (members - stopped) + [0] * stopped)
    return step


@pytest.mark.parametrize("way", ["kept", "repacked"])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_stopped_members_step(benchmark, one_blas_thread, backend, way):
    """One training step of 16 members of which 8 have stopped, kept in the step program or repacked out of it."""
    members, stopped = HOST_STOPPED
    benchmark.group = f"{members} members, {stopped} stopped, {backend} (B=100): kept in the step, or repacked"
    benchmark.extra_info.update(stopped=stopped, backend=backend)
    on = backend_or_skip(backend)
    step = stopped_members_step(lambda count: Step(on, 100, members=count), way, members, stopped)
    for _ in range(5):
        step()
    benchmark(step)


@pytest.mark.parametrize("way", ["kept", "repacked"])
def test_stopped_members_step_on_a_gpu(benchmark, way):
    """The cuda step program (CUDA graph) of 1024 members of which 768 have stopped, kept or repacked."""
    members, stopped = GPU_STOPPED
    benchmark.group = f"{members} members, {stopped} stopped, cuda graph (B=100): kept in the step, or repacked"
    benchmark.extra_info.update(stopped=stopped, backend="cuda")
    on = backend_or_skip("cuda")
    step = stopped_members_step(lambda count: ProgramStep(on, 100, graph="on", members=count), way, members, stopped)
    for _ in range(5):
        step()
    benchmark.extra_info["ran"] = step.program.describe()
    benchmark(step)


def run(arguments, folder):
    subprocess.run([sys.executable, "-m", "mnist_gpu", *arguments], check=True, cwd=folder,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def time_whole_commands(benchmark, one_round, rounds):
    """Times `one_round(folder, data, log_dir)`, whole `mnist-gpu` commands run in a temporary folder whose data
    cache and cpu kernels a 1-step run has warmed first; each round gets a log_dir name of its own."""
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "input_data")
        run(["--max_steps", "1", "--backend", "cpu", "--input_data_dir", data, "--log_dir", "warm"], folder)
        names = (f"r{index}" for index in itertools.count())
        benchmark.pedantic(lambda: one_round(folder, data, next(names)), rounds=rounds, warmup_rounds=0)


SEEDS = 16


@pytest.mark.parametrize("way", ["one sweep", "solo runs"])
def test_sweep_against_solo_runs(benchmark, way):
    """`mnist-gpu sweep --seed 1-16` (the tutorial's defaults, cpu) as one command, against the 16 commands
    `mnist-gpu --seed S` one after the other: whole commands, start-up and evaluations included."""
    benchmark.group = f"{SEEDS} tutorial runs (cpu): one sweep or one command each"

    def commands(folder, data, name):
        if way == "one sweep":
            run(["sweep", "--seed", f"1-{SEEDS}", "--backend", "cpu", "--input_data_dir", data, "--log_dir", name],
                folder)
        else:
            for seed in range(1, SEEDS + 1):
                run(["--seed", str(seed), "--backend", "cpu", "--input_data_dir", data, "--log_dir",
                     f"{name}-{seed}"], folder)

    time_whole_commands(benchmark, commands, rounds=2)


TRIALS = 64  # the study's configurations; under --benchmark-disable (the test suite's smoke run) 2 of them
SMALL = ["--hidden1", "12", "--hidden2", "5", "--batch_size", "13", "--max_steps", "1000"]


def learning_rates(count):
    """`count` learning rates spread evenly in log space over 0.005 .. 0.5, each written as Python reads it back."""
    return [float(f"{rate:.6g}") for rate in [0.005 * 100 ** (index / max(count - 1, 1)) for index in range(count)]]


@pytest.mark.parametrize("way", ["study, populations of 64", "study, populations of 16", "solo runs"])
def test_study_against_solo_runs(benchmark, way):
    """A 64-trial Optuna study (a grid of 64 learning rates, one seed, small layers 784-12-5-10, B=13, 1000 steps,
    cpu) as one `mnist-gpu sweep` worker, against the 64 commands `mnist-gpu --learning_rate R` one after the other:
    whole commands, start-up, the study's journal and every evaluation included."""
    pytest.importorskip("optuna", reason="the sweep extra (pip install '.[sweep]') is not installed")
    trials = 2 if benchmark.disabled else TRIALS
    benchmark.group = f"{TRIALS} trials (cpu, 784-12-5-10, B=13, 1000 steps): one study or one command each"
    benchmark.extra_info["trials"] = trials
    rates = learning_rates(trials)

    def commands(folder, data, name):
        if way.startswith("study"):
            run(["sweep", "--learning_rate", ",".join(map(str, rates)), "--seed", "1", "--population",
                 way.split()[-1], "--backend", "cpu", "--input_data_dir", data, "--log_dir", name, *SMALL], folder)
        else:
            for index, rate in enumerate(rates):
                run(["--learning_rate", str(rate), "--seed", "1", "--backend", "cpu", "--input_data_dir", data,
                     "--log_dir", f"{name}-{index}", *SMALL], folder)

    time_whole_commands(benchmark, commands, rounds=1)
