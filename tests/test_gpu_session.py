"""The GPU session's harness (bench/gpu_session.py) and its wheel check (bench/wheel_check.py), without a GPU.

The whole session runs as a rehearsal in CI (.ci/run: Python 3.12, a GPU image's versions, the
carried wheels installed as on the GPU machine, jaxtyping present). Here, with real processes:
a stage that fails or runs past its time is recorded (killed with every process it started, each
wait after a kill bounded) and the next one still runs; the session's time caps every stage; the
summary is on disk after every stage; a kernel that does not compile fails the compile stage; the
environment stage stops at once without libdevice; on a GPU the check stage passes only when cuda
matches; NVVM is looked for in a CUDA toolkit where numba-cuda finds none; the bounds on the time
and on the result files are options whose defaults are today's values; wheels that a Python 3.12
image would refuse are refused here.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from mnist_gpu.check import OP_CASES

from conftest import REPOSITORY
from helpers import needs_packages


@pytest.fixture
def gpu_session(monkeypatch):
    monkeypatch.syspath_prepend(REPOSITORY)  # bench/ is not installed: it lives in the checkout
    from bench import gpu_session

    return gpu_session


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def python(code):
    return [sys.executable, "-c", code]


def stage(command):
    """A stage that runs one command and passes when it exits 0."""
    def runner(session):
        finished = session.run(command)
        return ("passed" if finished.ok else "timed out" if finished.code is None else "failed"), finished.last_line
    return runner


def test_a_failed_and_a_timed_out_stage_are_recorded_and_the_next_still_runs(gpu_session, monkeypatch, tmp_path):
    monkeypatch.setitem(gpu_session.LIMITS, "fails", 30)
    monkeypatch.setitem(gpu_session.LIMITS, "hangs", 2)
    monkeypatch.setitem(gpu_session.LIMITS, "passes", 30)
    session = gpu_session.Session(str(tmp_path / "out"), limit_seconds=60)
    pid_file = tmp_path / "grandchild"
    hang = ("import subprocess, sys, time\n"  # a process that started another (pytest's subprocesses, say)
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "print('started', flush=True)\ntime.sleep(60)")
    start = time.monotonic()
    try:
        gpu_session.run_stage(session, "fails", stage(python("import sys; print('a broken stage'); sys.exit(3)")))
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())  # written after every stage
        assert [stage["status"] for stage in summary["stages"]] == ["failed"]
        gpu_session.run_stage(session, "hangs", stage(python(hang)))
        gpu_session.run_stage(session, "passes", stage(python("print('ran after the others')")))
    finally:
        session.close()
    assert time.monotonic() - start < 20
    assert [(result.name, result.status, result.detail) for result in session.results] == [
        ("fails", "failed", "a broken stage"), ("hangs", "timed out", "started"),
        ("passes", "passed", "ran after the others")]
    deadline = time.monotonic() + 10
    while alive(int(pid_file.read_text())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(int(pid_file.read_text())), "the timed-out stage's own child process still runs"
    log = (tmp_path / "out" / "session.log").read_text()
    assert "a broken stage\n(exit code 3)\n=== fails: failed" in log and "(killed after 2 s: the time limit)" in log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [stage["status"] for stage in summary["stages"]] == ["failed", "timed out", "passed"]
    assert not summary["passed"]
    assert "| hangs | timed out |" in (tmp_path / "out" / "summary.md").read_text()


def test_the_session_time_caps_every_stage(gpu_session, monkeypatch, tmp_path):
    """However long a stage may take, the whole session ends within its limit (8 minutes on the H200)."""
    monkeypatch.setitem(gpu_session.LIMITS, "long", 300)
    monkeypatch.setitem(gpu_session.LIMITS, "later", 300)
    session = gpu_session.Session(str(tmp_path), limit_seconds=2)
    start = time.monotonic()
    try:
        gpu_session.run_stage(session, "long", stage(python("import time; time.sleep(60)")))
        gpu_session.run_stage(session, "later", stage(python("print('never')")))
    finally:
        session.close()
    assert time.monotonic() - start < 15
    assert [(result.status, result.limit_seconds <= 2) for result in session.results] == [("timed out", True)] * 2
    assert "(not started: the stage's time is up)" in (tmp_path / "session.log").read_text()


def test_an_unknown_stage_is_refused_before_anything_runs(gpu_session, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    assert gpu_session.main(["check", "becnh"]) == 2
    assert "unknown stage becnh; the stages are setup, environment, compile, check, tests, tutorial, bench" in \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_setup_says_which_packages_are_missing_and_is_recorded_failed(gpu_session, monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_session, "NEEDED_MODULES", ("numpy", "no_such_module_here"))
    (tmp_path / "wheels").mkdir()
    session = gpu_session.Session(str(tmp_path / "out"), wheels=str(tmp_path / "wheels"))
    try:
        gpu_session.run_stage(session, "setup", gpu_session.setup)
    finally:
        session.close()
    (result,) = session.results
    assert result.status == "failed" and result.detail.startswith("missing Python packages: no_such_module_here; ")


def test_nvvm_is_taken_from_a_cuda_toolkit_when_numba_cuda_finds_none(gpu_session, monkeypatch, tmp_path):
    """The GPU image has no NVVM wheel; its CUDA toolkit (nvcc's) has libNVVM: CUDA_HOME is set for later stages."""
    toolkit = tmp_path / "cuda-13.0"
    (toolkit / "nvvm" / "lib64").mkdir(parents=True)
    (toolkit / "nvvm" / "lib64" / "libnvvm.so.4").write_bytes(b"")
    monkeypatch.setattr(gpu_session, "toolkits", lambda: [str(tmp_path / "no-toolkit"), str(toolkit)])
    session = gpu_session.Session(str(tmp_path / "out"))
    session.environment.pop("CUDA_HOME", None)
    session.environment.pop("CUDA_PATH", None)
    answers = []

    def nvvm_lookup(module, *arguments, seconds=None):  # numba-cuda's answer: none, then one under CUDA_HOME
        assert (module, arguments) == ("bench.environment", ("--nvvm",))
        found = "CUDA_HOME" in session.environment
        answers.append(found)
        return gpu_session.Finished(0 if found else 1, [f"NVVM: {'2.0 at X' if found else 'not found (...)'}"], 0.1)

    monkeypatch.setattr(session, "python_module", nvvm_lookup)
    try:
        where = gpu_session.locate_nvvm(session)
    finally:
        session.close()
    assert session.environment["CUDA_HOME"] == str(toolkit) and answers == [False, True]
    assert where == f"NVVM: 2.0 at X (CUDA_HOME={toolkit} set by the session)"


def test_the_wheel_check_refuses_what_python_3_12_would_not_install(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(REPOSITORY)
    from bench.wheel_check import problems_and_sizes

    wanted = ["nvmath-python==1.0.0", "tensorboardX==2.6.5"]

    def folder(*names):
        path = tmp_path / str(len(list(tmp_path.iterdir())))
        path.mkdir()
        for name in names:
            (path / name).write_bytes(b"x" * 1000)
        return str(path)

    good = ("nvmath_python-1.0.0-cp312-cp312-manylinux_2_28_x86_64.whl", "tensorboardx-2.6.5-py3-none-any.whl")
    problems, sizes = problems_and_sizes(folder(*good), 10 ** 6, 64 * 2 ** 20, wanted)
    assert problems == [] and [size for _, size in sizes] == [1000, 1000]
    cp311 = "nvmath_python-1.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"  # what a plain pip download here brings
    (problem,) = problems_and_sizes(folder(cp311, good[1]), 0, 64 * 2 ** 20, wanted)[0]
    assert problem.startswith(f"{cp311}: its tags cp311-cp311-manylinux_2_28_x86_64 do not install on CPython 3.12")
    too_new = "nvmath_python-1.0.0-cp312-cp312-manylinux_2_41_x86_64.whl"
    assert problems_and_sizes(folder(too_new, good[1]), 0, 64 * 2 ** 20, wanted)[0][0].startswith(too_new)
    two = problems_and_sizes(folder(*good, "tensorboardx-2.6.2-py3-none-any.whl"), 0, 64 * 2 ** 20, wanted)[0]
    assert two == ["tensorboardx: 2.6.2, 2.6.5 in " + str(tmp_path / "3") + ", expected 2.6.5"]
    assert problems_and_sizes(folder(good[0]), 0, 64 * 2 ** 20, wanted)[0] == \
        [f"tensorboardx==2.6.5: no wheel in {tmp_path / '4'}"]
    (over,) = problems_and_sizes(folder(*good), 64 * 2 ** 20 - 1000, 64 * 2 ** 20, wanted)[0]
    assert over == "wheels and checkout together 64.00 MiB, over the 64 MiB that may be copied to the GPU machine"


def test_every_stage_can_use_its_whole_limit_within_the_default_time_budget(gpu_session):
    """The default budget is 470 s (under 8 minutes, so that a second run after a fix fits in a quarter hour)."""
    assert sum(gpu_session.LIMITS[name] for name in gpu_session.STAGES) <= gpu_session.SESSION_LIMIT_S <= 8 * 60 - 10
    assert set(gpu_session.LIMITS) == set(gpu_session.STAGES) == set(gpu_session.RUNNERS)



@pytest.mark.slow
@needs_packages("numba_cuda", "nvmath", "cuda.core", "cuda.bindings", "tensorboardX", "crc32c")
def test_with_a_gpu_claimed_the_gpu_stages_run_their_commands_and_record_how_they_fail(gpu_session, tmp_path):
    """The stages' GPU branches, which the rehearsal skips, run here with a GPU claimed where there is none: each
    runs its real commands, which fail in their own words (no CuPy), and the harness records each stage so."""
    (tmp_path / "wheels").mkdir()
    # Four times the default budget, so four times each stage's limit: this machine is slower than a GPU machine.
    session = gpu_session.Session(str(tmp_path / "out"), 4 * gpu_session.SESSION_LIMIT_S,
                                  wheels=str(tmp_path / "wheels"))
    session.gpu = "GPU 0: claimed by this test"
    try:
        for name in gpu_session.STAGES:
            gpu_session.run_stage(session, name, gpu_session.RUNNERS[name])
    finally:
        session.close()
    results = {result.name: result for result in session.results}
    assert (results["setup"].status, results["setup"].detail.split(";")[0]) == \
        ("failed", "missing Python packages: cupy")
    environment = results["environment"]
    assert environment.status == "passed" and "GPU none usable (CuPy is not installed)" in environment.detail
    for fact in ("; nvJitLink ", "; libdevice ", "; NVVM "):
        assert fact in environment.detail
    assert results["compile"].status == "passed" and "compiles (sm_75/80/90): no spill" in results["compile"].detail
    # mnist-gpu check itself passes (numpy and cpu match), but where a GPU is listed cuda must be usable and match
    assert results["check"].status == "failed"
    assert results["check"].detail.startswith("a GPU is listed, but backend cuda: not usable: --backend cuda needs "
                                              "CuPy, which is not installed")
    assert results["tests"].status == "failed" and " errors" in results["tests"].detail  # the backend cannot load
    tutorial = results["tutorial"]
    assert tutorial.status == "failed"
    for way in ("cuda graph", "cuda eager", "cuda sweep of 1024"):
        assert f"{way}: failed (mnist-gpu: error: --backend cuda needs CuPy, which is not installed" in tutorial.detail
    assert "cpu: " in tutorial.detail and "test precision 0.90" in tutorial.detail
    assert results["bench"].status == "failed" and "no benchmark ran" in results["bench"].detail
    log = (tmp_path / "out" / "session.log").read_text()
    assert "nvidia-smi --query-gpu=name,driver_version,compute_cap" in log


# -- the tutorial stage reads a sweep's results table ---------------------------------------------------------------
def test_the_tutorial_stage_reads_what_a_sweep_prints(gpu_session, mnist_dir, tmp_path):
    """The 1024-member sweep is summed up from its results table: here a small real sweep's rows are found."""
    result = subprocess.run([sys.executable, "-m", "mnist_gpu", "sweep", "--seed", "1-3", "--learning_rate",
                             "0.01,0.5", "--max_steps", "30", "--hidden1", "8", "--hidden2", "4", "--backend", "numpy",
                             "--input_data_dir", mnist_dir, "--log_dir", str(tmp_path / "sweep")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode in (0, 3), result.stderr
    rows = [match.groupdict() for match in map(gpu_session.SWEEP_ROW.fullmatch, result.stdout.splitlines()) if match]
    assert [row["members"] for row in rows] == ["3", "3"], result.stdout
    assert all(0 <= float(row["ensemble"]) <= 1 and row["test"].count(" ± ") == 1 for row in rows)


# -- a kernel that does not compile fails the compile stage -----------------------------------------------------
@pytest.mark.slow
@needs_packages("numba_cuda", "nvmath", "cuda.bindings")
def test_a_kernel_whose_types_break_fails_the_compile_stage(gpu_session, monkeypatch, tmp_path):
    """A copy of the package whose SGD kernel gives a variable a float and a str: the simulator runs it (Python never
    takes that branch), so the step program's launches are recorded as ever, and Numba's typing for NVVM refuses it."""
    checkout = tmp_path / "checkout"
    for folder in ("mnist_gpu", "kernels"):
        shutil.copytree(os.path.join(REPOSITORY, folder), checkout / folder, symlinks=True,  # mnist_gpu/kernels
                        ignore=shutil.ignore_patterns("__pycache__", "*.gz"))
    kernel = checkout / "kernels" / "sgd_update.py"
    line = "            parameters[member, column] -= learning_rates[member] * gradients[member, column]\n"
    assert kernel.read_text().count(line) == 1
    kernel.write_text(kernel.read_text().replace(line, (
        "            scale = learning_rates[member]\n"
        "            if index < 0:\n"
        "                scale = 'never'\n"
        "            parameters[member, column] -= scale * gradients[member, column]\n")))
    monkeypatch.setattr(gpu_session, "REPOSITORY", str(checkout))  # the session runs what is in this checkout
    session = gpu_session.Session(str(tmp_path / "out"), 4 * gpu_session.SESSION_LIMIT_S)  # a slower machine
    try:
        gpu_session.run_stage(session, "compile", gpu_session.compile_kernels)
    finally:
        session.close()
    (result,) = session.results
    assert result.status == "failed", result.detail
    assert result.detail.startswith("3 problems, the first: sgd_update_kernel sm_75: compile error: TypingError"), \
        result.detail
    problems = [line for line in (tmp_path / "out" / "session.log").read_text().splitlines()
                if gpu_session.COMPILE_PROBLEM.fullmatch(line)]
    assert [problem.split(":")[0] for problem in problems] == [f"sgd_update_kernel sm_{cc}" for cc in (75, 80, 90)]


# -- the environment stage stops at once without libdevice -------------------------------------------------------
@needs_packages("numba_cuda")
def test_without_libdevice_the_probe_stops_after_the_toolchain(monkeypatch, capsys):
    monkeypatch.syspath_prepend(REPOSITORY)
    from numba.cuda import cuda_paths

    from bench import environment

    real = cuda_paths.get_cuda_paths()
    missing = dict(real, libdevice=type(real["libdevice"])(by="<unknown>", info=None))
    monkeypatch.setattr(cuda_paths, "get_cuda_paths", lambda: missing)
    assert environment.main([]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Python", "nvcc", "nvJitLink", "NVVM", "libdevice", "stopped"]
    assert lines[4].startswith("libdevice: not found (numba-cuda looks in a conda environment, the NVVM wheel, ")
    assert environment.main(["--toolkit"]) == 1
    monkeypatch.setattr(cuda_paths, "get_cuda_paths", lambda: real)
    assert environment.main(["--toolkit"]) == 0


def test_the_environment_stage_fails_at_once_when_the_probe_stops(gpu_session, monkeypatch, tmp_path):
    session = gpu_session.Session(str(tmp_path / "out"))
    session.gpu = "GPU 0: claimed by this test"
    ran = []
    monkeypatch.setattr(session, "run", lambda arguments, seconds=None: ran.append(arguments))
    monkeypatch.setattr(session, "python_module", lambda module, *arguments, seconds=None: gpu_session.Finished(
        1, ["nvcc: not found", "libdevice: not found (...): no kernel can compile", "stopped: without libdevice"], 0.1))
    try:
        gpu_session.run_stage(session, "environment", gpu_session.environment)
    finally:
        session.close()
    assert [(result.status, result.detail) for result in session.results] == [("failed", "stopped: without libdevice")]
    assert ran == []  # neither nvidia-smi nor anything else after it


# -- on a GPU, check passes only when cuda is usable and matches ---------------------------------------------------
def check_lines_with_cuda():
    """What `mnist-gpu check` prints on a GPU where everything matches: its real lines here (numpy and cpu), with
    the cpu backend's lines also as cuda's, and cuda's step-program lines in the form of its training line."""
    from mnist_gpu.check import TRAINING_STEPS, run_check

    lines = []
    assert run_check(lines.append) == 0
    cpu = [line for line in lines if line.startswith("  cpu    ")]
    training = next(line for line in cpu if line.startswith(f"  cpu    {TRAINING_STEPS} training steps "))
    programs = [training.replace(f"{TRAINING_STEPS} training steps".ljust(24), title.ljust(24))
                for title in (f"{TRAINING_STEPS} steps, eager program", f"{TRAINING_STEPS} steps, CUDA graph")]
    assert all(line != training for line in programs)
    lines = ["backend cuda: usable" if line.startswith("backend cuda: ") else line for line in lines
             if not line.startswith("all checks")]
    return lines + [line.replace("  cpu    ", "  cuda   ") for line in cpu + programs] + \
        ["all checks passed on numpy, cpu, cuda"]


@pytest.fixture(scope="module")
def cuda_check_lines():
    return check_lines_with_cuda()


@pytest.mark.parametrize("change, expected", [
    (None, ("passed", f"cuda usable; {len(OP_CASES)} ops and 3 training checks match NumPy")),
    ("cuda not usable", ("failed", "a GPU is listed, but backend cuda: not usable: CuPy sees no CUDA device")),
    ("an op missing", ("failed", "cuda did not match NumPy in: softmax_xent")),
    ("the graph missing", ("failed", "cuda did not match NumPy in: 100 steps, CUDA graph")),
])
def test_on_a_gpu_check_passes_only_when_cuda_is_usable_and_every_check_matches(
        gpu_session, monkeypatch, tmp_path, cuda_check_lines, change, expected):
    lines = list(cuda_check_lines)
    if change == "cuda not usable":
        lines = ["backend cuda: not usable: CuPy sees no CUDA device" if line == "backend cuda: usable" else line
                 for line in lines if not line.startswith("  cuda ")]
    elif change == "an op missing":
        lines = [line for line in lines if not line.startswith("  cuda   softmax_xent ")]
    elif change == "the graph missing":
        lines = [line for line in lines if not line.startswith("  cuda   100 steps, CUDA graph ")]
    session = gpu_session.Session(str(tmp_path / "out"))
    session.gpu = "GPU 0: claimed by this test"
    monkeypatch.setattr(session, "python_module", lambda module, *arguments, seconds=None: gpu_session.Finished(
        0, lines, 1.0))
    try:
        gpu_session.run_stage(session, "check", gpu_session.check)
    finally:
        session.close()
    assert [(result.status, result.detail) for result in session.results] == [expected]


# -- every wait after a kill is bounded ----------------------------------------------------------------------------
TRACER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
seized = libc.ptrace(0x4206, int(sys.argv[2]), None, None) == 0  # PTRACE_SEIZE; it never waits for the tracee
open(sys.argv[1], "w").write(f"{os.getpid()} {int(seized)}")
time.sleep(120)
"""
HELD_BY_A_DEBUGGER = f"""
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {TRACER!r}, sys.argv[1], str(os.getpid())], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not (os.path.exists(sys.argv[1]) and open(sys.argv[1]).read()):  # a debugger outside the command's group
    time.sleep(0.05)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_command_that_has_not_ended_after_sigkill_is_left_behind_after_a_bounded_wait(gpu_session, monkeypatch,
                                                                                        tmp_path):
    """A stopped debugger holds the command: SIGTERM stops it (the tracer is told, and never resumes it); SIGKILL
    ends it, but its parent cannot reap it until the tracer does. A wait without a bound would hang the session
    here; it waits KILL_WAIT_S, says so, and the next stage still runs."""
    monkeypatch.setattr(gpu_session, "TERM_WAIT_S", 1)
    monkeypatch.setattr(gpu_session, "KILL_WAIT_S", 2)
    monkeypatch.setitem(gpu_session.LIMITS, "held", 3)
    monkeypatch.setitem(gpu_session.LIMITS, "after", 30)
    tracer_file = tmp_path / "tracer"
    session = gpu_session.Session(str(tmp_path / "out"), limit_seconds=60)
    start = time.monotonic()
    try:
        gpu_session.run_stage(session, "held", stage(python(HELD_BY_A_DEBUGGER) + [str(tracer_file)]))
        elapsed = time.monotonic() - start
        tracer, seized = map(int, tracer_file.read_text().split())
        try:
            if not seized:
                pytest.skip("ptrace is not permitted here, so no process can be held after SIGKILL")
            gpu_session.run_stage(session, "after", stage(python("print('ran after it')")))
        finally:
            os.kill(tracer, signal.SIGKILL)
    finally:
        session.close()
    assert elapsed < 3 + 1 + 2 + 5, elapsed  # the stage's limit, the two bounded waits, a margin
    ((pid, command),) = session.left_behind
    assert f"(pid {pid} had not ended 2 s after SIGKILL: left behind)" in (tmp_path / "out" / "session.log").read_text()
    assert [(result.name, result.status) for result in session.results] == [("held", "timed out"), ("after", "passed")]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["left_behind"] == [f"pid {pid}: {command}"]
    deadline = time.monotonic() + 10  # with the tracer gone, the command can be reaped at last
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:  # reaped already, by subprocess's own bookkeeping
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"pid {pid} could not be reaped after its tracer ended")


# -- the time budget and the bounds on the result files are options, today's values their defaults --------------------
def test_the_options_default_to_todays_values(gpu_session):
    options = gpu_session.parser().parse_args([])
    assert (options.time_limit, options.max_files, options.max_depth, options.max_file_mib, options.max_total_mib,
            options.wheels, options.out, options.stages) == (470, 8, 2, 16, 64, ".whl", None, [])
    with pytest.raises(SystemExit):
        gpu_session.parser().parse_args(["--time-limit", "0"])


def test_each_bound_on_the_result_files_is_checked(gpu_session, tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_bytes(b"x")
    (tmp_path / "large.bin").write_bytes(b"x" * (3 * 2 ** 19))  # 1.5 MiB
    assert gpu_session.result_problems(str(tmp_path)) == [f"a{os.sep}b{os.sep}c{os.sep}deep.txt: more than 2 folders "
                                                           "down"]
    assert gpu_session.result_problems(str(tmp_path), max_files=1, max_depth=3, max_file_mib=1, max_total_mib=1.4) == [
        "2 files, more than 1", "large.bin: 1.50 MiB, more than 1 MiB", "1.50 MiB together, more than 1.4 MiB"]
    assert gpu_session.result_problems(str(tmp_path), max_files=2, max_depth=3, max_file_mib=2, max_total_mib=2) == []


def run_session(gpu_session, out, *options):
    """`bash bench/gpu_session.sh setup OPTIONS` in this process (setup always runs; no wheels); (exit code, log)."""
    wheels = out.parent / "no-wheels"
    wheels.mkdir(exist_ok=True)
    code = gpu_session.main(["setup", "--out", str(out), "--wheels", str(wheels), *options])
    return code, (out / "session.log").read_text()


def test_the_bounds_given_are_the_bounds_checked(gpu_session, tmp_path):
    out = tmp_path / "out"
    (out / "a" / "b" / "c").mkdir(parents=True)
    (out / "a" / "b" / "c" / "large.bin").write_bytes(b"x" * (3 * 2 ** 19))  # 3 folders down, 1.5 MiB
    code, log = run_session(gpu_session, out)
    assert code == 1 and f"exceed their bounds: a{os.sep}b{os.sep}c{os.sep}large.bin: more than 2 folders down\n" in log
    code, log = run_session(gpu_session, out, "--max-depth", "3", "--max-files", "3", "--max-file-mib", "1",
                            "--max-total-mib", "1.4")
    bounds = log.splitlines()[-1]
    assert code == 1 and "folders down" not in bounds and "4 files, more than 3" in bounds
    assert "large.bin: 1.50 MiB, more than 1 MiB" in bounds and "MiB together, more than 1.4 MiB" in bounds
    code, log = run_session(gpu_session, out, "--max-depth", "3")
    assert "exceed their bounds" not in log.splitlines()[-1] and log.splitlines()[-1].startswith("gpu_session: ")


def test_a_larger_time_budget_lengthens_every_stage_in_proportion(gpu_session, monkeypatch, tmp_path):
    limits = []
    monkeypatch.setitem(gpu_session.RUNNERS, "setup", lambda session: ("passed", str(session.stage_deadline)))
    monkeypatch.setattr(gpu_session, "run_stage", lambda session, name, runner, run=gpu_session.run_stage: (
        run(session, name, runner), limits.append(session.results[-1].limit_seconds)))
    run_session(gpu_session, tmp_path / "out", "--time-limit", str(2 * gpu_session.SESSION_LIMIT_S))
    assert limits == [2 * gpu_session.LIMITS["setup"]]
    run_session(gpu_session, tmp_path / "out", "--time-limit", "300")  # smaller: the stage keeps its own limit
    assert limits[1] == gpu_session.LIMITS["setup"]


def test_the_time_budget_given_caps_the_session(gpu_session, tmp_path):
    start = time.monotonic()
    run_session(gpu_session, tmp_path / "out", "--time-limit", "1.5")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["limit_seconds"] == 2 and summary["stages"][0]["limit_seconds"] <= 1.5
    assert time.monotonic() - start < 1.5 + gpu_session.TERM_WAIT_S + 5  # a stage cut short, killed, recorded


def test_without_out_the_results_go_to_a_new_folder_of_this_users(gpu_session, monkeypatch, tmp_path):
    monkeypatch.delenv("OUT", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "no-wheels").mkdir()
    gpu_session.main(["setup", "--wheels", str(tmp_path / "no-wheels")])
    (out,) = [path for path in tmp_path.iterdir() if path.name.startswith("gpu_session-out-")]
    assert out.stat().st_mode & 0o777 == 0o700 and out.stat().st_uid == os.getuid()
    assert f"output in {out};" in (out / "session.log").read_text().splitlines()[0]


def test_an_nvidia_smi_that_does_not_answer_makes_a_gpu_session_within_its_bound(gpu_session, monkeypatch, tmp_path):
    """A wedged driver: `nvidia-smi -L` hangs. The session does not wait past its bound, and does not take the
    machine for one without a GPU (a rehearsal would pass): its GPU stages run, and fail in their own words."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\nexec sleep 60\n")
    (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpu_session, "NVIDIA_SMI_WAIT_S", 1)
    start = time.monotonic()
    session = gpu_session.Session(str(tmp_path / "out"))
    session.close()
    assert time.monotonic() - start < 1 + 5
    assert session.gpu == "nvidia-smi -L did not answer within 1 s"
