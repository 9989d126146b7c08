"""Run the benchmarks and write a report: a Markdown table, a PNG chart and the raw JSON.

    python -m bench.report                  # the whole suite (about 10 minutes on 2 CPU cores)
    python -m bench.report -k step          # only the training-step groups (pytest -k syntax)
    python -m bench.report TESTS... [PYTEST OPTIONS]   # given benchmarks, e.g. bench/bench_step.py::test_x[...]

Output goes to bench/results/<date>T<time>-<device>.{md,png,json} (or --out FOLDER): a report
never replaces an earlier one. The figures the docs quote are recorded in FOLDER/figures.json
(bench/figures.py), replacing only those this run measured. Every number is a median over many rounds from ONE run, and
ratios compare variants timed in that same run.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

from bench import figures

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
    """The backend (or floor/launch variant, or warm/cold cache) a benchmark measured, from its params."""
    params = benchmark["params"] or {}
    return params.get("variant") or params.get("backend_name") or params.get("cache") or params.get("way")


def run_groups(data):
    """The groups of bench_run.py: the whole run and its pieces."""
    return {benchmark["group"] for benchmark in data["benchmarks"] if "bench_run.py" in benchmark.get("fullname", "")}


def run_rows(data):
    table = medians(data)
    return [[group, variant, format_time(seconds)] for group, times in table.items() if group in run_groups(data)
            for variant, seconds in times.items()]


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
    """Training step and GEMM-floor medians from their separate groups (no ratios: see the interleaved table)."""
    rows = []
    for group, times in table.items():
        if not group.startswith("step "):
            continue
        rows.append([group[len("step "):]] + [format_time(times.get(name)) for name in
                                              ("numpy", "cpu", "cuda", "numpy-gemm-floor", "cuda-gemm-floor")] + [
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


def step_and_floor(data):
    """{shape: {backend: (step seconds, floor seconds, step / floor)}} and how the ratio was taken.

    From the interleaved benchmarks where there are any (the figures docs/performance.md quotes: both
    medians and the median of the per-round ratios, all from the same rounds); else from the
    separate step and floor groups (the ratio of their medians).
    """
    found = {}
    for shape, backend, info in interleaved(data):
        found.setdefault(shape, {})[backend] = (info["step_median"], info["floor_median"], info["ratio"])
    if found:
        return found, "median of per-round ratios"
    for group, times in medians(data).items():
        if group.startswith("step "):
            found[group[len("step "):]] = {name: (times[name], times[floor], times[name] / times[floor])
                                           for name, floor in FLOOR_OF.items() if times.get(name) and times.get(floor)}
    return found, "ratio of medians"


GPU_TIME_KEY = "gpu_seconds_per_step_median"  # bench_step.test_gpu_time_per_step's extra_info
CUDA_STEP_WAYS = ("cuda", "cuda-eager", "cuda-graph")  # op by op; the step program eager; as a CUDA graph


def gpu_time_groups(data):
    return {benchmark["group"] for benchmark in data["benchmarks"]
            if GPU_TIME_KEY in (benchmark.get("extra_info") or {})}


def cuda_step_rows(data):
    """Per step shape, each CUDA way of taking a step: the finished step, the host's time to issue it, GPU time,
    and how it ran (the step program says: eager or one CUDA graph, launches prepared or not)."""
    gpu_times, ran = {}, {}
    for benchmark in data["benchmarks"]:
        info = benchmark.get("extra_info") or {}
        if GPU_TIME_KEY in info:
            gpu_times[(benchmark["params"]["batch"], variant_of(benchmark))] = info[GPU_TIME_KEY]
        if "ran" in info:
            ran[(benchmark["group"], variant_of(benchmark))] = info["ran"]
    rows = []
    for group, times in medians(data).items():
        if not group.startswith("step B="):
            continue
        batch = int(group.split()[1][len("B="):])
        timed_on_gpu = group.endswith("H1=128 H2=32")  # the shapes test_gpu_time_per_step runs
        for way in (way for way in CUDA_STEP_WAYS if times.get(way) is not None):
            gpu_time = gpu_times.get((batch, way)) if timed_on_gpu else None
            how = "op by op" if way == "cuda" else ran.get((group, way), "-")
            rows.append([group[len("step "):], way, format_time(times[way]),
                         format_time(times.get(f"{way}-launch-only")), format_time(gpu_time), how])
    return rows


def population_groups(data):
    return {benchmark["group"] for benchmark in data["benchmarks"] if "bench_population.py" in
            benchmark.get("fullname", "")}


def population_rows(data):
    """Per population step group and K: the step, a member's share of it (/ K), and that share over K = 1's step."""
    found = {}
    for benchmark in data["benchmarks"]:
        members = benchmark.get("extra_info", {}).get("members")
        if members is not None:
            found.setdefault(benchmark["group"], {})[members] = benchmark["stats"]["median"]
    rows = []
    for group, by_members in found.items():
        solo = by_members.get(1)
        for members, seconds in sorted(by_members.items()):
            rows.append([group.split(" (")[0].replace("population step, ", ""), str(members), format_time(seconds),
                         format_time(seconds / members), ratio(seconds / members, solo) if solo else "-"])
    sweeps = [[group, variant, format_time(seconds)] for group, times in medians(data).items()
              if group in population_groups(data) and group not in found and group not in stopped_groups(data)
              for variant, seconds in times.items()]
    return rows, sweeps


def stopped_groups(data):
    """bench_population.py's steps with stopped members: {group: backend}."""
    return {benchmark["group"]: benchmark["extra_info"]["backend"] for benchmark in data["benchmarks"]
            if "stopped" in (benchmark.get("extra_info") or {})}


def stopped_rows(data):
    """Per backend: a step whose stopped members are kept in it, the step of the others alone (repacked), the
    ratio."""
    groups = stopped_groups(data)
    return [[group, format_time(times.get("kept")), format_time(times.get("repacked")),
             ratio(times.get("repacked"), times.get("kept"))] for group, times in medians(data).items()
            if group in groups]


def op_rows(table, skipped=()):
    rows = []
    for group, times in table.items():
        if group.startswith("step") or group in skipped:
            continue
        numpy_time = times.get("numpy")
        rows.append([group] + [format_time(times.get(name)) for name in BACKEND_ORDER]
                    + [ratio(numpy_time, times.get("cpu")), ratio(numpy_time, times.get("cuda"))])
    return rows


def baseline_rows(data):
    return [[variant_of(benchmark), info["baseline"] + baseline_threads(info), format_time(info["baseline_median"]),
             format_time(info["this_median"]), f"{info['over_baseline']:.2f}x"]
            for benchmark in data["benchmarks"] if "over_baseline" in (info := benchmark.get("extra_info") or {})]


def baseline_threads(info):
    """How the baseline ran, where it was not as it runs by default."""
    threads = info.get("baseline_blas_threads")
    return f" on {threads} OpenBLAS thread{'s' if threads > 1 else ''}" if threads else ""


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


FLOOR_IN_WORDS = ("The GEMM floor of a training step is the time of its 8 matrix products (GEMMs) alone, on the same "
                  "backend and shapes: what the step would cost if everything else (gather, bias, ReLU, softmax, "
                  "SGD) were free.")


def section(title, text, header, rows):
    """A Markdown section, or nothing when it has no rows (a -k subset that did not run it)."""
    return [f"## {title}", "", text, "", markdown_table(header, rows), ""] if rows else []


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
    ]
    lines += section(
        "Training step vs its GEMM floor, interleaved",
        FLOOR_IN_WORDS + " Each round times one step and then its floor, so both see the same machine; the ratio "
        "is the median of the per-round ratios (the most stable figure on a shared machine). The CPU target: "
        "cpu at most 1.25x at B=100 and B=1000.",
        ["shape", "backend", "step", "GEMM floor", "step / floor"], interleaved_rows(data))
    lines += section(
        "Training step and GEMM floor, each timed on its own",
        "Separate groups, run minutes apart: compare within a row with care, and quote the interleaved ratios "
        "above. 'launch share' is the host time to issue a CUDA step over the whole step's time.",
        ["shape", "numpy", "cpu", "cuda", "numpy GEMMs", "cuda GEMMs", "launch share"], step_rows(table))
    lines += section(
        "The CUDA step: op by op, the eager step program, the CUDA graph",
        "'step': a finished step (synchronised); 'host issue': the host's time to issue one (launch-only); 'GPU "
        "time': CUDA events around 100 queued steps, per step (H1=128 H2=32 only; where the host issues slower than "
        "the GPU runs, it is the host's pace); 'ran': how the step program ran, as it said.",
        ["shape", "way", "step", "host issue", "GPU time", "ran"], cuda_step_rows(data))
    lines += section("Per op", "Each op alone, every backend in one group.",
                     ["op and shape", "numpy", "cpu", "cuda", "cpu speed-up", "cuda speed-up"],
                     op_rows(table, run_groups(data) | gpu_time_groups(data) | population_groups(data)))
    steps, sweeps = population_rows(data)
    lines += section("Populations: K members in one step",
                     "bench/bench_population.py: a step of K members (B=100, 784-128-32-10) finished, each member's "
                     "share (the step / K), and that share over the step of one member (K = 1) timed in the same "
                     "group. The targets: cpu at most 0.8x at K = 16; cuda at K = 1024 at most 3 ms a step as a graph.",
                     ["backend", "K", "step", "per member", "per member / K=1 step"], steps)
    lines += section("Stopped members: kept in the step, or repacked out of it",
                     "bench/bench_population.py: the step of K members of which some have stopped (diverged or "
                     "pruned), kept in the step program as they are until an evaluation, and the step of the others "
                     "alone, which is what the trainer's repack at that evaluation leaves.",
                     ["what", "kept", "repacked", "repacked / kept"], stopped_rows(data))
    lines += section("A sweep against its solo runs",
                     "The 16 tutorial runs (--seed 1-16, cpu) as one `mnist-gpu sweep` and as 16 `mnist-gpu` commands "
                     "one after the other, whole commands. The target: the sweep at most 0.5x. And a 64-trial Optuna "
                     "study (docs/sweeps.md; small layers, one round) as one worker against its 64 solo commands.",
                     ["what", "way", "median"], sweeps)
    lines += section("The whole command against a baseline checkout, interleaved",
                     "bench/bench_run.py with MNIST_GPU_BASELINE set to an older checkout: `mnist-gpu --seed 1` "
                     "(a fresh process) from that checkout and from this one, alternated round by round; the ratio is "
                     "the median of the per-round ratios.",
                     ["backend", "baseline", "baseline median", "this median", "this / baseline"], baseline_rows(data))
    lines += section("The whole run and its pieces", "bench/bench_run.py: the tutorial's run in this process and as "
                     "a fresh `mnist-gpu` process, start-up, data loading, one evaluation, one checkpoint.",
                     ["what", "variant", "median"], run_rows(data))
    if step_and_floor(data)[0]:
        lines += [f"![step times]({chart_name})", ""]
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines))


def grouped_bars(axis, series, labels, value_format, rotation=90):
    """One bar per (label, series name), side by side, each with its value; series without values are left out."""
    series = {name: values for name, values in series.items() if any(values)}
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        bars = axis.bar([position + index * width for position in range(len(labels))], values, width, label=name)
        axis.bar_label(bars, labels=[value_format(value) if value else "" for value in values], fontsize=7,
                       rotation=rotation, padding=2)
    axis.set_xticks([position + 0.4 - width / 2 for position in range(len(labels))],
                    [label.replace(" H1", "\nH1") for label in labels], fontsize=8)
    axis.legend(fontsize=7)


def write_chart(data, path):
    """Left: step and floor times; right: their ratio. Both panels show the same measurements."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shapes, how = step_and_floor(data)
    figure, (times_axis, ratio_axis) = pyplot.subplots(1, 2, figsize=(14, 5))
    backends = [name for name in BACKEND_ORDER if any(name in by_backend for by_backend in shapes.values())]
    series = {}
    for name in backends:
        series[f"{name} step"] = [by_backend.get(name, (0, 0, 0))[0] * 1e3 for by_backend in shapes.values()]
        series[f"{name} GEMM floor"] = [by_backend.get(name, (0, 0, 0))[1] * 1e3 for by_backend in shapes.values()]
    grouped_bars(times_axis, series, list(shapes), lambda value: f"{value:.3g}")
    times_axis.set_yscale("log")
    smallest = min((value for values in series.values() for value in values if value), default=1e-3)
    times_axis.set_ylim(bottom=smallest / 3, top=max(max(values) for values in series.values()) * 8)
    times_axis.set_ylabel("ms per training step (median)")
    times_axis.set_title("a step, and its 8 matrix products alone (the GEMM floor)", fontsize=9)
    ratio_axis.axhline(1.25, color="black", linestyle="--", linewidth=1, label="1.25x: the CPU target")
    grouped_bars(ratio_axis, {f"{name} step / floor": [by_backend.get(name, (0, 0, 0))[2]
                                                        for by_backend in shapes.values()] for name in backends},
                 list(shapes), lambda value: f"{value:.2f}x", rotation=0)
    ratio_axis.set_ylim(0, max(ratio for by_backend in shapes.values() for *_, ratio in by_backend.values()) * 1.15)
    ratio_axis.set_ylabel("step time / GEMM floor")
    ratio_axis.set_title(f"how far a step is from its matrix products alone ({how})", fontsize=9)
    figure.suptitle(f"mnist_gpu training step, {data['datetime'][:10]}, {device_name()}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def report_stem(data):
    """<date>T<time>-<device>: a new run never takes the name of an earlier report."""
    when = data["datetime"][:19].replace(":", "")
    return f"{when}-{re.sub(r'[^A-Za-z0-9]+', '-', device_name()).strip('-').lower()}"


def write_report(data, directory, command):
    """Write <date>T<time>-<device>.{json,md,png} into directory; returns the Markdown path. Never overwrites."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, report_stem(data))
    for suffix in (".json", ".md", ".png"):
        if os.path.exists(base + suffix):
            raise FileExistsError(f"{base + suffix} exists already; pass another --out folder")
    # Every round's own time stays out: tens of MB per report, and the tables need only the summaries.
    summaries = dict(data, benchmarks=[dict(benchmark, stats={key: value for key, value in benchmark["stats"].items()
                                                              if key != "data"})
                                       for benchmark in data["benchmarks"]])
    with open(base + ".json", "w", encoding="utf-8") as stream:
        json.dump(summaries, stream, indent=1)
    if step_and_floor(data)[0]:
        write_chart(data, base + ".png")
    write_markdown(data, base + ".md", os.path.basename(base) + ".png", command)
    return base + ".md"


WHOLE_COMMAND_GROUP = "whole command: mnist-gpu --seed 1 (a fresh process)"  # bench_run.py's groups
STARTUP_GROUP = "start-up: mnist-gpu --max_steps 0 (a fresh process, the data cache warm)"
STARTUP_FLOOR_GROUP = "start-up over the libraries' floor, interleaved (a fresh process each)"
WAIT_GROUP = "{what} (cpu, a fresh process each), by how OpenMP's threads wait"  # bench_run.test_commands_at_once's
AT_ONCE = ("one run", "two runs at once", "a sweep of 16")
QUOTED_STEP_SHAPES = ("B=100 H1=128 H2=32", "B=1000 H1=128 H2=32")  # the shapes of the CPU target
QUOTED_MEMBERS = (16, 64)


def figures_of(data):
    """{name: (value, unit, what)}: the figures of this run that the docs quote (bench/figures.py)."""
    found = {}
    table = medians(data)
    for backend in BACKEND_ORDER:
        if table.get(WHOLE_COMMAND_GROUP, {}).get(backend):
            found[f"run_{backend}"] = (*figures.seconds(table[WHOLE_COMMAND_GROUP][backend]),
                                       f"`mnist-gpu --backend {backend} --seed 1`, a fresh process")
        if table.get(STARTUP_GROUP, {}).get(backend):
            found[f"startup_{backend}"] = (*figures.seconds(table[STARTUP_GROUP][backend]),
                                           f"`mnist-gpu --backend {backend} --max_steps 0`, a fresh process")
    for benchmark in data["benchmarks"]:
        info, backend = benchmark.get("extra_info") or {}, variant_of(benchmark)
        if benchmark["group"] == STARTUP_FLOOR_GROUP and "floor_median" in info:
            found[f"startup_floor_{backend}"] = (*figures.seconds(info["floor_median"]),
                                                 f"the libraries' floor under {backend}'s start-up")
            found[f"startup_above_floor_{backend}"] = (*figures.seconds(info["above_floor"]),
                                                       f"{backend}'s start-up above that floor")
        if "over_baseline" in info:
            one_thread = "_baseline_one_blas_thread" if info.get("baseline_blas_threads") == 1 else ""
            found[f"run_over_baseline_{backend}{one_thread}"] = (
                *figures.ratio(info["over_baseline"]), f"`mnist-gpu --backend {backend} --seed 1` over the same "
                f"command from {info['baseline']}{baseline_threads(info)}, interleaved (median of per-round ratios)")
    for shape, backend, info in interleaved(data):
        if shape in QUOTED_STEP_SHAPES:
            batch = shape.split()[0].replace("=", "")
            found[f"step_{backend}_{batch}"] = (*figures.seconds(info["step_median"]),
                                                f"a training step, {backend}, {shape}, interleaved with its floor")
            found[f"floor_{backend}_{batch}"] = (*figures.seconds(info["floor_median"]),
                                                 f"its 8 GEMMs alone (the GEMM floor), {backend}, {shape}")
            found[f"step_over_floor_{backend}_{batch}"] = (
                *figures.ratio(info["ratio"]), f"step / GEMM floor, {backend}, {shape} (median of per-round ratios)")
    members_of = {}
    for benchmark in data["benchmarks"]:
        members = (benchmark.get("extra_info") or {}).get("members")
        if members is not None:
            members_of.setdefault(benchmark["group"], {})[members] = benchmark["stats"]["median"]
    for group, by_members in members_of.items():
        backend = group.split(" (")[0].replace("population step, ", "").replace(" ", "_")
        for members in QUOTED_MEMBERS:
            if by_members.get(members) and by_members.get(1):
                found[f"member_share_{backend}_K{members}"] = (
                    *figures.ratio(by_members[members] / members / by_members[1]),
                    f"a member's share of a {members}-member step (the step / {members}) over a 1-member step, "
                    f"{backend}, B=100")
    for group, backend in stopped_groups(data).items():
        times = table[group]
        if times.get("kept") and times.get("repacked"):
            found[f"repacked_over_kept_{backend}"] = (*figures.ratio(times["repacked"] / times["kept"]),
                                                      f"{group.split(':')[0]}: the step repacked over the step "
                                                      "keeping them")
    for group, times in table.items():
        if group in population_groups(data) and times.get("one sweep") and times.get("solo runs"):
            found["sweep_16"] = (*figures.seconds(times["one sweep"]), "`mnist-gpu sweep --seed 1-16`, cpu")
            found["solo_16"] = (*figures.seconds(times["solo runs"]), "`mnist-gpu --seed S` for S = 1..16, one after "
                                "the other, cpu")
            found["sweep_over_solo_16"] = (*figures.ratio(times["one sweep"] / times["solo runs"]),
                                           "the sweep over the 16 solo commands")
        if group in population_groups(data) and times.get("study, populations of 64") and times.get("solo runs"):
            for members in (64, 16):
                found[f"study_64_pop{members}"] = (*figures.seconds(times[f"study, populations of {members}"]),
                                                   "a 64-trial study (docs/sweeps.md), --population 64, cpu"
                                                   if members == 64 else "the same, --population 16")
            found["solo_64"] = (*figures.seconds(times["solo runs"]), "its 64 trials as solo commands")
            found["study_over_solo_64"] = (*figures.ratio(times["study, populations of 64"] / times["solo runs"]),
                                           "study_64_pop64 / solo_64")
    for what in AT_ONCE:
        for variant, seconds in table.get(WAIT_GROUP.format(what=what), {}).items():
            name = f"wait_{what.replace(' ', '_')}_{variant.split(' (')[0].replace(' ', '_')}"
            found[name] = (*figures.seconds(seconds), f"{what}, cpu; OpenMP's threads: {variant}")
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default=None, help="pytest -k expression selecting benchmarks")
    parser.add_argument("--out", default=RESULTS, help="folder for the report (default bench/results)")
    parser.add_argument("tests", nargs="*", default=["bench"], help="benchmark files or test ids (default bench)")
    options, pytest_options = parser.parse_known_args(argv)  # the rest goes to pytest (--benchmark-max-time=...)
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(options.out, exist_ok=True)
    json_path = os.path.join(options.out, f".bench-run-{os.getpid()}.json")
    # -s: what a benchmark prints (how the CUDA step program ran, its notes) reaches the terminal and a session's log.
    command = [sys.executable, "-m", "pytest", *options.tests, "-q", "-s", "-rs", "-p", "no:cacheprovider",
               f"--benchmark-json={json_path}", *pytest_options]
    if options.k:
        command += ["-k", options.k]
    # A benchmark that fails (a CUDA graph that cannot be captured, say) loses only itself: the report is
    # written from those that ran, and pytest's exit code is this command's.
    machine = figures.machine(None if device_name() == "cpu" else device_name())  # how busy: before, not after
    code = subprocess.run(command, cwd=repository).returncode
    if not os.path.exists(json_path):  # pytest-benchmark saves nothing when no benchmark ran
        print("bench.report: no benchmark ran (every one selected was skipped or failed); no report written")
        return code
    with open(json_path, encoding="utf-8") as stream:
        data = json.load(stream)
    os.remove(json_path)
    baseline_folder = os.environ.get("MNIST_GPU_BASELINE")
    baseline = [f"MNIST_GPU_BASELINE={baseline_folder}"] if baseline_folder else []
    shown = " ".join([*baseline, "python -m bench.report", *(["-k", f"'{options.k}'"] if options.k else []),
                      *(test for test in options.tests if test != "bench"), *pytest_options])
    print(write_report(data, options.out, shown))
    measured = figures_of(data)
    if measured:
        path = os.path.join(options.out, "figures.json")
        figures.record(measured, shown, f"{machine}, {figures.load_average()} at the end", path)
        print(f"bench.report: recorded {', '.join(sorted(measured))} in {path}")
    if code:
        print(f"bench.report: pytest exited with {code} (some benchmarks failed); the report holds those that ran")
    return code


if __name__ == "__main__":
    sys.exit(main())
