"""The figures the docs quote, in one results file written by the commands that measure them.

bench/results/figures.json holds {name: {"value", "unit", "what", "command", "date", "machine",
"commit"}}. A measuring command (python -m bench.report, python -m tools.measure_run_cost) records
the figures it measured, replacing those names only. The docs quote a figure as
`<!-- figure: NAME -->1.18 s`, and performance.md lists every figure with its date, machine and
command (a table that `python tests/test_docs.py --update figures` regenerates);
tests/test_docs.py fails when a quoted figure differs from this file.
"""
import datetime
import json
import math
import os
import platform
import subprocess

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(REPOSITORY, "bench", "results", "figures.json")


def rounded(value, digits=3):
    """`value` to `digits` significant digits."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def seconds(value):
    """(value, unit) of a duration in seconds, in s, ms or µs, to 3 significant digits."""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale or unit == "µs":
            return rounded(value / scale), unit
    raise AssertionError("unreachable")


def ratio(value):
    """(value, "x") of a ratio, to 2 decimals."""
    return round(value, 2), "x"


def shown(figure):
    """How the docs write a figure: "1.18 s", "424 µs", "1.14x"."""
    value = figure["value"]
    number = f"{value:.2f}" if figure["unit"] == "x" else f"{value:g}"
    return f"{number}x" if figure["unit"] == "x" else f"{number} {figure['unit']}"


def load_average():
    """The 1-minute load average ("?" where the OS has none): how busy a shared machine was."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def machine(device=None):
    """The machine in a few words: CPU model and cores, the GPU (or none), and how busy it was at the start
    (a measuring command adds the load at its end)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, {device or 'no GPU'}; load average {load_average()} at the start"


def commit():
    """The checkout's commit, with "+changes" when tracked files other than Markdown differ from it ("unknown" outside
    git)."""
    def git(*arguments):
        return subprocess.run(["git", "-C", REPOSITORY, *arguments], capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)*.md").stdout.strip()
    return head.stdout.strip() + ("+changes" if changed else "")


def load(path=FIGURES):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def record(measured, command, machine_text, path=FIGURES, date=None):
    """Write the figures `measured` ({name: (value, unit, what)}) into `path`, keeping the other names."""
    if not measured:
        return
    figures = load(path)
    date = date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    for name, (value, unit, what) in measured.items():
        figures[name] = {"value": value, "unit": unit, "what": what, "command": command, "date": date,
                         "machine": machine_text, "commit": commit()}
    temporary = path + ".part"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(dict(sorted(figures.items())), stream, indent=1, ensure_ascii=False)
        stream.write("\n")
    os.replace(temporary, path)
