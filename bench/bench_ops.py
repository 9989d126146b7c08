"""Per-op timings: each op at the tutorial's shapes (B=100) and larger, NumPy vs cpu vs CUDA in one group.

Every op takes the member axis [K, ...] (model.py); here K = 1, the tutorial's run (bench_population.py
times K members).

Inputs are built (and JIT-compiled, and warmed up) outside the timed function; CUDA variants
synchronise inside it.
"""
import numpy as np
import pytest

from bench.workloads import BACKENDS, backend_or_skip, training_set

BATCHES = (100, 1000, 10000)
HIDDEN = (128, 1024)


def timed(benchmark, backend, operation):
    def run():
        operation()
        backend.synchronize()

    run()  # compile and warm up outside the timing
    benchmark(run)


def uniform(backend, shape, seed=0, low=-1.0):
    generator = np.random.default_rng(seed)
    return backend.asarray(generator.uniform(low, 1.0, shape).astype(np.float32))


# Element-wise and reduction ops on a [1, B, H] activation: name -> call(backend, x, y, out [1, B, H],
# column_out [1, H]).
HIDDEN_LAYER_OPS = {
    "bias_relu": lambda backend, x, y, out, column_out: backend.bias_relu(x, y[:, 0], out),
    "bias_grad": lambda backend, x, y, out, column_out: backend.bias_grad(x, column_out),
    "relu_backward_bias_grad": lambda backend, x, y, out, column_out:
        backend.relu_backward_bias_grad(x, y, out, column_out),
}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("op", HIDDEN_LAYER_OPS)
def test_hidden_layer_op(benchmark, backend_name, batch, hidden, op):
    benchmark.group = f"{op} B={batch} H={hidden}"
    backend = backend_or_skip(backend_name)
    x, y = uniform(backend, (1, batch, hidden)), uniform(backend, (1, batch, hidden), 1)
    out, column_out = backend.empty((1, batch, hidden)), backend.empty((1, hidden))
    call = HIDDEN_LAYER_OPS[op]
    timed(benchmark, backend, lambda: call(backend, x, y, out, column_out))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
def test_softmax_xent(benchmark, backend_name, batch):
    benchmark.group = f"softmax_xent B={batch} C=10"
    backend = backend_or_skip(backend_name)
    logits, grad = uniform(backend, (1, batch, 10)), backend.empty((1, batch, 10))
    labels = backend.asarray((np.arange(batch) % 10)[None], dtype=np.int32)
    active = backend.asarray(np.ones(1, np.int32))
    timed(benchmark, backend, lambda: backend.softmax_xent(logits, labels, grad, active))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
def test_in_top_k(benchmark, backend_name, batch):
    benchmark.group = f"in_top_k B={batch} C=10"
    backend = backend_or_skip(backend_name)
    logits = uniform(backend, (1, batch, 10))
    labels = backend.asarray(np.arange(batch) % 10, dtype=np.int32)
    timed(benchmark, backend, lambda: int(backend.to_host(backend.in_top_k(logits, labels, 1))[0]))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("hidden1", HIDDEN)
def test_sgd_update(benchmark, backend_name, hidden1):
    parameters = 784 * hidden1 + hidden1 + hidden1 * 32 + 32 + 32 * 10 + 10
    benchmark.group = f"sgd_update P={parameters} (H1={hidden1})"
    backend = backend_or_skip(backend_name)
    flat, grad = uniform(backend, (1, parameters)), uniform(backend, (1, parameters), 1)
    rates, active = np.float32([1e-6]), backend.asarray(np.ones(1, np.int32))
    timed(benchmark, backend, lambda: backend.sgd_update(flat, grad, rates, active))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
def test_gather_images(benchmark, backend_name, batch):
    """A fresh random batch each call, as in training (a repeated one would sit in cache)."""
    benchmark.group = f"gather_images B={batch} D=784 from N=55000 uint8"
    backend = backend_or_skip(backend_name)
    pixels, _ = training_set(backend)
    generator = np.random.default_rng(0)
    batches = [generator.permutation(55000)[:batch][None] for _ in range(64)]
    out = backend.empty((1, batch, 784))
    calls = iter(range(10 ** 9))
    timed(benchmark, backend, lambda: backend.gather_images(pixels, batches[next(calls) % 64], out))


MATMULS = {  # name: (a shape, b shape, trans_a, trans_b) with H1=128, H2=32
    "images@W1": ((None, 784), (784, 128), False, False),
    "images.T@grad_hidden1": ((None, 784), (None, 128), True, False),
    "grad_hidden2@W2.T": ((None, 32), (128, 32), False, True),
}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("product", MATMULS)
def test_matmul(benchmark, backend_name, batch, product):
    a_shape, b_shape, trans_a, trans_b = MATMULS[product]
    a_shape, b_shape = tuple(batch if size is None else size for size in a_shape), \
        tuple(batch if size is None else size for size in b_shape)
    benchmark.group = f"matmul {product} B={batch}"
    backend = backend_or_skip(backend_name)
    a, b = uniform(backend, (1, *a_shape)), uniform(backend, (1, *b_shape), 1)
    rows = a_shape[1] if trans_a else a_shape[0]
    columns = b_shape[0] if trans_b else b_shape[1]
    out = backend.empty((1, rows, columns))
    timed(benchmark, backend, lambda: backend.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b))
