"""The real-compiler tier: every CUDA kernel compiled by NVIDIA's compiler for sm_75/80/90, no GPU needed."""
import json
import os
import subprocess
import sys

import pytest

from mnist_gpu.compile_report import ARCHITECTURES, compile_report, markdown, never_launched, occupancy, problems

from helpers import needs_cuda_compiler

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@needs_cuda_compiler
def test_every_kernel_compiles_without_spills_local_memory_or_float64(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "mnist_gpu.compile_report", "--json", str(report)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    recording, results = data["recording"], data["results"]
    assert len(recording["kernels"]) >= 9 and never_launched(recording) == []
    assert len(results) == len(recording["launches"]) * len(ARCHITECTURES)
    for compiled in results:
        assert problems(compiled) == [], compiled
        assert 8 <= compiled["registers"] <= 128 and 0 < compiled["occupancy"] <= 1
    # Every recorded kernel has its row in the printed table.
    for module, kernel in recording["kernels"]:
        assert f"`{module.rsplit('.', 1)[-1]}.{kernel}`" in result.stdout


@pytest.mark.slow
@needs_cuda_compiler
def test_the_tier_catches_float64_and_local_memory():
    launches = [
        {"module": "faulty_kernels", "kernel": "float64_literal_kernel", "threads": 256,
         "arguments": [{"dtype": "float32", "ndim": 1, "layout": "C"}]},
        {"module": "faulty_kernels", "kernel": "local_memory_kernel", "threads": 256,
         "arguments": [{"dtype": "float32", "ndim": 1, "layout": "C"}, {"dtype": "int32"}]},
        {"module": "faulty_kernels", "kernel": "typing_error_kernel", "threads": 256,
         "arguments": [{"dtype": "float32", "ndim": 1, "layout": "C"}]},
    ]
    results = compile_report(launches, extra_path=TESTS)
    by_kernel = {}
    for compiled in results:
        by_kernel.setdefault(compiled["kernel"], []).append(problems(compiled))
    assert all(any("float64 instructions" in problem for problem in found)
               for found in by_kernel["float64_literal_kernel"])
    assert all(any(problem.startswith("local memory") for problem in found)
               for found in by_kernel["local_memory_kernel"])
    assert all(found[0].startswith("compile error: TypingError") for found in by_kernel["typing_error_kernel"])
    assert "float64 instructions" in markdown([compiled for compiled in results if "error" not in compiled])


@pytest.mark.parametrize("cc, threads, registers, shared, expected", [
    ((9, 0), 256, 32, 0, 1.0),  # 64 warps of 32 x 32 registers fit in 64K
    ((9, 0), 256, 64, 0, 0.5),  # 2048 registers a warp: 32 warps, 4 blocks of 8
    ((9, 0), 256, 255, 0, 0.125),  # 8192 a warp (rounded up to 256s): 8 warps, one block
    ((8, 0), 256, 32, 100 * 1024, 0.125),  # 101 KB a block (1 KB reserved): one block in 164 KB
    ((7, 5), 256, 32, 0, 1.0),  # sm_75 holds 32 warps
    ((7, 5), 1024, 64, 0, 1.0),  # one block of 32 warps x 64 registers = 64K exactly
    ((9, 0), 32, 16, 0, 0.5),  # 32 blocks of one warp at most
])
def test_occupancy_follows_the_occupancy_calculator(cc, threads, registers, shared, expected):
    assert occupancy(cc, threads, registers, shared) == expected
