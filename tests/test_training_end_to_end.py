"""The tutorial on real MNIST, end to end on every backend: its log format and its published accuracy."""
import math
import re
import tempfile

import pytest

from mnist_gpu.cli import main

from helpers import needs_gpu

STEP_LINE = re.compile(r"Step (\d+): loss = (\d+\.\d\d) \((\d+\.\d{3}) sec\)")
EVAL_LINE = re.compile(r"  Num examples: (\d+)  Num correct: (\d+)  Precision @ 1: (\d\.\d{4})")


def train(capsys, mnist_dir, tmp_path, *flags, backend="numpy"):
    log_dir = tempfile.mkdtemp(dir=tmp_path)  # a fresh run each call
    code = main(["--input_data_dir", mnist_dir, "--log_dir", log_dir, "--backend", backend, *flags])
    assert code == 0
    return capsys.readouterr().out.splitlines()


def evaluations(lines):
    """[(title, examples, correct, precision)] in printed order."""
    found = []
    for title, line in zip(lines, lines[1:], strict=False):
        match = EVAL_LINE.fullmatch(line)
        if match:
            found.append((title, int(match[1]), int(match[2]), float(match[3])))
    return found


@pytest.mark.parametrize("backend", ["numpy", "cpu", pytest.param("cuda", marks=needs_gpu)])
def test_tutorial_defaults_reach_the_published_accuracy(capsys, mnist_dir, tmp_path, backend):
    lines = train(capsys, mnist_dir, tmp_path, "--seed", "1", backend=backend)
    steps = [STEP_LINE.fullmatch(line) for line in lines if line.startswith("Step")]
    assert all(steps) and [int(match[1]) for match in steps] == list(range(0, 2000, 100))
    assert abs(float(steps[0][2]) - math.log(10)) < 0.05  # about ln 10 before any learning
    evals = evaluations(lines)
    assert [(title, examples) for title, examples, _, _ in evals] == [
        ("Training Data Eval:", 55000), ("Validation Data Eval:", 5000), ("Test Data Eval:", 10000)] * 2
    for _, examples, correct, precision in evals:
        assert precision == pytest.approx(correct / examples, abs=5e-5)
    test_at_1000, test_at_2000 = evals[2][3], evals[5][3]
    assert 0.84 <= test_at_1000 <= 0.89
    assert 0.89 <= test_at_2000 <= 0.91  # the tutorial's published range


@pytest.mark.slow
def test_higher_learning_rate_reaches_97_5_percent(capsys, mnist_dir, tmp_path):
    # The cpu backend: the same training as numpy's (see the step-for-step test below), 1.4x faster.
    lines = train(capsys, mnist_dir, tmp_path, "--seed", "2", "--learning_rate", "0.1", "--max_steps", "11000",
                  backend="cpu")
    final_test = evaluations(lines)[-1]
    assert final_test[0] == "Test Data Eval:" and final_test[3] >= 0.975


def test_same_seed_repeats_exactly_and_another_seed_does_not(capsys, mnist_dir, tmp_path):
    def run(seed):
        lines = train(capsys, mnist_dir, tmp_path, "--seed", seed, "--max_steps", "300")
        return [line.split(" (")[0] for line in lines]  # drop the timings

    first, again, other = run("5"), run("5"), run("6")
    assert first == again
    assert first != other


def test_batch_sizes_that_do_not_divide_the_data(capsys, mnist_dir, tmp_path):
    lines = train(capsys, mnist_dir, tmp_path, "--seed", "1", "--batch_size", "257", "--max_steps", "250")
    examples = [examples for _, examples, _, _ in evaluations(lines)]
    assert examples == [55000 // 257 * 257, 5000 // 257 * 257, 10000 // 257 * 257]


def test_cpu_backend_follows_the_numpy_run_step_for_step(capsys, mnist_dir, tmp_path):
    reference = train(capsys, mnist_dir, tmp_path, "--seed", "9", "--max_steps", "1000")
    fast = train(capsys, mnist_dir, tmp_path, "--seed", "9", "--max_steps", "1000", backend="cpu")
    # Float32 rounding differs between the backends, so compare the numbers, not the strings.
    for reference_line, fast_line in zip(reference, fast, strict=True):
        if reference_line.startswith("Step"):
            assert float(fast_line.split("= ")[1][:4]) == pytest.approx(float(reference_line.split("= ")[1][:4]),
                                                                        abs=0.0101)
        elif reference_line.startswith("  Num"):
            assert abs(int(EVAL_LINE.fullmatch(fast_line)[2]) - int(EVAL_LINE.fullmatch(reference_line)[2])) <= 10


def test_evaluation_does_not_move_the_training_iterator(mnist_dir, capsys):
    from mnist_gpu import model as mnist
    from mnist_gpu.backends import get_backend
    from mnist_gpu.evaluate import do_eval
    from mnist_gpu.input_data import read_data_sets
    from mnist_gpu.steps import DeviceSplit

    data_sets = read_data_sets(mnist_dir, seed=3)
    data_sets.train.next_batch(100)
    order, position = data_sets.train.position()
    order, state = order.copy(), repr(position)
    backend = get_backend("numpy")
    model = mnist.Model(backend, mnist.stacked([mnist.initial_variables(8, 4, seed=0)]), 1000, [0.01])
    examples, correct = do_eval(model, DeviceSplit(backend, data_sets.train))
    assert examples == 55000 and 0 <= correct[0] <= 55000
    after_order, after_position = data_sets.train.position()
    assert repr(after_position) == state and (after_order == order).all()
    capsys.readouterr()
