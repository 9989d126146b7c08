"""A GPU session in one command: every stage in order, each time-boxed, the whole within 8 minutes on the H200.

    bash bench/gpu_session.sh                  # every stage, in order
    bash bench/gpu_session.sh tests bench      # a targeted second run: setup, then only these stages

Stages (STAGES): setup (the carried wheels installed into python3's own environment, where
cuda-pathfinder looks; NVVM located, CUDA_HOME set to a toolkit that has it where numba-cuda finds
none), environment (GPU, driver, compute capability, every relevant package's version, where NVVM,
cuBLAS and the CUDA runtime were found), check (`mnist-gpu check`), tests (the GPU tests), tutorial
(the tutorial's run timed on cuda as a graph, cuda eager and cpu), bench (short step benchmarks:
host and GPU time per step, op by op, eager program and graph, B=100 and B=1000, and their report).

Each stage runs under a time limit (LIMITS, never past the session's SESSION_LIMIT_S): a stage
that fails or runs out of time (its whole process group is killed) is recorded, and the next one
still runs. Everything every stage prints goes to $OUT/session.log as it comes; $OUT/summary.md
and $OUT/summary.json are rewritten after each stage; the benchmark report is $OUT/bench/*.{md,json,png}:
6 files at most, 1 folder down (the device tool brings back 8, 2 folders down; checked at the end).

Without a GPU (`nvidia-smi -L` lists none) the same command is a rehearsal: setup, environment,
check (numpy and cpu), the GPU tests' collection, the tutorial on cpu and the benchmarks'
collection and report run; what needs the GPU says `skipped: no GPU`. CI runs it (.ci/run).

This file uses the standard library only: it must run before anything is installed.
"""
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
STAGES = ("setup", "environment", "check", "tests", "tutorial", "bench")
# Seconds each stage may take on the H200; together 450 s, under the session's 470 s (8 minutes less margin).
LIMITS = {"setup": 45, "environment": 30, "check": 75, "tests": 150, "tutorial": 60, "bench": 90}
SESSION_LIMIT_S = 470
NO_GPU = "skipped: no GPU"
MAX_FILES, MAX_DEPTH = 8, 2  # what the device tool brings back from $OUT

# What the stages import; CuPy only where there is a GPU (the rehearsal has none).
NEEDED_MODULES = ("numpy", "numba", "numba_cuda", "cuda.core", "nvmath", "safetensors", "tensorboardX", "crc32c",
                  "PIL", "tqdm", "pytest", "pytest_benchmark", "tensorboard", "matplotlib")
# The GPU tests: tests/cuda (kernels against NumPy, the step program, GPU-only), the tutorial on cuda, and
# the host-side contract with the numba-cuda and nvmath installed here. -s: the step program's notes reach the log.
GPU_TESTS = ("tests/cuda",
             "tests/test_training_end_to_end.py::test_tutorial_defaults_reach_the_published_accuracy[cuda]",
             "tests/test_cuda_host.py")
TUTORIAL_RUNS = (("cuda graph", ("--backend", "cuda", "--cuda_graph", "on")),
                 ("cuda eager", ("--backend", "cuda", "--cuda_graph", "off")),
                 ("cpu", ("--backend", "cpu")))
# The short step benchmarks: a finished step and the host's time to issue it (launch-only), op by op, as the
# eager step program and as its CUDA graph, beside the GEMM floor; and the GPU's time per step (CUDA events).
BENCHMARKS = tuple(f"bench/bench_step.py::test_training_step[{batch}-128-32-{variant}]" for batch in (100, 1000)
                   for variant in ("cuda", "cuda-launch-only", "cuda-eager", "cuda-eager-launch-only", "cuda-graph",
                                   "cuda-graph-launch-only", "cuda-gemm-floor")) + \
    tuple(f"bench/bench_step.py::test_gpu_time_per_step[{batch}-{variant}]" for batch in (100, 1000)
          for variant in ("cuda", "cuda-eager", "cuda-graph"))
BENCHMARK_OPTIONS = ("--benchmark-max-time=0.5",)
EVAL_LINE = re.compile(r"  Num examples: (\d+)  Num correct: (\d+)  Precision @ 1: (\d\.\d{4})")


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
        self.results = []
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
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return next((line for line in listing.stdout.splitlines() if line.startswith("GPU ")), None)

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
            self._kill(process)
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
        """The command and everything it started (pytest's subprocesses too): SIGTERM, 5 s, then SIGKILL for what
        is left of its process group."""
        for kill_signal in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, kill_signal)
            except ProcessLookupError:  # the whole group has ended
                break
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        process.wait()

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
    if session.gpu and (not nvvm.startswith("NVVM: ") or "not found" in nvvm):
        problems.append("no libNVVM: the kernels cannot be compiled")  # the rehearsal compiles none: a note there
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
    if session.gpu:
        session.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm",
                     "--format=csv"], seconds=30)
    else:
        session.log("nvidia-smi: no GPU listed (or no nvidia-smi)")
    session.run(["git", "log", "-1", "--format=commit %H %cd"], seconds=10)
    probe = session.python_module("bench.environment")
    facts = dict(line.split(": ", 1) for line in probe.lines if ": " in line)
    detail = "; ".join(f"{name} {facts[name]}" for name in ("GPU", "NVVM", "cuBLAS", "CUDA runtime") if name in facts)
    return ("passed" if probe.ok else _failure(probe)), detail or probe.last_line


def check(session):
    finished = session.python_module("mnist_gpu", "check")
    return ("passed" if finished.ok else _failure(finished)), finished.last_line


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
        finished = session.python_module("mnist_gpu", *flags, "--seed", "1", "--input_data_dir", data,
                                         "--log_dir", os.path.join(session.scratch, f"tutorial-{index}"))
        precisions = [match[3] for match in map(EVAL_LINE.fullmatch, finished.lines) if match]
        if finished.ok:
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


RUNNERS = {"setup": setup, "environment": environment, "check": check, "tests": tests, "tutorial": tutorial,
           "bench": bench}


def run_stage(session, name, runner):
    limit = min(LIMITS[name], max(0.0, session.deadline - time.monotonic()))
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


def main(argv=None):
    names = list(sys.argv[1:] if argv is None else argv)
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        print(f"gpu_session: unknown stage {', '.join(unknown)}; the stages are {', '.join(STAGES)} "
              "(none: all, in order)", file=sys.stderr)
        return 2
    chosen = [name for name in STAGES if not names or name in names or name == "setup"]  # setup always, first
    session = Session(os.environ.get("OUT") or "/tmp/gpu_session",
                      float(os.environ.get("GPU_SESSION_LIMIT_S", SESSION_LIMIT_S)),
                      wheels=os.environ.get("GPU_SESSION_WHEELS", ".whl"))
    try:
        session.log(f"GPU session {session.started_at}: stages {', '.join(chosen)}; output in {session.out}; "
                    + (session.gpu or "no GPU: a rehearsal, the GPU parts say " + NO_GPU))
        for name in chosen:
            run_stage(session, name, RUNNERS[name])
        files = files_under(session.out)
        too_deep = [path for path in files if path.count(os.sep) > MAX_DEPTH]
        if len(files) > MAX_FILES or too_deep:
            session.log(f"gpu_session: {len(files)} files in {session.out} (at most {MAX_FILES} come back), too deep: "
                        f"{too_deep}: {files}")
            return 1
        summary = session.summary()
        session.log(f"gpu_session: {'done' if summary['passed'] else 'FAILED'} in {summary['seconds']:.0f} s; "
                    f"{len(files)} files in {session.out}: {', '.join(files)}")
        return 0 if summary["passed"] else 1
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
