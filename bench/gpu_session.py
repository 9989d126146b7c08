"""Validates and benchmarks mnist_gpu on a GPU machine without network access, in one command and a time budget.

    bash bench/gpu_session.sh                       # every stage, in order
    bash bench/gpu_session.sh tests bench           # setup, then only the stages named
    bash bench/gpu_session.sh --time-limit 900 --out results   # the bounds are options (--help)

It installs the wheels carried beside the checkout (`bash bench/gpu_wheels.sh` downloads them where
a package registry is reachable) into python3's own environment, then runs the stages (STAGES):
setup (the wheels installed; every module the stages import checked; NVVM located, and CUDA_HOME set
to a toolkit that has it where numba-cuda finds none), environment (nvcc, nvJitLink, NVVM and
libdevice, failing at once without libdevice; the GPU, driver and compute capability; every relevant
package's version; where cuBLAS and the CUDA runtime were found), compile (every kernel through NVVM
and nvJitLink for sm_75/80/90 with the argument types the step program passes, recorded while Numba's
simulator runs a training step, the step program and an evaluation), check (`mnist-gpu check`: on a
GPU it passes only if the cuda backend is usable and every op and training check matches NumPy),
tests (the GPU tests), tutorial (the tutorial's run timed on cuda as a graph, cuda eager and cpu, and
a sweep of 1024 tutorial members on cuda), bench (short step benchmarks: host and GPU time per step,
op by op, eager program and graph, B=100 and B=1000; the population step of K = 1 to 4096 members;
and their report).

Each stage runs under a time limit (LIMITS, in proportion to a --time-limit above the default 470 s, and never
past the session's end): a stage that
fails or runs out of time (its whole process group is killed; every wait after a kill is bounded) is
recorded, and the next one still runs. Everything every stage prints goes to OUT/session.log as it
comes; OUT/summary.md and OUT/summary.json are rewritten after each stage; the benchmark report is
OUT/bench/*.{md,json,png}: 6 files, 1 folder down. At the end the session checks OUT against its
bounds on the result files (--max-files, --max-depth, --max-file-mib, --max-total-mib; by default
8 files, 2 folders down, 16 MiB each, 64 MiB together) and fails when they are exceeded.

Without a GPU (`nvidia-smi -L` lists none) the same command is a rehearsal: setup, environment,
compile, check (numpy and cpu), the GPU tests' collection, the tutorial on cpu and the benchmarks'
collection and report run; what needs the GPU says `skipped: no GPU`. CI runs it (.ci/run) under
Python 3.12 with the versions of a GPU image (NumPy 2.5.2), so that every kernel has compiled with
them before a GPU is used.

This file uses the standard library only: it must run before anything is installed.
"""
import argparse
import glob
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("setup", "environment", "compile", "check", "tests", "tutorial", "bench")
# Seconds each stage may take on one H200 machine; together the default budget, SESSION_LIMIT_S (--time-limit).
LIMITS = {"setup": 45, "environment": 30, "compile": 45, "check": 65, "tests": 115, "tutorial": 75, "bench": 95}
SESSION_LIMIT_S = 470
NO_GPU = "skipped: no GPU"
# The bounds on the result files in OUT (options, these the defaults): how many, how deep, how large.
MAX_FILES, MAX_DEPTH, MAX_FILE_MIB, MAX_TOTAL_MIB = 8, 2, 16, 64
TERM_WAIT_S, KILL_WAIT_S = 5, 10  # after SIGTERM, then after SIGKILL: how long a killed command is waited for
NVIDIA_SMI_WAIT_S = 30  # for `nvidia-smi -L`, which tells a GPU session from a rehearsal

# What the stages import; CuPy only where there is a GPU (the rehearsal has none).
NEEDED_MODULES = ("numpy", "numba", "numba_cuda", "cuda.core", "nvmath", "safetensors", "tensorboardX", "crc32c",
                  "PIL", "tqdm", "pytest", "pytest_benchmark", "tensorboard", "matplotlib")
# The GPU tests: tests/cuda (kernels against NumPy, the step program, GPU-only), the tutorial on cuda, and
# the host-side contract with the numba-cuda and nvmath installed here. -s: the step program's notes reach the log.
GPU_TESTS = ("tests/cuda",
             "tests/test_training_end_to_end.py::test_tutorial_defaults_reach_the_published_accuracy[cuda]",
             "tests/test_cuda_host.py")
# The tutorial's run (seed 1) each way, and a population of 1024 tutorial members (seeds 1-1024) as one command.
SWEEP_MEMBERS = 1024
TUTORIAL_RUNS = (("cuda graph", ("--backend", "cuda", "--cuda_graph", "on", "--seed", "1")),
                 ("cuda eager", ("--backend", "cuda", "--cuda_graph", "off", "--seed", "1")),
                 ("cpu", ("--backend", "cpu", "--seed", "1")),
                 (f"cuda sweep of {SWEEP_MEMBERS}", ("sweep", "--backend", "cuda", "--seed", f"1-{SWEEP_MEMBERS}")))
# The short step benchmarks: a finished step and the host's time to issue it (launch-only), op by op, as the
# eager step program and as its CUDA graph, beside the GEMM floor; and the GPU's time per step (CUDA events).
BENCHMARKS = tuple(f"bench/bench_step.py::test_training_step[{batch}-128-32-{variant}]" for batch in (100, 1000)
                   for variant in ("cuda", "cuda-launch-only", "cuda-eager", "cuda-eager-launch-only", "cuda-graph",
                                   "cuda-graph-launch-only", "cuda-gemm-floor")) + \
    tuple(f"bench/bench_step.py::test_gpu_time_per_step[{batch}-{variant}]" for batch in (100, 1000)
          for variant in ("cuda", "cuda-eager", "cuda-graph")) + \
    tuple(f"bench/bench_population.py::test_population_step_on_a_gpu[{graph}-{members}]"
          for graph, sizes in (("on", (1, 16, 256, 1024, 4096)), ("off", (1, 256, 4096))) for members in sizes) + \
    tuple(f"bench/bench_population.py::test_stopped_members_step_on_a_gpu[{way}]" for way in ("kept", "repacked"))
BENCHMARK_OPTIONS = ("--benchmark-max-time=0.5",)
# A compile problem as mnist_gpu.compile_report prints it: "<kernel> sm_<cc>: <problem>".
COMPILE_PROBLEM = re.compile(r"\w+ sm_\d+: .+")
# A passing line of `mnist-gpu check`: "  <backend> <check> spec|ok ..." (the numpy reference says spec).
CHECK_LINE = re.compile(r"  (?P<backend>numpy|cpu|cuda) +(?P<name>\S.*?) +(?:spec|ok) ")
CUDA_TRAINING_CHECKS = ("100 training steps", "100 steps, eager program", "100 steps, CUDA graph")
# What the environment stage's one-line detail names, of what bench.environment prints.
ENVIRONMENT_FACTS = ("GPU", "package numpy", "package numba-cuda", "nvcc", "NVVM", "nvJitLink", "libdevice", "cuBLAS",
                     "CUDA runtime")
EVAL_LINE = re.compile(r"  Num examples: (\d+)  Num correct: (\d+)  Precision @ 1: (\d\.\d{4})")
# A sweep's row per learning rate in its results table: rate, members, test mean ± std, min, max, validation mean,
# diverged, ensemble.
SWEEP_ROW = re.compile(r"\| \S+ \| (?P<members>\d+) \| (?P<test>\d\.\d{4} ± \d\.\d{4}) \|.*\| (?P<diverged>\d+) \| "
                       r"(?P<ensemble>\d\.\d{4}) \|")


@dataclass
class StageResult:
    name: str
    status: str  # "passed", "failed", "timed out" or "skipped: no GPU"
    detail: str
    seconds: float
    limit_seconds: float


@dataclass
class Finished:
    """One command's end: its exit code (None if it was killed at its time limit) and what it printed."""

    code: int | None
    lines: list
    seconds: float

    @property
    def ok(self):
        return self.code == 0

    @property
    def last_line(self):
        return next((line for line in reversed(self.lines) if line.strip()), "(no output)").strip()


class Session:
    """The output folder, the log, the time left, and the environment every command runs in."""

    def __init__(self, out, limit_seconds=SESSION_LIMIT_S, python=sys.executable, wheels=".whl"):
        self.out, self.python, self.wheels = out, python, wheels
        self.started = time.monotonic()
        self.deadline = self.started + limit_seconds
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.limit_seconds = limit_seconds
        # A larger budget (a slower machine: the rehearsal on a shared CPU) lengthens every stage in proportion; a
        # smaller one keeps the stages' limits, and the budget cuts short whatever runs when it ends.
        self.stage_scale = max(1.0, limit_seconds / SESSION_LIMIT_S)
        self.results = []
        self.left_behind = []  # commands that had not ended KILL_WAIT_S after SIGKILL: (pid, command)
        self.scratch = tempfile.mkdtemp(prefix="gpu_session-")  # log_dirs and the data cache; removed at the end
        self.environment = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
                                PYTHONPATH=os.pathsep.join([REPOSITORY, *filter(None, [os.environ.get("PYTHONPATH")])]))
        self.gpu = self._gpu()
        self.stage_deadline = self.deadline
        os.makedirs(out, exist_ok=True)
        self.log_file = open(os.path.join(out, "session.log"), "a", encoding="utf-8")

    @staticmethod
    def _gpu():
        """`nvidia-smi -L`'s first GPU line, or None: whether this is a GPU session or a rehearsal."""
        if shutil.which("nvidia-smi") is None:
            return None
        try:
            process = subprocess.Popen(["nvidia-smi", "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       stdin=subprocess.DEVNULL, text=True, errors="replace")
        except OSError:
            return None
        try:
            listing, _ = process.communicate(timeout=NVIDIA_SMI_WAIT_S)
        except subprocess.TimeoutExpired:  # a driver that does not answer: a GPU session, whose stages will say why
            process.kill()
            try:
                process.communicate(timeout=KILL_WAIT_S)  # bounded: a process in the driver may not end at once
            except subprocess.TimeoutExpired:
                pass
            return f"nvidia-smi -L did not answer within {NVIDIA_SMI_WAIT_S} s"
        return next((line for line in listing.splitlines() if line.startswith("GPU ")), None)

    def log(self, text=""):
        for line in str(text).splitlines() or [""]:
            print(line, flush=True)
            self.log_file.write(line + "\n")
        self.log_file.flush()

    def run(self, arguments, seconds=None):
        """Run a command in its own process group until it ends or the stage's time is up; its output to the log."""
        left = self.stage_deadline - time.monotonic()
        seconds = left if seconds is None else min(seconds, left)
        self.log(f"$ {' '.join(arguments)}")
        start = time.monotonic()
        if seconds <= 0:
            self.log("(not started: the stage's time is up)")
            return Finished(None, [], 0.0)
        try:
            process = subprocess.Popen(arguments, cwd=REPOSITORY, env=self.environment, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                       errors="replace", start_new_session=True)
        except OSError as error:  # no such program here (nvidia-smi, git)
            self.log(f"(could not start: {error})")
            return Finished(127, [f"could not start {arguments[0]}: {error}"], 0.0)
        lines = []

        def pump():
            for line in process.stdout:
                lines.append(line.rstrip("\n"))
                self.log(lines[-1])

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            if not self._kill(process):
                self.left_behind.append((process.pid, arguments[0]))
                self.log(f"(pid {process.pid} had not ended {KILL_WAIT_S} s after SIGKILL: left behind)")
            code = None
        reader.join(timeout=10)
        finished = Finished(code, lines, time.monotonic() - start)
        if code is None:
            self.log(f"(killed after {finished.seconds:.0f} s: the time limit)")
        elif code:
            self.log(f"(exit code {code})")
        return finished

    @staticmethod
    def _kill(process):
        """The command and everything it started (pytest's subprocesses too): SIGTERM, TERM_WAIT_S, then SIGKILL for
        what is left of its process group and for the command itself (should it have left the group), each wait
        bounded. True if the command ended; False if it had not KILL_WAIT_S after SIGKILL (a process in the kernel's
        uninterruptible sleep, or one a stopped debugger holds): the session goes on without it."""
        for kill_signal, seconds in ((signal.SIGTERM, TERM_WAIT_S), (signal.SIGKILL, KILL_WAIT_S)):
            try:
                os.killpg(process.pid, kill_signal)  # after SIGTERM too: what the command started may still run
            except ProcessLookupError:  # nothing is left in the group
                pass
            if process.poll() is None:  # not reaped, so its pid names no other process
                os.kill(process.pid, kill_signal)
            try:
                process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                pass
        return process.poll() is not None

    def python_module(self, module, *arguments, seconds=None):
        return self.run([self.python, "-m", module, *arguments], seconds)

    # -- the record -----------------------------------------------------------------------------------------
    def record(self, result):
        self.results.append(result)
        self.log(f"=== {result.name}: {result.status} in {result.seconds:.1f} s (limit {result.limit_seconds:.0f} s)"
                 f"{': ' + result.detail if result.detail else ''}")
        self.write_summary()

    def summary(self):
        return {
            "command": "bash bench/gpu_session.sh " + " ".join(result.name for result in self.results),
            "mode": "GPU session" if self.gpu else "rehearsal (no GPU)",
            "gpu": self.gpu or "none",
            "python": self.python,
            "started": self.started_at,
            "seconds": round(time.monotonic() - self.started, 1),
            "limit_seconds": round(self.limit_seconds),
            "passed": all(result.status in ("passed", NO_GPU) for result in self.results),
            "stages": [asdict(result) for result in self.results],
            "left_behind": [f"pid {pid}: {command}" for pid, command in self.left_behind],
        }

    def write_summary(self):
        summary = self.summary()
        lines = [f"# GPU session, {summary['started']}", "",
                 f"- {summary['mode']}: {summary['gpu']}", f"- Python: {summary['python']}",
                 f"- {summary['seconds']:.0f} s of at most {summary['limit_seconds']} s; "
                 f"{'every stage passed or was skipped' if summary['passed'] else 'SOME STAGE FAILED'}",
                 "- Everything each stage printed: session.log", "",
                 "| stage | status | seconds | limit | detail |", "|---|---|---|---|---|"]
        lines += [f"| {result['name']} | {result['status']} | {result['seconds']:.1f} | {result['limit_seconds']:.0f} "
                  f"| {result['detail'].replace('|', '/')} |" for result in summary["stages"]]
        _replace(os.path.join(self.out, "summary.json"), json.dumps(summary, indent=1) + "\n")
        _replace(os.path.join(self.out, "summary.md"), "\n".join(lines) + "\n")

    def close(self):
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.log_file.close()


def _replace(path, text):
    """Write a whole file by rename, so that a session killed at any moment leaves a readable summary."""
    temporary = path + ".part"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)


# -- the stages: each returns (status, detail) -------------------------------------------------------------------
def setup(session):
    """The carried wheels into python3's own environment, the needed modules checked, NVVM located."""
    session.log(f"python3: {session.python} (prefix {sys.prefix}, base {sys.base_prefix})")
    problems, changed = [], []
    wheels = sorted(glob.glob(os.path.join(REPOSITORY, session.wheels, "*.whl")))
    if wheels:
        before = {name: _installed_version(name) for name in map(_project_of, wheels)}
        # Into this interpreter's own site-packages, which cuda-pathfinder searches (it does not search
        # PYTHONPATH, so `pip --target` + PYTHONPATH would hide nvmath's and numba-cuda's libraries from it).
        # Not a new venv: the image's python3 is a venv itself, and a venv made from one does not see its packages.
        installed = session.python_module("pip", "install", "--no-index", "--no-deps", "--no-compile",
                                          "--no-cache-dir", "--disable-pip-version-check", *wheels)
        if not installed.ok:
            problems.append(f"installing the wheels failed: {installed.last_line}")
        importlib.invalidate_caches()
        for name, version in before.items():
            now = _installed_version(name)
            session.log(f"{name}: {version or 'not installed'} -> {now or 'not installed'}")
            if now != version:
                changed.append(f"{name} {now}" + (f" (was {version})" if version else ""))
        # --no-deps: whether what the wheels need is there is pip check's to say (about them only: a note).
        conflicts = session.python_module("pip", "check", "--disable-pip-version-check", seconds=30)
        ours = [line for line in conflicts.lines if any(name in line.lower() for name in before)]
        session.log("pip check, about the wheels: " + ("; ".join(ours) if ours else "nothing"))
    else:
        session.log(f"no wheels in {session.wheels}/: the packages as installed here")
    needed = NEEDED_MODULES + (("cupy",) if session.gpu else ())
    lookup = session.python_module("bench.environment", "--missing", *needed)  # a fresh process: sees the installs
    if not lookup.ok:
        problems.append(lookup.last_line)
    nvvm = locate_nvvm(session)
    if not nvvm.startswith("NVVM: ") or "not found" in nvvm:
        problems.append("no libNVVM: the kernels cannot be compiled")
    wheels_part = (f"{len(wheels)} wheels: installed {', '.join(changed) or 'none'}, the others already there"
                   if wheels else "no wheels to install")
    return ("failed" if problems else "passed"), "; ".join([*problems, wheels_part, nvvm])


def locate_nvvm(session):
    """Where numba-cuda finds libNVVM; where it finds none and CUDA_HOME / CUDA_PATH are unset, a CUDA toolkit
    that has it (the one nvcc belongs to, /usr/local/cuda*) becomes CUDA_HOME for every later stage."""
    found = session.python_module("bench.environment", "--nvvm", seconds=60)
    if found.ok or session.environment.get("CUDA_HOME") or session.environment.get("CUDA_PATH"):
        return found.last_line
    for toolkit in toolkits():
        if glob.glob(os.path.join(toolkit, "nvvm", "lib64", "libnvvm.so*")):
            session.environment["CUDA_HOME"] = toolkit
            session.log(f"numba-cuda found no libNVVM in site-packages: CUDA_HOME={toolkit} for the stages after this")
            return session.python_module("bench.environment", "--nvvm", seconds=60).last_line + \
                f" (CUDA_HOME={toolkit} set by the session)"
    return found.last_line + f"; no CUDA toolkit with nvvm/ found in {', '.join(toolkits()) or 'none'}"


def toolkits():
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    return list(dict.fromkeys(path for path in candidates if os.path.isdir(path)))


def _project_of(wheel):
    return os.path.basename(wheel).split("-")[0].replace("_", "-")


def _installed_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(session):
    """`python3 -m bench.environment`: the compiler toolchain first (nvcc, nvJitLink, NVVM, libdevice), ending at once
    without libdevice, which every compile links; then every package's version and library's place, the GPU as
    CuPy sees it. Then nvidia-smi's view of the GPU and the commit."""
    probe = session.python_module("bench.environment")
    facts = dict(line.split(": ", 1) for line in probe.lines if ": " in line)
    if not probe.ok:
        return _failure(probe), probe.last_line
    if session.gpu:
        session.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm",
                     "--format=csv"], seconds=30)
    else:
        session.log("nvidia-smi: no GPU listed (or no nvidia-smi)")
    session.run(["git", "log", "-1", "--format=commit %H %cd"], seconds=10)
    return "passed", "; ".join(f"{name} {facts[name]}" for name in ENVIRONMENT_FACTS if name in facts)


def compile_kernels(session):
    """Every kernel through NVVM and nvJitLink for sm_75/80/90 (python -m mnist_gpu.compile_report): the argument
    types are recorded while Numba's simulator runs a training step, the step program and an evaluation through
    the cuda backend, so they are the ones the GPU will be given. A compile error, spill, local memory or float64
    instruction fails the stage; each is a line of the log."""
    report = os.path.join(session.scratch, "compile_report.json")
    finished = session.python_module("mnist_gpu.compile_report", "--json", report)
    problems = [line for line in finished.lines if COMPILE_PROBLEM.match(line)]
    if not finished.ok:
        reason = f"{len(problems)} problems, the first: {problems[0]}" if problems else finished.last_line
        return _failure(finished), reason
    with open(report, encoding="utf-8") as stream:
        results = json.load(stream)["results"]
    kernels = {(result["module"], result["kernel"]) for result in results}
    return "passed", (f"{len(kernels)} kernels, {len(results)} compiles (sm_75/80/90): no spill, local memory or "
                      f"float64; at most {max(result['registers'] for result in results)} registers")


def check(session):
    """`mnist-gpu check`. On a GPU it passes only if the cuda backend is usable and every op, and each way of
    training, that NumPy ran is checked on cuda and matches; elsewhere if every usable backend matches."""
    finished = session.python_module("mnist_gpu", "check")
    if not finished.ok:
        return _failure(finished), finished.last_line
    if not session.gpu:
        return "passed", finished.last_line
    cuda = next((line for line in finished.lines if line.startswith("backend cuda: ")), "backend cuda: no line")
    if cuda != "backend cuda: usable":
        return "failed", f"a GPU is listed, but {cuda}"
    passing = [match for match in map(CHECK_LINE.match, finished.lines) if match]
    spec = [match["name"] for match in passing if match["backend"] == "numpy"]
    matched = {match["name"] for match in passing if match["backend"] == "cuda"}
    missing = [name for name in spec + list(CUDA_TRAINING_CHECKS) if name not in matched]
    if missing or not spec:
        return "failed", f"cuda did not match NumPy in: {', '.join(missing) or 'any op (no op was checked)'}"
    return "passed", f"cuda usable; {len(spec)} ops and {len(CUDA_TRAINING_CHECKS)} training checks match NumPy"


def tests(session):
    if not session.gpu:  # the collection still runs: conftest, the plugins installed here, the test modules
        collected = session.python_module("pytest", *GPU_TESTS, "--collect-only", "-q", "-p", "no:cacheprovider")
        if not collected.ok:
            return _failure(collected), collected.last_line
        return NO_GPU, f"collected only: {collected.last_line}"
    finished = session.python_module("pytest", *GPU_TESTS, "-q", "-s", "-rs", "-p", "no:cacheprovider")
    return ("passed" if finished.ok else _failure(finished)), finished.last_line


def tutorial(session):
    """The tutorial's run (`mnist-gpu --seed 1`) in a fresh process each way, timed from start to exit."""
    data = os.path.join(session.scratch, "input_data")
    session.run([session.python, "-c", f"from mnist_gpu.input_data import read_data_sets; read_data_sets({data!r})"])
    parts, failed = [], False
    for index, (name, flags) in enumerate(TUTORIAL_RUNS):
        if "cuda" in flags and not session.gpu:
            session.log(f"tutorial on {name}: {NO_GPU}")
            parts.append(f"{name}: {NO_GPU}")
            continue
        finished = session.python_module("mnist_gpu", *flags, "--input_data_dir", data,
                                         "--log_dir", os.path.join(session.scratch, f"tutorial-{index}"))
        precisions = [match[3] for match in map(EVAL_LINE.fullmatch, finished.lines) if match]
        rows = [match for match in map(SWEEP_ROW.fullmatch, finished.lines) if match]
        if finished.ok and rows:
            parts.append(f"{name}: {finished.seconds:.2f} s, " + ", ".join(
                f"{row['members']} members: test {row['test']}, {row['diverged']} diverged, ensemble {row['ensemble']}"
                for row in rows))
        elif finished.ok:
            parts.append(f"{name}: {finished.seconds:.2f} s, test precision {precisions[-1] if precisions else '?'}")
        else:
            failed = True
            parts.append(f"{name}: {_failure(finished)} ({finished.last_line})")
    return ("failed" if failed else "passed"), "; ".join(parts)


def bench(session):
    """The short step benchmarks and their report in $OUT/bench; without a GPU collected, skipped, reported."""
    finished = session.python_module("bench.report", "--out", os.path.join(session.out, "bench"), *BENCHMARKS,
                                     *BENCHMARK_OPTIONS)
    if not finished.ok:
        return _failure(finished), finished.last_line
    if not session.gpu:
        return NO_GPU, f"the {len(BENCHMARKS)} benchmarks collected and skipped: {finished.last_line}"
    if not finished.last_line.endswith(".md"):  # on a GPU every one of them must run
        return "failed", finished.last_line
    return "passed", f"report {os.path.relpath(finished.last_line, session.out)}"


def _failure(finished):
    return "timed out" if finished.code is None else "failed"


RUNNERS = {"setup": setup, "environment": environment, "compile": compile_kernels, "check": check, "tests": tests,
           "tutorial": tutorial, "bench": bench}


def run_stage(session, name, runner):
    limit = min(LIMITS[name] * session.stage_scale, max(0.0, session.deadline - time.monotonic()))
    session.log(f"=== {name} (limit {limit:.0f} s) ===")
    session.stage_deadline = time.monotonic() + limit
    start = time.monotonic()
    try:
        status, detail = runner(session)
    except Exception as error:  # noqa: BLE001 - a broken stage is recorded, and the next one still runs
        status, detail = "failed", f"the session's own code raised {type(error).__name__}: {error}"
    session.record(StageResult(name, status, detail, round(time.monotonic() - start, 1), limit))


def files_under(folder):
    """Every file below folder, as paths relative to it."""
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def result_problems(out, max_files=MAX_FILES, max_depth=MAX_DEPTH, max_file_mib=MAX_FILE_MIB,
                    max_total_mib=MAX_TOTAL_MIB):
    """How the files in `out` exceed the bounds on the session's results ([] when they do not)."""
    sizes = {path: os.path.getsize(os.path.join(out, path)) for path in files_under(out)}
    problems = [f"{len(sizes)} files, more than {max_files}"] if len(sizes) > max_files else []
    problems += [f"{path}: more than {max_depth} folders down" for path in sizes if path.count(os.sep) > max_depth]
    problems += [f"{path}: {size / 2 ** 20:.2f} MiB, more than {max_file_mib:g} MiB" for path, size in sizes.items()
                 if size > max_file_mib * 2 ** 20]
    total = sum(sizes.values())
    if total > max_total_mib * 2 ** 20:
        problems.append(f"{total / 2 ** 20:.2f} MiB together, more than {max_total_mib:g} MiB")
    return problems


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value
    return parse


def parser():
    arguments = argparse.ArgumentParser(
        prog="bash bench/gpu_session.sh", description="Validate and benchmark mnist_gpu on a GPU machine without "
        "network access: install the carried wheels, then run the stages in order, each time-boxed (without a GPU: "
        "a rehearsal). Exit 0 when every stage passed or was skipped, 1 when one failed or timed out or the results "
        "exceed their bounds, 2 for a bad argument.")
    arguments.add_argument("stages", nargs="*", metavar="STAGE",
                           help=f"only these stages, after setup (one of {', '.join(STAGES)}; default: all)")
    arguments.add_argument("--out", default=None, help="the folder for the results (default: $OUT when set, "
                           "else a new folder of this user's under the temporary folder, named in the first line)")
    arguments.add_argument("--wheels", default=".whl",
                           help="the folder of carried wheels, relative to the checkout (default: .whl)")
    arguments.add_argument("--time-limit", type=_positive(float), default=SESSION_LIMIT_S, metavar="SECONDS",
                           help=f"the whole session's time budget (default: {SESSION_LIMIT_S}); a larger one "
                           "lengthens each stage's limit in proportion")
    arguments.add_argument("--max-files", type=_positive(int), default=MAX_FILES, metavar="N",
                           help=f"the most result files (default: {MAX_FILES})")
    arguments.add_argument("--max-depth", type=int, default=MAX_DEPTH, metavar="N",
                           help=f"the most folders below the results folder a file may be (default: {MAX_DEPTH})")
    arguments.add_argument("--max-file-mib", type=_positive(float), default=MAX_FILE_MIB, metavar="MIB",
                           help=f"the largest a result file may be (default: {MAX_FILE_MIB})")
    arguments.add_argument("--max-total-mib", type=_positive(float), default=MAX_TOTAL_MIB, metavar="MIB",
                           help=f"the most all result files may be together (default: {MAX_TOTAL_MIB})")
    return arguments


def main(argv=None):
    options = parser().parse_args(sys.argv[1:] if argv is None else argv)
    unknown = [name for name in options.stages if name not in STAGES]
    if unknown:
        print(f"gpu_session: unknown stage {', '.join(unknown)}; the stages are {', '.join(STAGES)} "
              "(none: all, in order)", file=sys.stderr)
        return 2
    chosen = [name for name in STAGES if not options.stages or name in options.stages or name == "setup"]
    out = options.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_session-out-")
    session = Session(out, options.time_limit, wheels=options.wheels)
    bounds = {"max_files": options.max_files, "max_depth": options.max_depth, "max_file_mib": options.max_file_mib,
              "max_total_mib": options.max_total_mib}
    try:
        session.log(f"GPU session {session.started_at}: stages {', '.join(chosen)}; output in {session.out}; "
                    f"at most {options.time_limit:g} s; "
                    + (session.gpu or "no GPU: a rehearsal, the GPU parts say " + NO_GPU))
        for name in chosen:
            run_stage(session, name, RUNNERS[name])
        problems = result_problems(session.out, **bounds)
        files = files_under(session.out)
        if problems:
            session.log(f"gpu_session: the results in {session.out} exceed their bounds: {'; '.join(problems)}")
            return 1
        summary = session.summary()
        session.log(f"gpu_session: {'done' if summary['passed'] else 'FAILED'} in {summary['seconds']:.0f} s; "
                    f"{len(files)} files in {session.out}: {', '.join(files)}")
        return 0 if summary["passed"] else 1
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
