"""`mnist-gpu check`: one line per check, exit 0 when every usable backend agrees with NumPy, 1 otherwise."""
import numpy as np
import pytest

from mnist_gpu.backends.cpu_backend import CpuBackend
from mnist_gpu.backends.gpu_probe import gpu_available
from mnist_gpu.check import OP_CASES, TRAINING_STEPS

from helpers import needs_cuda_packages, run_main


@needs_cuda_packages  # without them the cuda line names the missing package, not the missing GPU
def test_check_passes_here_and_says_why_cuda_is_not_usable(capsys):
    code, lines, _ = run_main(capsys, "check")
    assert code == 0, "\n".join(lines)
    assert lines[0].startswith("mnist-gpu check")
    assert lines[1].startswith("versions: Python ") and "NumPy " in lines[1] and "Numba " in lines[1]
    assert lines[2].startswith("libraries: NVVM ") and "; cuBLAS " in lines[2] and "; CUDA runtime " in lines[2]
    assert "backend numpy: usable (the reference" in lines[3]
    assert "backend cpu: usable" in lines
    if not gpu_available():
        assert any(line.startswith("backend cuda: not usable: ") and "pip install '.[cuda13]'" in line
                   for line in lines)
    cpu_lines = [line for line in lines if line.startswith("  cpu ")]
    assert [line[9:33].strip() for line in cpu_lines] == [case.name for case in OP_CASES] + \
        [f"{TRAINING_STEPS} training steps"]
    assert all(line[34:41] == "ok     " for line in cpu_lines), cpu_lines
    assert lines[-1] == "all checks passed on numpy, cpu" + (", cuda" if gpu_available() else "")


def test_a_wrong_op_fails_its_line_and_the_exit_code(capsys, monkeypatch):
    def off_by_a_little(self, x, bias, out):
        np.add(x, bias[:, None, :] + np.float32(1e-3), out=out)
        np.maximum(out, 0, out=out)

    monkeypatch.setattr(CpuBackend, "bias_relu", off_by_a_little)
    code, lines, _ = run_main(capsys, "check")
    assert code == 1
    failed = [line for line in lines if "FAILED" in line]
    # The op itself, and the training steps it is part of.
    assert failed[0].split()[:3] == ["cpu", "bias_relu", "FAILED"] and "differs from numpy by up to 0.001" in failed[0]
    assert f"{TRAINING_STEPS} training steps" in failed[1]
    assert lines[-1] == "2 checks FAILED"


def test_a_crashing_op_is_a_failed_line_not_a_traceback(capsys, monkeypatch):
    def broken(self, logits, labels, k=1):
        raise RuntimeError("kernel launch failed\nsecond line")

    monkeypatch.setattr(CpuBackend, "in_top_k", broken)
    code, lines, _ = run_main(capsys, "check")
    assert code == 1
    assert any(line.split()[:3] == ["cpu", "in_top_k", "FAILED"] and line.endswith(
        "raised RuntimeError: kernel launch failed") for line in lines)


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_every_case_can_fail(case, numpy_backend, generator):
    """Each case compares something that a wrong op changes: perturbing any result is a mismatch."""
    from mnist_gpu.check import mismatch, run_case

    inputs = case.make_inputs(generator, 3, 17, 33)
    expected = run_case(case, numpy_backend, inputs)
    for index, value in enumerate(expected):
        wrong = list(expected)
        wrong[index] = value + 1 if np.isscalar(value) else np.asarray(value) + (1 if value.dtype.kind != "f" else 1e-2)
        assert mismatch(case, wrong, expected) is not None, (case.name, index)
    assert mismatch(case, expected, expected) is None


def test_check_prints_the_step_programs_notes_and_how_it_ran(capsys, monkeypatch):
    """On a GPU check also runs the step program, eager and as a CUDA graph: what the program notes (a graph it
    could not use, launches it could not prepare) and how it ran are check's lines, not dropped."""
    from mnist_gpu.steps import HostSteps

    class NotingSteps(HostSteps):  # the cpu backend's steps, standing in for a step program with something to say
        def __init__(self, model, split, learning_rate, last_step, graph, note):
            super().__init__(model, split, learning_rate)
            self.graph = graph
            note(f"a note from the program ({graph})")

        def describe(self):
            return f"the way the {self.graph} program ran"

    monkeypatch.setattr(CpuBackend, "step_program", lambda self, model, split, learning_rate, last_step, graph,
                        note: NotingSteps(model, split, learning_rate, last_step, graph, note))
    monkeypatch.setattr(CpuBackend, "graph_modes", ("off", "on"))
    code, lines, _ = run_main(capsys, "check")
    assert code == 0, "\n".join(lines)
    for graph, title in (("off", "eager program"), ("on", "CUDA graph")):
        title = f"{TRAINING_STEPS} steps, {title}"
        index = lines.index(f"  cpu    {title:<24} note: a note from the program ({graph})")
        result = lines[index + 1]
        assert result.startswith(f"  cpu    {title:<24} ok      same variables as numpy; ")
        assert result.endswith(f" us a step; ran the way the {graph} program ran")
