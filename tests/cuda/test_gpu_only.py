"""What only a real GPU can show: CuPy arrays, cuBLAS, stream ordering and two backends at once.

Skipped without a GPU (the simulator has no CuPy, no cuBLAS and no streams). The end-to-end
tutorial run on the GPU is tests/test_training_end_to_end.py, parametrized over every backend.
"""
import numpy as np
import pytest

from mnist_gpu import model as mnist
from mnist_gpu.backends import get_backend
from mnist_gpu.evaluate import do_eval
from mnist_gpu.input_data import DataSet, read_data_sets
from mnist_gpu.steps import DeviceSplit, HostSteps

from backend_equivalence import near_ties
from helpers import needs_gpu

pytestmark = needs_gpu


def test_cuda_backend_holds_cupy_arrays(cuda_backend):
    import cupy

    assert isinstance(cuda_backend.empty((2, 2)), cupy.ndarray)
    assert not cuda_backend.simulated


@pytest.mark.parametrize("batch", [100, 1000])
@pytest.mark.parametrize("hidden1", [128, 1024])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_gemms_at_training_shapes(cuda_backend, numpy_backend, generator, batch, hidden1, trans_a, trans_b):
    """cuBLAS (row-major arrays, column-major library, strided-batched over 3 members, two calls for two learning
    rates) against NumPy, for matmul and matmul_sgd (the second member stopped: left exactly as it was)."""
    rows, inner, columns = (mnist.IMAGE_PIXELS, batch, hidden1) if trans_a else (batch, mnist.IMAGE_PIXELS, hidden1)
    a = generator.standard_normal((3, *((inner, rows) if trans_a else (rows, inner)))).astype(np.float32)
    b = generator.standard_normal((3, *((columns, inner) if trans_b else (inner, columns)))).astype(np.float32)
    out = cuda_backend.empty((3, rows, columns))
    cuda_backend.matmul(cuda_backend.asarray(a), cuda_backend.asarray(b), out, trans_a, trans_b)
    expected = np.empty((3, rows, columns), np.float32)
    numpy_backend.matmul(a, b, expected, trans_a, trans_b)
    np.testing.assert_allclose(cuda_backend.to_host(out), expected, rtol=1e-4, atol=1e-3)
    parameter = generator.standard_normal((3, rows, columns)).astype(np.float32)
    device_parameter, rates = cuda_backend.asarray(parameter), np.float32([0.01, 0.01, 0.03])
    active, before = np.int32([1, 0, 1]), parameter.copy()
    cuda_backend.matmul_sgd(cuda_backend.asarray(a), cuda_backend.asarray(b), device_parameter, rates,
                            cuda_backend.asarray(active), trans_a=trans_a, trans_b=trans_b)
    numpy_backend.matmul_sgd(a, b, parameter, rates, active, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(cuda_backend.to_host(device_parameter), parameter, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(cuda_backend.to_host(device_parameter)[1], before[1])


def training_run(backend, data_sets, steps, batch_size=100):
    """`steps` training steps on real MNIST with no host read in between; returns the model."""
    split = DeviceSplit(backend, data_sets.train)
    model = one_member(backend, batch_size)
    images, labels = backend.empty((1, batch_size, mnist.IMAGE_PIXELS)), backend.empty((1, batch_size), np.int32)
    order = np.random.default_rng(5).permutation(data_sets.train.num_examples)
    for step in range(steps):
        split.gather(backend, order[None, step * batch_size:(step + 1) * batch_size], images, labels)
        mnist.train_step(model, images, labels)
    return model


def one_member(backend, batch_size, variables=None):
    """A model of one member (seed 5's variables, or `variables`) at learning rate 0.01."""
    return mnist.Model(backend, variables or mnist.stacked([mnist.initial_variables(128, 32, seed=5)]), batch_size,
                       [0.01])


@pytest.fixture(scope="module")
def data_sets(mnist_dir):
    return read_data_sets(mnist_dir)


def test_fifty_steps_queued_without_a_host_sync_match_numpy(cuda_backend, numpy_backend, data_sets):
    """Stream ordering: every step is queued behind the last, and only the end is read back."""
    got = training_run(cuda_backend, data_sets, 50).host_variables()
    expected = training_run(numpy_backend, data_sets, 50).host_variables()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_evaluation_counts_over_a_whole_split_match_numpy(cuda_backend, numpy_backend, data_sets, capsys):
    """The same examples; the correct count within the split's near-ties of NumPy's (see near_ties)."""
    variables = training_run(numpy_backend, data_sets, 200).host_variables()
    counts = []
    for backend in (cuda_backend, numpy_backend):
        examples, correct = do_eval(one_member(backend, 100, variables), DeviceSplit(backend, data_sets.test))
        counts.append((examples, int(correct[0])))
    capsys.readouterr()
    test_set = data_sets.test
    images = np.empty((test_set.num_examples, mnist.IMAGE_PIXELS), np.float32)
    numpy_backend.gather_images(test_set.pixels, np.arange(test_set.num_examples), images)
    logits = mnist.inference(one_member(numpy_backend, test_set.num_examples, variables), images)[0]
    assert counts[0][0] == counts[1][0] == 10000
    assert abs(counts[0][1] - counts[1][1]) <= near_ties(logits, test_set.labels), counts


def test_two_backends_train_at_once_each_on_its_own_stream(numpy_backend, data_sets):
    """Steps of two models on two backends, interleaved: every CuPy op must stay on its backend's stream."""
    first, second = get_backend("cuda"), get_backend("cuda")
    runs = [training_run(backend, data_sets, 0) for backend in (first, second)]  # models, no steps yet
    split = {backend: DeviceSplit(backend, data_sets.train) for backend in (first, second)}
    buffers = {backend: (backend.empty((1, 100, mnist.IMAGE_PIXELS)), backend.empty((1, 100), np.int32))
               for backend in (first, second)}
    order = np.random.default_rng(5).permutation(data_sets.train.num_examples)
    for step in range(30):
        for model in runs:
            backend = model.backend
            images, labels = buffers[backend]
            split[backend].gather(backend, order[None, step * 100:(step + 1) * 100], images, labels)
            mnist.train_step(model, images, labels)
    expected = training_run(numpy_backend, data_sets, 30).host_variables()
    for model in runs:
        got = model.host_variables()
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_two_backends_alive_at_once_each_read_on_its_own_stream(numpy_backend, generator):
    first, second = get_backend("cuda"), get_backend("cuda")
    logits = generator.standard_normal((2, 257, 10)).astype(np.float32)
    labels = generator.integers(0, 10, (2, 257)).astype(np.int32)
    expected = numpy_backend.softmax_xent(logits, labels, np.empty((2, 257, 10), np.float32), np.ones(2, np.int32))
    for backend in (first, second):
        grad = backend.empty((2, 257, 10))
        losses = backend.softmax_xent(backend.asarray(logits), backend.asarray(labels), grad,
                                      backend.asarray(np.ones(2, np.int32)))
        np.testing.assert_allclose(backend.to_host(losses), expected, rtol=1e-5)
        np.testing.assert_array_equal(backend.to_host(backend.in_top_k(backend.asarray(logits),
                                                                       backend.asarray(labels[0]))),
                                      numpy_backend.in_top_k(logits, labels[0]))


def fresh_train_set(data_sets):
    return DataSet(data_sets.train.pixels, data_sets.train.labels, seed=5)


def step_program(backend, data_sets, last_step, graph, batch_size=100):
    return backend.step_program(one_member(backend, batch_size), DeviceSplit(backend, data_sets.train),
                                [fresh_train_set(data_sets)], last_step, graph)


def program_run(backend, data_sets, steps, graph, batch_size=100):
    """`steps` steps of the step program on real MNIST (TF's batch order, seed 5); returns (program, losses)."""
    program = step_program(backend, data_sets, steps, graph, batch_size)
    for step in range(steps):
        program.run(step)
    print(f"step program --cuda_graph {graph}, B={batch_size}: ran {program.describe()}")  # -s: the session's log
    return program, program.losses(steps - 200, steps)[:, 0].tolist()  # read at the end: the last 200 are in the ring


@pytest.mark.parametrize("batch_size", [100, 1000])
def test_graph_and_eager_programs_agree_bit_for_bit(cuda_backend, data_sets, batch_size):
    """The captured graph replays exactly the prepared eager step: same parameters and losses, to the bit."""
    eager, eager_losses = program_run(cuda_backend, data_sets, 300, "off", batch_size)
    graph, graph_losses = program_run(cuda_backend, data_sets, 300, "on", batch_size)
    assert graph.graph is not None and eager.graph is None
    assert graph_losses == eager_losses
    graph_variables = graph.model.host_variables()
    for name, value in eager.model.host_variables().items():
        np.testing.assert_array_equal(graph_variables[name], value, err_msg=name)


@pytest.mark.parametrize("graph", ["off", "on"])
def test_program_matches_the_numpy_backend_on_mnist(cuda_backend, numpy_backend, data_sets, graph):
    program, losses = program_run(cuda_backend, data_sets, 300, graph)
    model = one_member(numpy_backend, 100)
    reference = HostSteps(model, DeviceSplit(numpy_backend, data_sets.train), [fresh_train_set(data_sets)])
    for step in range(300):
        reference.run(step)
    expected_losses = reference.losses(100, 300)[:, 0]
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-3)
    expected = model.host_variables()
    for name, value in program.model.host_variables().items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("graph", ["off", "on"])
def test_program_steps_allocate_no_device_memory(cuda_backend, data_sets, graph):
    """CuPy's memory pools (device and pinned) hold exactly as much after 100 more steps."""
    import cupy

    program = step_program(cuda_backend, data_sets, 102, graph)
    for step in range(2):  # the first step chooses the mode (and captures the graph)
        program.run(step)
    cuda_backend.synchronize()
    pools = (cupy.get_default_memory_pool(), cupy.get_default_pinned_memory_pool())
    before = [pools[0].used_bytes(), pools[0].total_bytes(), pools[1].n_free_blocks()]
    for step in range(2, 102):
        program.run(step)
    cuda_backend.synchronize()
    assert [pools[0].used_bytes(), pools[0].total_bytes(), pools[1].n_free_blocks()] == before


LAUNCH_EVERY_KERNEL = """
import json
import numpy as np
from mnist_gpu import model as mnist
from mnist_gpu.backends import get_backend
from mnist_gpu.compile_report import cuda_kernels
from mnist_gpu.input_data import DataSet
from mnist_gpu.evaluate import do_eval
from mnist_gpu.steps import DeviceSplit

backend = get_backend("cuda")
generator = np.random.default_rng(0)
data = DataSet(generator.integers(0, 256, (300, mnist.IMAGE_PIXELS), dtype=np.uint8),
               generator.integers(0, 10, 300).astype(np.int32), seed=0)
split = DeviceSplit(backend, data)
model = mnist.Model(backend, mnist.stacked([mnist.initial_variables(128, 32, seed=0)]), 100, [0.01])
backend.step_program(model, split, [data], 1, "off").run(0)
do_eval(model, split)
misses = {name: sum(kernel.stats.cache_misses.values()) for (_, name), kernel in cuda_kernels().items()}
print(json.dumps(misses))
"""


def test_a_new_process_loads_every_kernel_from_numba_cache():
    """cuda.jit(cache=True): the second process to launch the kernels compiles none of them."""
    import json
    import subprocess
    import sys

    for _ in range(2):  # the first may compile (and save); the second must only load
        result = subprocess.run([sys.executable, "-c", LAUNCH_EVERY_KERNEL], capture_output=True, text=True,
                                check=True)
    misses = json.loads(result.stdout.splitlines()[-1])
    assert len(misses) >= 11 and not any(misses.values()), misses
