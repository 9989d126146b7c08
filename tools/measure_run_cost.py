"""What provenance and the evaluation pictures cost: this commit against an older one, side by side in one loop.

    .venv/bin/python -m tools.measure_run_cost 30b1be8            # against an older commit
    .venv/bin/python -m tools.measure_run_cost 30b1be8 --rounds 15
    .venv/bin/python -m tools.measure_run_cost --in-process-only --rounds 21

Both commits are exported (git archive) into fresh folders and run as `python -m mnist_gpu` from
there with this interpreter, alternating round by round (the machine's noise hits both alike):
`--seed 1` (the tutorial's 2000 steps, two evaluations) and `--max_steps 0` (start-up), each in a
fresh process with a fresh log_dir and a shared, warm data cache. A copy made by git archive is
not a checkout, so the new code records no git commit there, as an installed mnist_gpu does; the
checkout's extra `git` calls are timed on their own, in-process, with the pictures of one
evaluation. Then the whole run in this process, alternating the code as it is with its pictures and
provenance stubbed out (the extra work alone, without the noise of starting processes). Prints
medians, and records the in-process ones in bench/results/figures.json (bench/figures.py: the
figures the docs quote); run it from the checkout's root, as above.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(revision, folder):
    os.makedirs(folder)
    archive = subprocess.run(["git", "-C", REPOSITORY, "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def run(source, arguments):
    """Wall and CPU (user + system) seconds of `python -m mnist_gpu ARGUMENTS` importing mnist_gpu from
    `source`, and its stdout."""
    environment = {**os.environ, "PYTHONPATH": source}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mnist_gpu", *arguments], capture_output=True, text=True,
                            env=environment, cwd=source, check=True)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu, result.stdout


def pieces(rounds):
    """In-process medians (seconds): gathering provenance in this checkout, and one evaluation's pictures
    (Pillow and its font already loaded)."""
    import numpy as np

    from mnist_gpu import pictures, provenance
    from mnist_gpu.backends import get_backend
    from mnist_gpu.confusion import Confusion, text_summary
    from mnist_gpu.flags import parse_flags
    from mnist_gpu.input_data import read_data_sets

    flags, backend = parse_flags(), get_backend("cpu")
    gathering = []
    for _ in range(rounds):
        provenance.git_state.cache_clear()
        start = time.perf_counter()
        provenance.gather(flags, backend, 1, time.time())
        gathering.append(time.perf_counter() - start)
    test = read_data_sets(flags.input_data_dir).test
    logits = np.random.default_rng(0).standard_normal((10000, 10)).astype(np.float32)
    logits[np.arange(10000), test.labels] += 2.5  # about 90% right, as the tutorial's model
    drawing = []
    for _ in range(rounds):
        start = time.perf_counter()
        found = Confusion.from_logits(logits, test.labels)
        pictures.draw(found, test.pixels, "at step 999")
        text_summary(found)
        drawing.append(time.perf_counter() - start)
    return statistics.median(gathering), statistics.median(drawing)


def in_process(rounds):
    """Medians (seconds) of the tutorial's run (cpu backend, seed 1) in this process, with the pictures and
    provenance and with them stubbed out, alternating; the data cache and the kernels warm."""
    import contextlib
    import shutil
    from unittest import mock

    from mnist_gpu import provenance, trainer
    from mnist_gpu.flags import parse_flags
    from mnist_gpu.summaries import Summaries

    @contextlib.contextmanager
    def without():
        with mock.patch.object(trainer.EvaluationPictures, "draw", lambda self, backend, when: (None, None, "")), \
                mock.patch.object(Summaries, "add_pictures", lambda self, *arguments: None), \
                mock.patch.object(Summaries, "add_run", lambda self, *arguments: None), \
                mock.patch.object(provenance, "gather", lambda *arguments: {}):
            yield

    times = {"with": [], "without": []}
    cpu_times = {"with": [], "without": []}
    folder = tempfile.mkdtemp(prefix="mnist_gpu-cost-")
    try:
        for round_number in range(rounds + 1):  # round 0: warm-up (imports, kernels, Pillow's font)
            for name in ("with", "without") if round_number % 2 else ("without", "with"):
                flags = parse_flags(seed=1, backend="cpu", log_dir=os.path.join(folder, f"{name}-{round_number}"))
                with without() if name == "without" else contextlib.nullcontext():
                    start, cpu_start = time.perf_counter(), time.process_time()
                    trainer.run_training(flags, trainer.Log(verbose=False))
                    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
                if round_number:
                    times[name].append(seconds)
                    cpu_times[name].append(cpu_seconds)
    finally:
        shutil.rmtree(folder)
    return ({name: statistics.median(values) for name, values in times.items()},
            {name: statistics.median(values) for name, values in cpu_times.items()})


def fresh_processes(base_revision, rounds):
    """Both commits' whole commands, alternating; prints medians and whether stdout agrees."""
    with tempfile.TemporaryDirectory(prefix="mnist_gpu-cost-") as folder:
        sources = {"base": export(base_revision, os.path.join(folder, "base")),
                   "new": export("HEAD", os.path.join(folder, "new"))}
        data = os.path.join(folder, "input_data")
        times = {(name, command, kind): [] for name in sources for command in ("run", "start-up")
                 for kind in ("wall", "CPU")}
        outputs = {}
        for round_number in range(rounds + 1):  # round 0 warms the data cache and Numba's kernel cache
            order = list(sources.items())
            for name, source in order if round_number % 2 else order[::-1]:  # who goes first alternates too
                for command, extra in (("run", ["--seed", "1"]), ("start-up", ["--max_steps", "0"])):
                    log_dir = os.path.join(folder, "logs", f"{name}-{command}-{round_number}")
                    seconds, cpu, stdout = run(source, [*extra, "--input_data_dir", data, "--log_dir", log_dir])
                    if round_number:
                        times[name, command, "wall"].append(seconds)
                        times[name, command, "CPU"].append(cpu)
                    outputs.setdefault((name, command), set()).add(
                        "\n".join(line.split(" (")[0] for line in stdout.splitlines()))  # timings vary
        for command in ("run", "start-up"):
            for kind in ("wall", "CPU"):
                series = {name: times[name, command, kind] for name in ("base", "new")}
                base, new = (statistics.median(series[name]) for name in ("base", "new"))
                spread = "; ".join(f"{name} {min(values):.3f}-{max(values):.3f}" for name, values in series.items())
                print(f"{command:9s} {kind:4s} base {base:.3f} s  new {new:.3f} s  difference {new - base:+.3f} s "
                      f"({(new - base) / base:+.1%}), medians of {rounds} alternating rounds (range {spread})")
        same = outputs["base", "run"] == outputs["new", "run"]
        print(f"stdout of `--seed 1` (durations removed): {'identical' if same else 'DIFFERENT'} across commits")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", help="the commit to compare with (e.g. the one before the change)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--in-process-only", action="store_true", help="skip the fresh processes")
    options = parser.parse_args()
    from bench import figures  # the checkout's bench/: run as python -m tools.measure_run_cost from its root

    machine = figures.machine()
    if options.base is None and not options.in_process_only:
        parser.error("name the commit to compare with, or pass --in-process-only")
    if not options.in_process_only:
        fresh_processes(options.base, options.rounds)
    wall, cpu = in_process(options.rounds)
    for kind, medians in zip(("wall", "CPU (process_time)"), (wall, cpu), strict=True):
        extra = medians["with"] - medians["without"]
        print(f"in-process run (cpu, --seed 1), {kind}: with {medians['with']:.3f} s, without (pictures and "
              f"provenance stubbed out) {medians['without']:.3f} s, difference {extra:+.3f} s "
              f"({extra / medians['without']:+.1%}); medians of {options.rounds} alternating rounds")
    gathering, drawing = pieces(options.rounds)
    print(f"in-process: provenance gathered in this checkout {gathering * 1000:.1f} ms; one evaluation's pictures "
          f"(confusion, two PNGs, table) {drawing * 1000:.1f} ms; medians of {options.rounds}")
    figures.record({
        "run_in_process_cpu": (*figures.seconds(wall["with"]), "the tutorial's run (cpu, --seed 1) in one process"),
        "pictures_and_provenance_in_run": (*figures.seconds(wall["with"] - wall["without"]),
                                           "what the pictures and provenance add to that run"),
        "evaluation_pictures": (*figures.seconds(drawing), "one evaluation's pictures: confusion, two PNGs, table"),
        "provenance_gather": (*figures.seconds(gathering), "gathering the provenance in a git checkout"),
    }, " ".join(["python -m tools.measure_run_cost", *sys.argv[1:]]), f"{machine}, {figures.load_average()} at the end")


if __name__ == "__main__":
    main()
