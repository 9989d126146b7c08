"""The CUDA step program (backends/cuda_program.py) of a population against the NumPy backend and against its own
members run alone, and what a step may not do.

In the simulator the program runs eagerly, each launch through the simulator; on a GPU the same
tests run its prepared launches and, where asked, its CUDA graph.
"""
import numpy as np
import pytest

from mnist_gpu import model as mnist
from mnist_gpu.backends import cuda_program
from mnist_gpu.errors import CudaGraphError
from mnist_gpu.input_data import DataSet
from mnist_gpu.steps import DeviceSplit, HostSteps

from backend_equivalence import SIMULATED

ROWS, BATCH, HIDDEN1, HIDDEN2 = 7, 3, 5, 4  # 7 rows, batches of 3: an epoch ends every ~2 steps
RATES = (0.1, 0.1, 0.05)  # three members, two sharing a learning rate: each member's own rate in the SGD kernel
GRAPH_MODES = ["off"] if SIMULATED else ["off", "on"]


def data_set(seed=11):
    generator = np.random.default_rng(11)
    return DataSet(generator.integers(0, 256, (ROWS, mnist.IMAGE_PIXELS), dtype=np.uint8),
                   generator.integers(0, mnist.NUM_CLASSES, ROWS).astype(np.int32), seed=seed)


def orders(members=3):
    """Each member's DataSet: the same rows, its own order."""
    return [data_set(seed=11 + member) for member in range(members)]


def initial_variables(members=3):
    stacked = []
    for member in range(members):
        variables = mnist.initial_variables(HIDDEN1, HIDDEN2, seed=3 + member)
        for name in variables:  # non-zero biases, so that a bias the program dropped would show
            if name.endswith("biases"):
                variables[name] = np.linspace(-0.1, 0.1 + member, variables[name].size, dtype=np.float32)
        stacked.append(variables)
    return mnist.stacked(stacked)


def program_for(backend, variables, member_orders, first_step, last_step, graph="off", notes=None, rates=RATES):
    model = mnist.Model(backend, variables, BATCH, list(rates)[:len(member_orders)], global_step=first_step)
    split = DeviceSplit(backend, data_set())
    return backend.step_program(model, split, member_orders, last_step, graph,
                                note=(notes.append if notes is not None else print))


@pytest.fixture
def small_window(monkeypatch):
    """A 4-step index window: refills every 4 steps, and a window that starts mid-ring wraps around it."""
    monkeypatch.setattr(cuda_program, "WINDOW_STEPS", 4)


@pytest.mark.parametrize("graph", GRAPH_MODES)
def test_program_matches_numpy_across_epoch_boundaries(cuda_backend, numpy_backend, small_window, graph):
    steps = 8  # 24 rows from 7: epochs end inside steps 2 and 4, and exactly where step 7 starts; a refill at 4
    program = program_for(cuda_backend, initial_variables(), orders(), 0, steps, graph)
    reference_orders = orders()
    reference = HostSteps(mnist.Model(numpy_backend, initial_variables(), BATCH, list(RATES)),
                          DeviceSplit(numpy_backend, data_set()), reference_orders)
    for step in range(steps):
        program.run(step)
        reference.run(step)
        np.testing.assert_allclose(program.losses(step, step + 1), reference.losses(step, step + 1), rtol=1e-5)
        for (order, fields), expected in zip(program.position(step), reference_orders, strict=True):
            expected_order, expected_fields = expected.position()
            np.testing.assert_array_equal(order, expected_order)
            assert fields == expected_fields, step
    assert all(order.epochs_completed == 3 for order in reference_orders)
    assert program.model.global_step == steps
    got, expected = program.model.host_variables(), reference.model.host_variables()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("members", [2, 3])
def test_each_member_of_the_program_is_its_own_program_of_one_bit_for_bit(cuda_backend, members):
    together = program_for(cuda_backend, initial_variables(members), orders(members), 0, 4)
    for step in range(4):
        together.run(step)
    losses, variables = together.losses(0, 4), together.model.host_variables()
    for member in range(members):
        alone = program_for(cuda_backend, {name: value[member:member + 1] for name, value in
                                           initial_variables(members).items()},
                            [orders(members)[member]], 0, 4, rates=[RATES[member]])
        for step in range(4):
            alone.run(step)
        np.testing.assert_array_equal(alone.losses(0, 4)[:, 0].view(np.uint32), losses[:, member].view(np.uint32))
        for name, value in alone.model.host_variables().items():
            np.testing.assert_array_equal(value[0].view(np.uint32), variables[name][member].view(np.uint32),
                                          err_msg=f"{name} of member {member}")


def test_a_member_whose_loss_is_not_finite_stops_and_the_others_train_on(cuda_backend):
    variables = initial_variables()
    variables["softmax_linear/biases"][1, 0] = np.inf  # member 1's logits are infinite from the first step
    program = program_for(cuda_backend, variables, orders(), 0, 3)
    for step in range(3):
        program.run(step)
    losses = program.losses(0, 3)
    assert not np.isfinite(losses[:, 1]).any() and np.isfinite(losses[:, [0, 2]]).all()
    np.testing.assert_array_equal(cuda_backend.to_host(program.model.active), [1, 0, 1])
    after = program.model.host_variables()
    for name, value in variables.items():  # member 1 did not move at all; the others did
        np.testing.assert_array_equal(after[name][1], value[1], err_msg=name)
    assert not np.array_equal(after["hidden1/weights"][0], variables["hidden1/weights"][0])


@pytest.mark.parametrize("kept", [[0, 1, 2], [0, 2]], ids=["resumed", "repacked"])
def test_a_program_continued_from_saved_state_repeats_the_unbroken_run_exactly(cuda_backend, small_window, kept):
    """Save after step 2 (the iterators already drew step 3's batches) and go on in a new program from the saved
    variables and data positions: every member (a resume), or members 0 and 2 of 3 (the trainer's repack,
    TrainingLoop.repack). The members kept have the same bits as in the unbroken program of 3."""
    unbroken = program_for(cuda_backend, initial_variables(), orders(), 0, 5)
    for step in range(5):
        unbroken.run(step)
    first = program_for(cuda_backend, initial_variables(), orders(), 0, 5)
    for step in range(3):
        first.run(step)
    variables, positions = first.model.host_variables(), first.position(2)
    kept_orders = [orders()[member] for member in kept]
    for order, member in zip(kept_orders, kept, strict=True):
        order.restore_position(*positions[member])
    continued = program_for(cuda_backend, {name: value[kept] for name, value in variables.items()}, kept_orders, 3, 5,
                            rates=[RATES[member] for member in kept])  # its window starts mid-ring: wraps
    for step in range(3, 5):
        continued.run(step)
    np.testing.assert_array_equal(continued.losses(3, 5).view(np.uint32),
                                  unbroken.losses(3, 5)[:, kept].view(np.uint32))
    for name, value in unbroken.model.host_variables().items():
        np.testing.assert_array_equal(continued.model.host_variables()[name].view(np.uint32),
                                      value[kept].view(np.uint32), err_msg=name)


class CountingModule:
    """An array module (NumPy in the simulator, CuPy on a GPU) whose every function call is recorded: a step that
    makes, copies or converts an array by any route other than the backend's methods shows up here."""

    def __init__(self, module, calls):
        self.module, self.calls = module, calls

    def __getattr__(self, name):
        value = getattr(self.module, name)
        if not callable(value) or isinstance(value, type):  # submodules, dtypes and classes pass through
            return value

        def counted(*arguments, **keywords):
            self.calls.append(f"array module: {name}")
            return value(*arguments, **keywords)
        return counted


def test_a_step_allocates_nothing_copies_nothing_in_and_never_waits(cuda_backend, monkeypatch):
    """Counts the backend's allocation, host-to-device copy and synchronisation entry points during steps, and every
    call into its array module."""
    monkeypatch.setattr(cuda_program, "WINDOW_STEPS", 2)
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 5)
    calls = []

    def counting(kind, function):
        def counted(*arguments, **keywords):
            calls.append(kind)
            return function(*arguments, **keywords)
        return counted

    for name, kind in (("empty", "allocation"), ("zeros", "allocation"), ("asarray", "allocation"),
                       ("upload", "host-to-device"), ("to_host", "synchronisation"),
                       ("synchronize", "synchronisation")):
        monkeypatch.setattr(cuda_backend, name, counting(kind, getattr(cuda_backend, name)))
    monkeypatch.setattr(cuda_backend, "xp", CountingModule(cuda_backend.xp, calls))
    per_step = []
    for step in range(5):
        calls.clear()
        program.run(step)
        per_step.append(list(calls))
    refills = {0: 1, 2: 1, 4: 1}  # one upload of the index window every 2 steps, nothing else
    assert per_step == [["host-to-device"] * refills.get(step, 0) for step in range(5)]
    calls.clear()
    program.losses(4, 5)
    assert calls == ["synchronisation"]  # reading the losses is the one wait


def test_the_loss_ring_keeps_each_steps_losses_until_it_wraps(cuda_backend, monkeypatch):
    """A ring of 4 steps (LOSS_RING_STEPS is 256, above the trainer's read every 100 steps) over 6 steps: each step's
    losses stay readable for 4 steps, later steps take the slots of the oldest, which are then refused."""
    assert cuda_program.LOSS_RING_STEPS > 100
    monkeypatch.setattr(cuda_program, "LOSS_RING_STEPS", 4)
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 7)
    each = []
    for step in range(6):
        program.run(step)
        each.append(program.losses(step, step + 1)[0])
        np.testing.assert_array_equal(program.losses(max(0, step - 3), step + 1), each[-4:])  # the last 4, in order
    assert len({tuple(losses) for losses in each}) == 6  # every step wrote losses of its own
    with pytest.raises(ValueError, match="no longer"):
        program.losses(1, 6)  # step 1's slot holds step 5's losses
    with pytest.raises(ValueError, match="not yet"):
        program.losses(5, 7)
    with pytest.raises(ValueError, match="next step is 6"):
        program.run(7)


@pytest.mark.skipif(not SIMULATED, reason="on a GPU the graph is captured")
def test_the_simulator_runs_the_program_eagerly_and_refuses_cuda_graph_on(cuda_backend):
    notes = []
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 2, "auto", notes)
    assert program.describe() == "not started yet"
    program.run(0)
    assert notes == ["the training step runs eagerly, not as a CUDA graph: Numba's CUDA simulator cannot capture "
                     "a CUDA graph"]
    assert program.describe() == "eagerly, launches through Numba's CUDA simulator"
    strict = program_for(cuda_backend, initial_variables(), orders(), 0, 2, "on")
    with pytest.raises(CudaGraphError, match="--cuda_graph on: Numba's CUDA simulator cannot capture"):
        strict.run(0)


def test_the_cuda_backends_steps_are_its_program(cuda_backend):
    """backend.step_program (what the trainer calls): the cuda backend's program, its notes where it is told."""
    notes = []
    model = mnist.Model(cuda_backend, initial_variables(), BATCH, list(RATES))
    steps = cuda_backend.step_program(model, DeviceSplit(cuda_backend, data_set()), orders(), 2, "auto",
                                      note=notes.append)
    assert isinstance(steps, cuda_program.StepProgram)
    assert (steps.last_step, steps.graph_mode) == (2, "auto")
    steps.run(0)
    assert len(notes) == 1 and notes[0].startswith("the training step runs ")


class StandInGraph:
    """What the program gets back from a capture, for the choice it then makes: launch() replays the step
    eagerly, and `tamper`, when given, then changes a variable, as a graph that computed differently would."""

    def __init__(self, program, tamper=None):
        self.program, self.tamper, self.launches = program, tamper, 0

    def launch(self, stream):
        self.launches += 1
        self.program._run_eagerly()
        if self.tamper:
            self.tamper(self.program)


def nudge_hidden1_weights(program):
    weights = program.model.variables["hidden1/weights"]
    with program.backend.on_stream:  # on a GPU, in order with the step's work
        weights[0, 0, 0] += 1e-3


@pytest.fixture(scope="module")
def two_eager_steps(cuda_backend):
    """(losses, variables) of the eager program's first two steps."""
    eager = program_for(cuda_backend, initial_variables(), orders(), 0, 2)
    for step in range(2):
        eager.run(step)
    return eager.losses(0, 2), eager.model.host_variables()


@pytest.mark.parametrize("tamper, mode", [(None, "auto"), (None, "on"), (nudge_hidden1_weights, "auto"),
                                          (nudge_hidden1_weights, "on")])
def test_the_graph_is_used_only_when_its_first_step_matches_the_eager_one(cuda_backend, monkeypatch, two_eager_steps,
                                                                          tamper, mode):
    """The choice after a capture (the capture itself stood in for): the graph when it agrees to the bit;
    else eager with a note (auto) or a stop (on), and in every case the first step taken exactly once."""
    eager_losses, eager_variables = two_eager_steps
    notes = []
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 2, mode, notes)
    graph = StandInGraph(program, tamper)
    monkeypatch.setattr(program, "_why_no_graph", lambda: None)
    monkeypatch.setattr(program, "_capture", lambda: graph)
    if tamper and mode == "on":
        with pytest.raises(CudaGraphError, match="--cuda_graph on: CudaGraphError: the graph's step differs from the "
                                                 "eager step in hidden1/weights$"):
            program.run(0)
        for name, value in initial_variables().items():  # put back as it was before the step
            np.testing.assert_array_equal(program.model.host_variables()[name], value, err_msg=name)
        return
    for step in range(2):
        program.run(step)
    losses = program.losses(0, 2)
    if tamper:
        assert notes == ["the training step runs eagerly, not as a CUDA graph: CudaGraphError: the graph's step "
                         "differs from the eager step in hidden1/weights"]
        assert program.graph is None and graph.launches == 1
    else:
        assert notes == ["the training step runs as one CUDA graph (its first step matched the eager step bit for "
                         "bit)"]
        assert program.graph is graph and graph.launches == 2  # the check's replay, then step 1's
    np.testing.assert_array_equal(losses, eager_losses)
    for name, value in eager_variables.items():
        np.testing.assert_array_equal(program.model.host_variables()[name], value, err_msg=name)


@pytest.mark.skipif(SIMULATED, reason="the simulator's way: test_the_simulator_runs_the_program_eagerly...")
@pytest.mark.parametrize("graph", GRAPH_MODES)
def test_the_program_says_how_its_steps_run(cuda_backend, graph):
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 2, graph)
    program.run(0)
    expected = {"off": "eagerly, launches prepared", "on": "as one CUDA graph (launches prepared)"}[graph]
    assert program.describe() == expected


def test_launches_that_cannot_be_prepared_run_through_numba_and_say_so(cuda_backend, monkeypatch, two_eager_steps):
    """Another numba-cuda release moved the internals PreparedLaunch uses: its own launches still run, and the
    program says so (in the run's log, check's lines and the benchmarks), instead of timing them as prepared."""
    notes = []
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 2, "off", notes)

    def moved(launch):
        raise AttributeError("'_Kernel' object has no attribute '_prepare_args'")

    monkeypatch.setattr(cuda_program, "PreparedLaunch", moved)
    draw_window = program._draw_window

    def draw_then_prepare_as_on_a_gpu(step):  # in the simulator: its window upload first, then the GPU's path
        draw_window(step)
        monkeypatch.setattr(cuda_backend, "simulated", False)

    monkeypatch.setattr(program, "_draw_window", draw_then_prepare_as_on_a_gpu)
    for step in range(2):
        program.run(step)
    losses = program.losses(0, 2)
    reason = "through Numba's dispatcher (preparing them failed: AttributeError: '_Kernel' object has no attribute " \
             "'_prepare_args')"
    assert notes == [f"kernel launches go {reason}"]
    assert program.describe() == f"eagerly, launches {reason}"
    np.testing.assert_array_equal(losses, two_eager_steps[0])


def test_a_failed_capture_reports_its_first_cause(cuda_backend, monkeypatch):
    """Ending a capture that an operation broke fails too (CUDA invalidates it): that must not hide the cause."""
    notes = []
    program = program_for(cuda_backend, initial_variables(), orders(), 0, 2, "auto", notes)

    class BrokenCapture:  # what CuPy's stream does once an operation failed during capture
        capturing = False

        def begin_capture(self):
            self.capturing = True

        def end_capture(self):
            self.capturing = False
            raise RuntimeError("cudaErrorStreamCaptureInvalidated: operation failed due to a previous error during "
                               "capture")

    class NotCapturable:
        def run(self):
            raise ValueError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")

    stream = BrokenCapture()
    monkeypatch.setattr(cuda_backend, "stream", stream)
    program.operations = [NotCapturable()]
    with pytest.raises(ValueError, match="cudaErrorStreamCaptureUnsupported"):
        program._capture()
    assert not stream.capturing  # ended all the same
    assert notes == ["ending the failed CUDA graph capture failed too: RuntimeError: "
                     "cudaErrorStreamCaptureInvalidated: operation failed due to a previous error during capture"]
