"""A whole training step per backend beside its 8 GEMMs alone (the floor).

Within one group the step and the floor are timed in the same run, so their ratio is stable
even on a noisy shared machine.
"""
import statistics
import time

import pytest

from bench.workloads import BACKENDS, GemmFloor, Step, backend_or_skip

STEP_SHAPES = [(100, 128, 32), (1000, 128, 32), (10000, 128, 32), (1000, 1024, 32)]


def warmed(callable_, times=20):
    for _ in range(times):  # JIT compilation, BLAS thread start-up, CUDA context and caches
        callable_()
    return callable_


@pytest.mark.parametrize("variant", ["numpy", "cpu", "cuda", "numpy-gemm-floor", "cuda-gemm-floor", "cuda-launch-only"])
@pytest.mark.parametrize("batch, hidden1, hidden2", STEP_SHAPES)
def test_training_step(benchmark, variant, batch, hidden1, hidden2):
    benchmark.group = f"step B={batch} H1={hidden1} H2={hidden2}"
    backend = backend_or_skip(variant.split("-")[0])
    if variant.endswith("gemm-floor"):
        target = GemmFloor(backend, batch, hidden1, hidden2)
    elif variant.endswith("launch-only"):
        # Host time to issue a step; the queue is drained between rounds, outside the timing.
        step = Step(backend, batch, hidden1, hidden2)
        warmed(step)
        benchmark.pedantic(step.enqueue, setup=backend.synchronize, rounds=200, warmup_rounds=10)
        return
    else:
        target = Step(backend, batch, hidden1, hidden2)
    benchmark(warmed(target))


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
