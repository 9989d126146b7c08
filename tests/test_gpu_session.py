"""The GPU session's harness (bench/gpu_session.py) and its wheel check (bench/wheel_check.py), without a GPU.

The whole session runs as a rehearsal in CI (.ci/run: Python 3.12, the carried wheels installed
as on the GPU machine, jaxtyping present). Here: what must hold for the 15 minutes a GPU is lent,
with real processes. A stage that fails or runs past its time is recorded (killed with every
process it started) and the next one still runs; the session's time caps every stage; the
summary is on disk after every stage; NVVM is looked for in a CUDA toolkit where numba-cuda
finds none; wheels that the image's Python 3.12 would refuse are refused here.
"""
import json
import sys
import time

import pytest

from conftest import REPOSITORY


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
    assert "unknown stage becnh; the stages are setup, environment, check, tests, tutorial, bench" in \
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
    assert over.startswith("wheels and checkout together 64.00 MiB, over the 64 MiB that may travel")


def test_every_stage_can_use_its_whole_limit_within_the_session_time(gpu_session):
    """8 minutes of the 15 a GPU is lent: a second run after a fix still fits, machine start and transfers included."""
    assert sum(gpu_session.LIMITS[name] for name in gpu_session.STAGES) <= gpu_session.SESSION_LIMIT_S <= 8 * 60 - 10


@pytest.mark.slow
def test_with_a_gpu_claimed_the_gpu_stages_run_their_commands_and_record_how_they_fail(gpu_session, tmp_path):
    """The stages' GPU branches, which the rehearsal skips, run here with a GPU claimed where there is none: each
    runs its real commands, which fail in their own words (no CuPy), and the harness records each stage so."""
    (tmp_path / "wheels").mkdir()
    session = gpu_session.Session(str(tmp_path / "out"), wheels=str(tmp_path / "wheels"))
    session.gpu = "GPU 0: claimed by this test"
    try:
        for name in ("setup", "environment", "tests", "tutorial", "bench"):
            gpu_session.run_stage(session, name, gpu_session.RUNNERS[name])
    finally:
        session.close()
    results = {result.name: result for result in session.results}
    assert (results["setup"].status, results["setup"].detail.split(";")[0]) == \
        ("failed", "missing Python packages: cupy")
    assert results["environment"].status == "passed" and "GPU none usable (CuPy is not installed)" in \
        results["environment"].detail
    assert results["tests"].status == "failed" and " errors" in results["tests"].detail  # the backend cannot load
    tutorial = results["tutorial"]
    assert tutorial.status == "failed"
    for way in ("cuda graph", "cuda eager"):
        assert f"{way}: failed (mnist-gpu: error: --backend cuda needs CuPy, which is not installed" in tutorial.detail
    assert "cpu: " in tutorial.detail and "test precision 0.90" in tutorial.detail
    assert results["bench"].status == "failed" and "no benchmark ran" in results["bench"].detail
    log = (tmp_path / "out" / "session.log").read_text()
    assert "nvidia-smi --query-gpu=name,driver_version,compute_cap" in log
