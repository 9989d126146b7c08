"""A whole training step per backend beside its 8 GEMMs alone (the floor).

Within one group the step and the floor are timed in the same run, so their ratio is stable
even on a noisy shared machine.
"""
import statistics
import time

import pytest

from bench.workloads import BACKENDS, GemmFloor, ProgramStep, Step, backend_or_skip

STEP_SHAPES = [(100, 128, 32), (1000, 128, 32), (10000, 128, 32), (1000, 1024, 32)]


def warmed(callable_, times=20):
    for _ in range(times):  # JIT compilation, BLAS thread start-up, CUDA context and caches
        callable_()
    return callable_


def say_how_it_runs(benchmark, target, title):
    """For the step program: how it ran (eager or graph, launches prepared or not), printed and kept with the figure."""
    if isinstance(target, ProgramStep):
        benchmark.extra_info["ran"] = target.program.describe()
        print(f"{title}: the step program ran {target.program.describe()}")


def step_workload(variant, batch, hidden1, hidden2):
    """A variant's callable: "<backend>" (op by op), "cuda-eager" / "cuda-graph" (the step program),
    "<backend>-gemm-floor" (its 8 GEMMs alone); any of them "-launch-only"."""
    backend = backend_or_skip(variant.split("-")[0])
    if "gemm-floor" in variant:
        return GemmFloor(backend, batch, hidden1, hidden2)
    if "-eager" in variant or "-graph" in variant:
        return ProgramStep(backend, batch, hidden1, hidden2, graph="on" if "-graph" in variant else "off")
    return Step(backend, batch, hidden1, hidden2)


@pytest.mark.parametrize("variant", ["numpy", "cpu", "cuda", "cuda-eager", "cuda-graph", "numpy-gemm-floor",
                                     "cuda-gemm-floor", "cuda-launch-only", "cuda-eager-launch-only",
                                     "cuda-graph-launch-only"])
@pytest.mark.parametrize("batch, hidden1, hidden2", STEP_SHAPES)
def test_training_step(benchmark, variant, batch, hidden1, hidden2):
    """A step, finished (GPU work synchronised); "-launch-only": the host's time to issue it."""
    benchmark.group = f"step B={batch} H1={hidden1} H2={hidden2}"
    target = warmed(step_workload(variant, batch, hidden1, hidden2))
    say_how_it_runs(benchmark, target, f"{benchmark.group}, {variant}")
    if variant.endswith("launch-only"):  # the queue is drained between rounds, outside the timing
        benchmark.pedantic(target.enqueue, setup=target.backend.synchronize, rounds=200, warmup_rounds=10)
    else:
        benchmark(target)


@pytest.mark.parametrize("variant", ["cuda", "cuda-eager", "cuda-graph"])
@pytest.mark.parametrize("batch", [100, 1000])
def test_gpu_time_per_step(benchmark, variant, batch):
    """GPU time of a step (CUDA events around 100 queued steps, divided by 100) beside the wall time of the 100.

    The events time the GPU's timeline: where the host issues steps slower than the GPU runs them
    (op by op, maybe eager), that is the host's pace, and the launch-only figures say so.
    """
    benchmark.group = f"GPU time per step B={batch} (100 steps queued)"
    target = warmed(step_workload(variant, batch, 128, 32))  # skips without a GPU
    say_how_it_runs(benchmark, target, f"{benchmark.group}, {variant}")
    import cupy

    gpu_times = []

    def hundred_steps():
        stream = target.backend.stream
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        for _ in range(100):
            target.enqueue()
        end.record(stream)
        end.synchronize()
        gpu_times.append(cupy.cuda.get_elapsed_time(start, end) / 1000 / 100)  # ms -> s, per step

    benchmark.pedantic(hundred_steps, rounds=30, warmup_rounds=2)
    benchmark.extra_info["gpu_seconds_per_step_median"] = statistics.median(gpu_times)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("batch, hidden1, hidden2", STEP_SHAPES)
def test_step_over_floor(benchmark, backend_name, batch, hidden1, hidden2):
    """A step and its GEMM floor timed alternately, call after call, so machine noise hits both alike.

    The headline is the median of the per-round ratios (step time / floor time), kept in
    extra_info with both medians; the benchmark's own statistics are of the pair.
    """
    benchmark.group = f"step/floor interleaved B={batch} H1={hidden1} H2={hidden2}"
    backend = backend_or_skip(backend_name)
    step, floor = warmed(Step(backend, batch, hidden1, hidden2)), warmed(GemmFloor(backend, batch, hidden1, hidden2))
    step_times, floor_times = [], []

    def one_round():
        start = time.perf_counter()
        step()
        middle = time.perf_counter()
        floor()
        step_times.append(middle - start)
        floor_times.append(time.perf_counter() - middle)

    start = time.perf_counter()
    one_round()
    rounds = max(20, min(3000, int(2.0 / (time.perf_counter() - start))))  # about two seconds
    benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=5)
    benchmark.extra_info.update(
        step_median=statistics.median(step_times), floor_median=statistics.median(floor_times),
        ratio=statistics.median(step / floor for step, floor in zip(step_times, floor_times, strict=True)))
