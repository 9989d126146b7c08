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
            entry("tutorial run (2000 steps, B=100, evals included)", "cpu", 2.5, "backend_name"),
            dict(entry("step/floor interleaved B=100 H1=128 H2=32", "cpu", 700e-6, "backend_name"),
                 extra_info={"step_median": 400e-6, "floor_median": 320e-6, "ratio": 1.234}),
        ],
    }


def test_report_writes_tables_and_a_chart(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(REPOSITORY)
    from bench import report

    markdown = report.write_report(fake_results(), str(tmp_path), "python -m bench.report")
    text = open(markdown).read()
    assert "| B=100 H1=128 H2=32 | 500.0 us | 360.0 us | - | 300.0 us | - | 1.67x | 1.20x | - | - |" in text
    assert "| bias_relu B=100 H=128 | 20.0 us | 4.0 us | - | 5.00x | - |" in text
    assert "| cpu | 2.50 s |" in text
    assert "| B=100 H1=128 H2=32 | cpu | 400.0 us | 320.0 us | 1.23x |" in text
    assert "Test CPU, 2 cores" in text and "numpy " in text
    stem = os.path.splitext(markdown)[0]
    assert open(stem + ".png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.load(open(stem + ".json"))
    assert saved["datetime"] == "2026-11-25T00:00:00+00:00"
    assert [benchmark["stats"] for benchmark in saved["benchmarks"]][:2] == [{"median": 500e-6}, {"median": 360e-6}]


def test_chart_ratios_are_the_interleaved_ones_when_there_are_any(monkeypatch):
    monkeypatch.syspath_prepend(REPOSITORY)
    from bench import report

    results = fake_results()
    assert report.floor_ratios(results) == ({"B=100 H1=128 H2=32": {"cpu": 1.234}}, "median of per-round ratios")
    results["benchmarks"] = [benchmark for benchmark in results["benchmarks"] if "extra_info" not in benchmark]
    ratios, what = report.floor_ratios(results)
    assert what == "ratio of medians" and list(ratios) == ["B=100 H1=128 H2=32"]
    assert ratios["B=100 H1=128 H2=32"] == pytest.approx({"numpy": 500 / 300, "cpu": 360 / 300})
