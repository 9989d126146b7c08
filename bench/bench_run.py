"""The whole tutorial run and its pieces: start-up, data loading (cold and warm), one evaluation, one checkpoint.

The run a user times is `mnist-gpu --seed 1` in a fresh process; its pieces are timed here one
by one so that a change to any of them shows. Fresh processes are timed with the host clock
around subprocess.run; in-process pieces with pytest-benchmark's own timer.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

import pytest

from bench.workloads import BACKENDS, backend_or_skip
from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import model as mnist
from mnist_gpu.backends.gpu_probe import gpu_available
from mnist_gpu.evaluate import SPLITS, evaluate_all
from mnist_gpu.flags import parse_flags
from mnist_gpu.input_data import read_data_sets
from mnist_gpu.log import Log
from mnist_gpu.steps import DeviceSplit
from mnist_gpu.trainer import run_training

RUN_GROUP = "tutorial run (2000 steps, B=100, evals included)"
STARTUP_GROUP = "start-up: mnist-gpu --max_steps 0 (a fresh process, the data cache warm)"
# "cuda": the step as a CUDA graph (--cuda_graph auto); "cuda-eager": its prepared launches (off).
RUN_VARIANTS = {"numpy": {"backend": "numpy"}, "cpu": {"backend": "cpu"}, "cuda": {"backend": "cuda"},
                "cuda-eager": {"backend": "cuda", "cuda_graph": "off"}}


def skip_cuda_without_a_gpu(backend_name):
    if backend_name.startswith("cuda") and not gpu_available():
        pytest.skip("needs an NVIDIA GPU with CuPy")


@pytest.mark.parametrize("variant", RUN_VARIANTS)
def test_tutorial_run(benchmark, variant, tmp_path_factory):
    """In this process: 2000 steps, two evaluations, checkpoints, events (imports and JIT excluded)."""
    skip_cuda_without_a_gpu(variant)
    benchmark.group = RUN_GROUP

    def flags():
        return (parse_flags(log_dir=str(tmp_path_factory.mktemp("run")), seed=1, **RUN_VARIANTS[variant]),
                Log(verbose=False)), {}

    benchmark.pedantic(run_training, setup=flags, rounds=3, warmup_rounds=1)


def run_command(arguments):
    """Wall seconds of a fresh `python -m mnist_gpu ...` process, and its stdout."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mnist_gpu", *arguments], capture_output=True, text=True,
                            check=True)
    return time.perf_counter() - start, result.stdout


@pytest.mark.parametrize("variant", RUN_VARIANTS)
def test_whole_command(benchmark, variant, tmp_path_factory):
    """`mnist-gpu --seed 1` as a user runs it, a fresh process each round (the data cache warm)."""
    skip_cuda_without_a_gpu(variant)
    benchmark.group = "whole command: mnist-gpu --seed 1 (a fresh process)"
    input_data_dir = str(tmp_path_factory.mktemp("input_data"))
    variant_flags = [f"--{name}={value}" for name, value in RUN_VARIANTS[variant].items()]
    run_command([*variant_flags, "--input_data_dir", input_data_dir, "--max_steps", "1",
                 "--log_dir", str(tmp_path_factory.mktemp("warm-up"))])  # fills the cache, compiles
    benchmark.pedantic(lambda log_dir: run_command([*variant_flags, "--seed", "1", "--input_data_dir",
                                                    input_data_dir, "--log_dir", log_dir]),
                       setup=lambda: ((str(tmp_path_factory.mktemp("run")),), {}), rounds=5)


# How the cpu backend's OpenMP threads wait between parallel loops: its own default (cpu_backend.SPIN_COUNT), not at
# all, or GNU OpenMP's default (when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, it spins 300,000 times).
WAITS = {"spin 3000 (ours)": {}, "no spin": {"OMP_WAIT_POLICY": "PASSIVE"},
         "spin 300000 (GNU's)": {"GOMP_SPINCOUNT": "300000"}}
AT_ONCE = {"one run": 1, "two runs at once": 2, "a sweep of 16": 0}
WAIT_GROUP = "{what} (cpu, a fresh process each), by how OpenMP's threads wait"


@pytest.mark.parametrize("variant", list(WAITS))
@pytest.mark.parametrize("what", list(AT_ONCE))
def test_commands_at_once(benchmark, variant, what, tmp_path_factory):
    """`mnist-gpu --backend cpu --seed 1` alone, two started together (two users, one machine), and `mnist-gpu sweep
    --seed 1-16 --max_steps 600`: wall seconds until all end, by how OpenMP's threads wait. A spinning thread holds a
    core that the other run needs; a sleeping one is slow to wake for the next loop."""
    benchmark.group = WAIT_GROUP.format(what=what)
    input_data_dir = str(tmp_path_factory.mktemp("input_data"))
    environment = {name: value for name, value in os.environ.items() if name not in ("OMP_WAIT_POLICY",
                                                                                     "GOMP_SPINCOUNT")}
    environment.update(WAITS[variant])
    common = [sys.executable, "-m", "mnist_gpu", "--backend", "cpu", "--input_data_dir", input_data_dir]
    subprocess.run([*common, "--max_steps", "1", "--log_dir", str(tmp_path_factory.mktemp("warm-up"))], check=True,
                   capture_output=True, env=environment)  # fills the cache, compiles
    commands = [[*common, "--seed", "1"]] * AT_ONCE[what] or \
        [[*common[:3], "sweep", *common[3:], "--seed", "1-16", "--max_steps", "600"]]

    def together():
        runs = [subprocess.Popen([*command, "--log_dir", str(tmp_path_factory.mktemp("run"))],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
                for command in commands]
        assert all(run.wait() == 0 for run in runs)

    benchmark.pedantic(together, rounds=4)


BASELINE_GROUP = "whole command against a baseline checkout, interleaved (a fresh process each)"


def baseline_checkout():
    """The folder of an older checkout to compare with ($MNIST_GPU_BASELINE), and its commit; else skip."""
    folder = os.environ.get("MNIST_GPU_BASELINE")
    if not folder or not os.path.isfile(os.path.join(folder, "mnist_gpu", "__main__.py")):
        pytest.skip("set MNIST_GPU_BASELINE to an older checkout (e.g. git worktree add ../before <commit>)")
    commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return os.path.abspath(folder), commit.stdout.strip() or "?"


@pytest.mark.parametrize("backend_name, baseline_blas_threads", [("numpy", None), ("cpu", None), ("numpy", 1)],
                         ids=["numpy", "cpu", "numpy-baseline-on-one-blas-thread"])
def test_whole_command_against_a_baseline(benchmark, backend_name, baseline_blas_threads, tmp_path_factory):
    """`mnist-gpu --seed 1` from this checkout and from an older one, alternated round by round.

    `python -m mnist_gpu` started in a checkout imports that checkout's package (the current folder comes first
    on sys.path), so both run under this interpreter and its libraries. The benchmark's time is the pair;
    extra_info has each median and the median of the per-round ratios (this / baseline). With
    baseline_blas_threads the baseline runs with OPENBLAS_NUM_THREADS set to it, as this checkout trains (trainer.py,
    BLAS_THREADS): what is left of the ratio is the code, not the thread count.
    """
    benchmark.group = BASELINE_GROUP
    baseline, commit = baseline_checkout()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = {folder: str(tmp_path_factory.mktemp("input_data")) for folder in (baseline, here)}
    environment = {folder: dict(os.environ) for folder in (baseline, here)}
    if baseline_blas_threads:
        environment[baseline]["OPENBLAS_NUM_THREADS"] = str(baseline_blas_threads)
        benchmark.extra_info["baseline_blas_threads"] = baseline_blas_threads

    def command(folder, log_dir, *more):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mnist_gpu", "--backend", backend_name, "--input_data_dir",
                        data[folder], "--log_dir", log_dir, *more], cwd=folder, env=environment[folder],
                       capture_output=True, check=True)
        return time.perf_counter() - start

    for folder in (baseline, here):  # fills each one's data cache and compiles its kernels
        command(folder, str(tmp_path_factory.mktemp("warm-up")), "--max_steps", "1")
    this_times, baseline_times = [], []

    def one_round():  # the two in turns: each goes first in every other round (the second of a pair can differ)
        pair = [(baseline_times, baseline, "baseline"), (this_times, here, "this")]
        for times, folder, name in pair if len(this_times) % 2 == 0 else reversed(pair):
            times.append(command(folder, str(tmp_path_factory.mktemp(name)), "--seed", "1"))

    benchmark.pedantic(one_round, rounds=8)
    benchmark.extra_info.update(
        baseline=commit, this_median=statistics.median(this_times),
        baseline_median=statistics.median(baseline_times),
        over_baseline=statistics.median(this / before for this, before in zip(this_times, baseline_times,
                                                                              strict=True)))


def startup_arguments(backend_name, tmp_path_factory):
    """`mnist-gpu --max_steps 0` with its own data folder and log_dir, run once here to fill the data cache."""
    arguments = ["--backend", backend_name, "--input_data_dir", str(tmp_path_factory.mktemp("input_data")),
                 "--max_steps", "0", "--log_dir", str(tmp_path_factory.mktemp("run"))]
    run_command(arguments)
    return arguments


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_startup(benchmark, backend_name, tmp_path_factory):
    """Everything before the first step, in a fresh process: `mnist-gpu --max_steps 0` (imports, backend, data)."""
    skip_cuda_without_a_gpu(backend_name)
    benchmark.group = STARTUP_GROUP
    arguments = startup_arguments(backend_name, tmp_path_factory)
    benchmark.pedantic(run_command, args=(arguments,), rounds=7)


# The libraries a backend cannot start without (bench/startup_floor.py): what is left above them is mnist_gpu's.
STARTUP_FLOORS = {"numpy": [], "cpu": ["numba"]}


@pytest.mark.parametrize("backend_name", STARTUP_FLOORS)
def test_startup_over_floor(benchmark, backend_name, tmp_path_factory):
    """Start-up and its libraries' floor, alternated round by round (fresh processes), so both see the same machine.

    The benchmark's time is the pair; extra_info has each median and the median per-round difference.
    """
    benchmark.group = "start-up over the libraries' floor, interleaved (a fresh process each)"
    arguments = startup_arguments(backend_name, tmp_path_factory)
    floor_command = [sys.executable, os.path.join(os.path.dirname(__file__), "startup_floor.py"),
                     *STARTUP_FLOORS[backend_name]]
    subprocess.run(floor_command, check=True)  # compiles the floor's kernel into Numba's cache
    startup_times, floor_times = [], []

    def one_round():
        start = time.perf_counter()
        subprocess.run(floor_command, check=True)
        middle = time.perf_counter()
        run_command(arguments)
        floor_times.append(middle - start)
        startup_times.append(time.perf_counter() - middle)

    benchmark.pedantic(one_round, rounds=9)
    benchmark.extra_info.update(
        startup_median=statistics.median(startup_times), floor_median=statistics.median(floor_times),
        above_floor=statistics.median(startup - floor
                                      for startup, floor in zip(startup_times, floor_times, strict=True)))


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_data_loading(benchmark, cache, tmp_path):
    """read_data_sets from the shipped files: cold decompresses, verifies and caches; warm maps the cache."""
    benchmark.group = "data loading (MNIST, 4 files)"
    read_data_sets(str(tmp_path))  # the cache, for the warm rounds

    def setup():
        if cache == "cold":
            shutil.rmtree(os.path.join(tmp_path, "cache"), ignore_errors=True)
        return (str(tmp_path),), {}

    benchmark.pedantic(read_data_sets, setup=setup, rounds=7, warmup_rounds=1)


@pytest.fixture(scope="module")
def data_sets(tmp_path_factory):
    return read_data_sets(str(tmp_path_factory.mktemp("input_data")))


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_one_evaluation(benchmark, backend_name, data_sets):
    """The tutorial's three eval blocks once: 55000 + 5000 + 10000 examples."""
    benchmark.group = "one evaluation (train, validation, test: 70000 examples, B=100)"
    backend = backend_or_skip(backend_name)
    model = mnist.Model(backend, mnist.stacked([mnist.initial_variables(128, 32, seed=0)]), 100, [0.01])
    splits = {name: DeviceSplit(backend, getattr(data_sets, name)) for name, _ in SPLITS}
    evaluate_all(model, splits, Log(verbose=False))  # compile and warm up
    benchmark(evaluate_all, model, splits, Log(verbose=False))


def test_one_checkpoint(benchmark, tmp_path, data_sets):
    """Saving the tutorial's model: safetensors file, state file, fsyncs (what each 1000 steps costs)."""
    benchmark.group = "one checkpoint (784-128-32-10, with the training order)"
    order, position = data_sets.train.position()
    checkpoint = checkpoints.Checkpoint(mnist.initial_variables(128, 32, seed=0), 1000, {"seed": 1}, order, position)
    saver = checkpoints.Saver(str(tmp_path))
    steps = iter(range(10 ** 6))
    benchmark(lambda: saver.save(next(steps), checkpoint))
