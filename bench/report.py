"""Run the benchmarks and write a report: a Markdown table, a PNG chart and the raw JSON.

    python -m bench.report                  # the whole suite (about 10 minutes on 2 CPU cores)
    python -m bench.report -k step          # only the training-step groups (pytest -k syntax)

Output goes to bench/results/<date>-<device>.{md,png,json}. Every number is a median over many
rounds from ONE run, and ratios compare variants timed in that same run.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BACKEND_ORDER = ("numpy", "cpu", "cuda")
# step variant -> the GEMM floor it is measured against
FLOOR_OF = {"numpy": "numpy-gemm-floor", "cpu": "numpy-gemm-floor", "cuda": "cuda-gemm-floor"}


def versions():
    found = {"python": platform.python_version()}
    for package in ("numpy", "numba", "numba-cuda", "cupy-cuda12x", "cupy-cuda13x", "pytest-benchmark"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def device_name():
    try:
        import cupy

        if cupy.is_available():
            return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # noqa: BLE001 - no GPU stack: describe the CPU
        pass
    return "cpu"


def variant_of(benchmark):
    """The backend (or floor/launch variant) a benchmark measured, from its params."""
    params = benchmark["params"] or {}
    return params.get("variant") or params.get("backend_name")


def medians(data):
    """{group: {variant: median seconds}}, groups in first-seen order."""
    table = {}
    for benchmark in data["benchmarks"]:
        table.setdefault(benchmark["group"], {})[variant_of(benchmark)] = benchmark["stats"]["median"]
    return table


def format_time(seconds):
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def ratio(numerator, denominator):
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def step_rows(table):
    rows = []
    for group, times in table.items():
        if not group.startswith("step "):
            continue
        rows.append([group[len("step "):]] + [format_time(times.get(name)) for name in
                                              ("numpy", "cpu", "cuda", "numpy-gemm-floor", "cuda-gemm-floor")] + [
            *(ratio(times.get(name), times.get(FLOOR_OF[name])) for name in BACKEND_ORDER),
            f"{times['cuda-launch-only'] / times['cuda']:.0%}" if times.get("cuda-launch-only") and times.get("cuda")
            else "-"])
    return rows


def interleaved(data):
    """(shape, backend, extra_info) of each interleaved step/floor benchmark."""
    for benchmark in data["benchmarks"]:
        info = benchmark.get("extra_info") or {}
        if "ratio" in info:
            yield benchmark["group"].split("interleaved ", 1)[1], variant_of(benchmark), info


def interleaved_rows(data):
    return [[shape, backend, format_time(info["step_median"]), format_time(info["floor_median"]),
             f"{info['ratio']:.2f}x"] for shape, backend, info in interleaved(data)]


def floor_ratios(data):
    """{shape: {backend: step / GEMM floor}} and what they are: the interleaved ratios, else the separate groups'."""
    ratios = {}
    for shape, backend, info in interleaved(data):
        ratios.setdefault(shape, {})[backend] = info["ratio"]
    if ratios:
        return ratios, "median of per-round ratios"
    for group, times in medians(data).items():
        if group.startswith("step "):
            ratios[group[len("step "):]] = {name: times[name] / times[floor] for name, floor in FLOOR_OF.items()
                                            if times.get(name) and times.get(floor)}
    return ratios, "ratio of medians"


def op_rows(table):
    rows = []
    for group, times in table.items():
        if group.startswith(("step", "tutorial")):
            continue
        numpy_time = times.get("numpy")
        rows.append([group] + [format_time(times.get(name)) for name in BACKEND_ORDER]
                    + [ratio(numpy_time, times.get("cpu")), ratio(numpy_time, times.get("cuda"))])
    return rows


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(data, path, chart_name, command):
    table = medians(data)
    machine = data["machine_info"]
    cpu = machine.get("cpu", {})
    lines = [
        f"# mnist_gpu benchmark report, {data['datetime'][:10]}",
        "",
        f"- Date: {data['datetime']}",
        f"- Device: {device_name()}; CPU: {cpu.get('brand_raw', machine.get('processor', '?'))}, "
        f"{cpu.get('count', '?')} cores; {machine['system']} {machine['release']}",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in versions().items()),
        f"- Command: `{command}`",
        "- Medians of pytest-benchmark rounds (warm-up and JIT outside the timing; CUDA variants "
        "synchronise inside it). Ratios compare variants timed in this same run.",
        "",
        "## Training step vs its GEMM floor",
        "",
        "The floor is the step's 8 GEMMs alone on the same backend and shapes. "
        "cpu/floor is the CPU speed target (at most 1.25x at B=100 and B=1000). "
        "'launch share' is the host time to issue a CUDA step over the whole step's time.",
        "",
        markdown_table(["shape", "numpy", "cpu", "cuda", "numpy GEMMs", "cuda GEMMs", "numpy/floor", "cpu/floor",
                        "cuda/floor", "launch share"], step_rows(table)),
        "",
        "Interleaved: each round times one step and then the floor, so both see the same machine; the "
        "ratio is the median of the per-round ratios (the most stable figure on a shared machine).",
        "",
        markdown_table(["shape", "backend", "step", "GEMM floor", "step / floor"], interleaved_rows(data)),
        "",
        "## Per op",
        "",
        markdown_table(["op and shape", "numpy", "cpu", "cuda", "cpu speed-up", "cuda speed-up"], op_rows(table)),
        "",
    ]
    tutorial = {group: times for group, times in table.items() if group.startswith("tutorial")}
    for group, times in tutorial.items():
        lines += [f"## {group}", "", markdown_table(["backend", "median"],
                                                    [[name, format_time(times.get(name))] for name in BACKEND_ORDER
                                                     if name in times]), ""]
    lines += [f"![step times]({chart_name})", ""]
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines))


def grouped_bars(axis, series, labels):
    """One bar per (label, series name), side by side; series without any value are left out."""
    series = {name: values for name, values in series.items() if any(values)}
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        axis.bar([position + index * width for position in range(len(labels))], values, width, label=name)
    axis.set_xticks([position + 0.4 - width / 2 for position in range(len(labels))],
                    [label.replace(" H1", "\nH1") for label in labels], fontsize=8)
    axis.legend(fontsize=8)


def write_chart(data, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    steps = {group[len("step "):]: times for group, times in medians(data).items() if group.startswith("step ")}
    figure, (times_axis, ratio_axis) = pyplot.subplots(1, 2, figsize=(13, 4.5))
    names = ["numpy", "cpu", "cuda", "numpy-gemm-floor", "cuda-gemm-floor"]
    grouped_bars(times_axis, {name: [times.get(name, 0) * 1e3 for times in steps.values()] for name in names},
                 list(steps))
    times_axis.set_yscale("log")
    smallest = min((time for times in steps.values() for time in times.values() if time), default=1e-3)
    times_axis.set_ylim(bottom=smallest * 1e3 / 3)  # bars start well below the shortest one
    times_axis.set_ylabel("ms per training step (median)")
    ratios, what = floor_ratios(data)
    ratio_axis.axhline(1.25, color="black", linestyle="--", linewidth=1, label="1.25x target")
    grouped_bars(ratio_axis, {f"{name}/floor": [values.get(name, 0) for values in ratios.values()]
                              for name in BACKEND_ORDER}, list(ratios))
    ratio_axis.set_ylabel(f"step time / GEMM floor ({what})")
    figure.suptitle(f"mnist_gpu training step, {data['datetime'][:10]}, {device_name()}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def write_report(data, directory, command):
    """Write <date>-<device>.{json,md,png} into directory; returns the Markdown path."""
    os.makedirs(directory, exist_ok=True)
    stem = f"{data['datetime'][:10]}-{re.sub(r'[^A-Za-z0-9]+', '-', device_name()).strip('-').lower()}"
    base = os.path.join(directory, stem)
    # Every round's own time stays out: tens of MB per report, and the tables need only the summaries.
    summaries = dict(data, benchmarks=[dict(benchmark, stats={key: value for key, value in benchmark["stats"].items()
                                                              if key != "data"})
                                       for benchmark in data["benchmarks"]])
    with open(base + ".json", "w", encoding="utf-8") as stream:
        json.dump(summaries, stream, indent=1)
    write_chart(data, base + ".png")
    write_markdown(data, base + ".md", stem + ".png", command)
    return base + ".md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default=None, help="pytest -k expression selecting benchmarks")
    parser.add_argument("--out", default=RESULTS, help="folder for the report (default bench/results)")
    options = parser.parse_args(argv)
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    json_path = os.path.join(options.out, ".last-run.json")
    os.makedirs(options.out, exist_ok=True)
    command = [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", f"--benchmark-json={json_path}"]
    if options.k:
        command += ["-k", options.k]
    subprocess.run(command, cwd=repository, check=True)
    with open(json_path, encoding="utf-8") as stream:
        data = json.load(stream)
    os.remove(json_path)
    shown = "python -m bench.report" + (f" -k '{options.k}'" if options.k else "")
    print(write_report(data, options.out, shown))


if __name__ == "__main__":
    main()
