"""The benchmark suite still runs (each benchmark once), and the report turns results into tables."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPOSITORY


@pytest.mark.slow
def test_bench_suite_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", "--benchmark-disable"],
        cwd=REPOSITORY, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


def fake_results():
    def entry(group, variant, median, key="variant"):
        return {"group": group, "params": {key: variant}, "stats": {"median": median, "data": [median] * 3}}

    return {
        "datetime": "2026-11-25T00:00:00+00:00",
        "machine_info": {"system": "Linux", "release": "6", "cpu": {"brand_raw": "Test CPU", "count": 2}},
        "benchmarks": [
            entry("step B=100 H1=128 H2=32", "numpy", 500e-6),
            entry("step B=100 H1=128 H2=32", "cpu", 360e-6),
            entry("step B=100 H1=128 H2=32", "numpy-gemm-floor", 300e-6),
            entry("bias_relu B=100 H=128", "numpy", 20e-6, "backend_name"),
            entry("bias_relu B=100 H=128", "cpu", 4e-6, "backend_name"),
            dict(entry("tutorial run (2000 steps, B=100, evals included)", "cpu", 2.5, "backend_name"),
                 fullname="bench/bench_run.py::test_tutorial_run[cpu]"),
            dict(entry("step/floor interleaved B=100 H1=128 H2=32", "cpu", 700e-6, "backend_name"),
                 extra_info={"step_median": 400e-6, "floor_median": 320e-6, "ratio": 1.234}),
        ],
    }


def fake_gpu_results():
    """What a GPU session's bench_step adds: the CUDA ways of taking a step, and their GPU time."""
    def entry(group, variant, median, **extra_info):
        return {"group": group, "params": {"variant": variant, "batch": 100}, "stats": {"median": median},
                "extra_info": extra_info}

    results = fake_results()
    results["benchmarks"] += [
        entry("step B=100 H1=128 H2=32", "cuda", 1.4e-3),
        entry("step B=100 H1=128 H2=32", "cuda-eager", 300e-6, ran="eagerly, launches prepared"),
        entry("step B=100 H1=128 H2=32", "cuda-eager-launch-only", 250e-6, ran="eagerly, launches prepared"),
        entry("step B=100 H1=128 H2=32", "cuda-graph", 60e-6, ran="as one CUDA graph (launches prepared)"),
        entry("step B=100 H1=128 H2=32", "cuda-graph-launch-only", 12e-6),
        entry("GPU time per step B=100 (100 steps queued)", "cuda-graph", 5e-3, gpu_seconds_per_step_median=45e-6),
    ]
    return results


def test_report_shows_each_cuda_way_of_taking_a_step(tmp_path, report):
    text = open(report.write_report(fake_gpu_results(), str(tmp_path), "python -m bench.report")).read()
    assert "| B=100 H1=128 H2=32 | cuda | 1.400 ms | - | - | op by op |" in text
    assert "| B=100 H1=128 H2=32 | cuda-eager | 300.0 us | 250.0 us | - | eagerly, launches prepared |" in text
    assert "| B=100 H1=128 H2=32 | cuda-graph | 60.0 us | 12.0 us | 45.0 us | as one CUDA graph (launches prepared) |" \
        in text
    assert "| GPU time per step" not in text  # not mistaken for an op


@pytest.fixture
def report(monkeypatch):
    monkeypatch.syspath_prepend(REPOSITORY)  # bench/ is not installed: it lives in the checkout
    from bench import report

    return report


def test_report_writes_tables_and_a_chart(tmp_path, report):
    markdown = report.write_report(fake_results(), str(tmp_path), "python -m bench.report")
    assert os.path.basename(markdown) == "2026-11-25T000000-cpu.md"
    text = open(markdown).read()
    assert "| B=100 H1=128 H2=32 | 500.0 us | 360.0 us | - | 300.0 us | - | - |" in text
    assert "| bias_relu B=100 H=128 | 20.0 us | 4.0 us | - | 5.00x | - |" in text
    assert "| tutorial run (2000 steps, B=100, evals included) | cpu | 2.50 s |" in text
    assert "| B=100 H1=128 H2=32 | cpu | 400.0 us | 320.0 us | 1.23x |" in text
    assert "the time of its 8 matrix products (GEMMs) alone" in text
    assert "Test CPU, 2 cores" in text and "numpy " in text
    stem = os.path.splitext(markdown)[0]
    assert open(stem + ".png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.load(open(stem + ".json"))
    assert saved["datetime"] == "2026-11-25T00:00:00+00:00"
    assert [benchmark["stats"] for benchmark in saved["benchmarks"]][:2] == [{"median": 500e-6}, {"median": 360e-6}]


def test_a_report_never_replaces_an_earlier_one(tmp_path, report):
    first = report.write_report(fake_results(), str(tmp_path), "python -m bench.report")
    before = open(first, "rb").read()
    with pytest.raises(FileExistsError, match="exists already"):
        report.write_report(fake_results(), str(tmp_path), "python -m bench.report")
    assert open(first, "rb").read() == before
    later = dict(fake_results(), datetime="2026-11-25T00:00:01+00:00")
    assert report.write_report(later, str(tmp_path), "python -m bench.report") != first


def test_a_subset_leaves_out_the_tables_it_did_not_run(tmp_path, report):
    only_ops = dict(fake_results(), benchmarks=[benchmark for benchmark in fake_results()["benchmarks"]
                                                if benchmark["group"].startswith("bias_relu")])
    text = open(report.write_report(only_ops, str(tmp_path), "python -m bench.report -k ops")).read()
    assert "## Per op" in text and "| bias_relu B=100 H=128 |" in text
    assert "GEMM floor" not in text and "tutorial" not in text and ".png" not in text
    assert os.listdir(tmp_path) == [name for name in os.listdir(tmp_path) if not name.endswith(".png")]


def test_chart_and_tables_show_the_same_step_floor_figures(report):
    results = fake_results()
    shapes, how = report.step_and_floor(results)
    # The interleaved medians and ratio: the figures the interleaved table prints.
    assert shapes == {"B=100 H1=128 H2=32": {"cpu": (400e-6, 320e-6, 1.234)}} and how == "median of per-round ratios"
    results["benchmarks"] = [benchmark for benchmark in results["benchmarks"] if "extra_info" not in benchmark]
    shapes, how = report.step_and_floor(results)
    assert how == "ratio of medians" and list(shapes) == ["B=100 H1=128 H2=32"]
    by_backend = shapes["B=100 H1=128 H2=32"]
    assert sorted(by_backend) == ["cpu", "numpy"]
    assert by_backend["numpy"] == pytest.approx((500e-6, 300e-6, 500 / 300))
    assert by_backend["cpu"] == pytest.approx((360e-6, 300e-6, 360 / 300))


def test_the_step_program_benchmark_prints_and_keeps_what_the_program_notes(capsys, monkeypatch):
    """A figure labelled "graph" that silently timed the eager step would mislead: its notes are printed and kept."""
    monkeypatch.syspath_prepend(REPOSITORY)
    from bench.workloads import ProgramStep
    from mnist_gpu.backends.numpy_backend import NumpyBackend

    class Program:  # a step program that cannot use a CUDA graph, as the real one says then
        def __init__(self, note):
            note("the training step runs eagerly, not as a CUDA graph: CUDARuntimeError: capture failed")

    class Backend(NumpyBackend):
        def step_program(self, model, split, learning_rate, last_step, graph, note):
            return Program(note)

    workload = ProgramStep(Backend(), 100, graph="on")
    assert workload.notes == ["the training step runs eagerly, not as a CUDA graph: CUDARuntimeError: capture failed"]
    assert "step program: the training step runs eagerly, not as a CUDA graph" in capsys.readouterr().out


def test_a_failing_benchmark_loses_only_itself(tmp_path):
    """On a GPU one benchmark may fail (a graph that cannot be captured): the others' report is still written."""
    benchmarks = tmp_path / "test_two_benchmarks.py"
    benchmarks.write_text("import pytest\n\n\n@pytest.mark.benchmark(group='op sum')\n"
                          "def test_runs(benchmark):\n    benchmark(sum, range(10))\n\n\n"
                          "@pytest.mark.benchmark(group='op sum')\n"
                          "def test_fails(benchmark):\n    benchmark(lambda: 1 / 0)\n")
    out = tmp_path / "out"
    finished = subprocess.run([sys.executable, "-m", "bench.report", "--out", str(out), str(benchmarks),
                               "--benchmark-max-time=0.01"], cwd=REPOSITORY, capture_output=True, text=True)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr, finished.stderr
    reports = sorted(path.name for path in out.iterdir())
    assert [name.rsplit(".", 1)[1] for name in reports] == ["json", "md"], reports  # no leftover .bench-run json
    saved = json.loads((out / reports[0]).read_text())
    assert [benchmark["name"] for benchmark in saved["benchmarks"]] == ["test_runs"]


def test_the_report_records_the_figures_the_docs_quote(tmp_path, report):
    """bench/results/figures.json: each figure with its unit, what it is, the command, date, machine and commit."""
    from bench import figures

    results = fake_results()
    results["benchmarks"] += [
        {"group": report.WHOLE_COMMAND_GROUP, "params": {"variant": "cpu"}, "stats": {"median": 1.1764}},
        {"group": "population step, cpu (B=100): divide by K", "params": {"backend_name": "cpu", "members": 1},
         "stats": {"median": 400e-6}, "extra_info": {"members": 1}},
        {"group": "population step, cpu (B=100): divide by K", "params": {"backend_name": "cpu", "members": 16},
         "stats": {"median": 4e-3}, "extra_info": {"members": 16}},
    ]
    measured = report.figures_of(results)
    assert measured["run_cpu"][:2] == (1.18, "s")
    assert measured["step_cpu_B100"][:2] == (400.0, "µs") and measured["step_over_floor_cpu_B100"][:2] == (1.23, "x")
    assert measured["member_share_cpu_K16"][:2] == (0.62, "x")
    path = tmp_path / "figures.json"
    path.write_text(json.dumps({"kept": {"value": 1, "unit": "s"}}))
    figures.record(measured, "python -m bench.report", "Test CPU", str(path), date="2026-12-02")
    saved = json.loads(path.read_text())
    assert saved["kept"] == {"value": 1, "unit": "s"}  # a figure this run did not measure stays
    assert saved["run_cpu"]["date"] == "2026-12-02" and saved["run_cpu"]["machine"] == "Test CPU"
    assert figures.shown(saved["run_cpu"]) == "1.18 s" and figures.shown(saved["member_share_cpu_K16"]) == "0.62x"
