"""`mnist-gpu check`: what to run first on a new machine, a GPU machine above all.

It prints the versions that matter and where the CUDA libraries were found, says for every
backend whether it is usable here and why not, and for each usable backend runs every op against
the NumPy backend (the spec) at the tutorial's shapes, 100 training steps against NumPy (on a GPU
also the step program, eager and as a CUDA graph, each saying how it ran), and a short timing of
each op. One line per check, and one per note the step program makes; the exit code is 0 when
every usable backend passes, 1 otherwise.

OP_CASES, one per op of the backend interface, are also what tests/backend_equivalence.py runs
at odd shapes on every backend: one definition of "this op agrees with the spec".
Shapes: B batch, D=784, H hidden units, C=10.
"""
import itertools
import platform
import statistics
import time
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from . import model as mnist
from . import numba_cache
from .backends import BACKEND_NAMES, get_backend
from .backends.gpu_probe import why_no_cuda_device
from .errors import BackendUnavailable

TUTORIAL_BATCH, TUTORIAL_HIDDEN, CHECK_MEMBERS = 100, 128, 3
TRAINING_STEPS = 100
TIMING_CALLS = 20


@dataclass(frozen=True)
class OpCase:
    """One op: how to make host inputs for K members, B rows and width H, and how to call it.

    `call(backend, inputs)` receives the inputs as the backend's arrays (indices and learning rates
    stay on the host, as the trainer passes them) and returns the op's results: arrays it wrote
    and arrays it returned.
    """

    name: str
    make_inputs: object  # (generator, members, batch, width) -> {name: host array}
    call: object  # (backend, inputs) -> tuple of results
    exact: bool = False  # element-wise ops must match bit for bit; sums and GEMMs to rounding
    tutorial_width: int = TUTORIAL_HIDDEN  # the width the tutorial runs it at (gathers: a row of D pixels)


def _floats(generator, shape, scale=1.0):
    return (generator.standard_normal(shape) * scale).astype(np.float32)


def _rates(members):
    """Each member's learning rate, some shared (as a sweep's seeds share theirs)."""
    return np.array([0.01, 0.01, 0.1, 0.003, 0.1][:members] + [0.05] * max(0, members - 5), np.float32)


def _active(members):
    """Which members train: every third one stopped (the SGD ops must leave it exactly as it is)."""
    return np.arange(members, dtype=np.int32) % 3 != 2


def _activation_pair(generator, members, batch, width):
    # About half the activations exactly zero, as after a ReLU.
    return {"grad": _floats(generator, (members, batch, width)),
            "activation": np.maximum(_floats(generator, (members, batch, width)), 0)}


def _logits_and_labels(generator, members, batch, width):
    return {"logits": _floats(generator, (members, batch, mnist.NUM_CLASSES), 3.0),
            "labels": generator.integers(0, mnist.NUM_CLASSES, (members, batch)).astype(np.int32),
            "shared_labels": generator.integers(0, mnist.NUM_CLASSES, batch).astype(np.int32),
            "active": _active(members)}


def _gather_inputs(generator, members, batch, width):
    rows = 2 * batch + 3
    pixels = generator.integers(0, 256, (rows, width), dtype=np.uint8)
    pixels[0, :3] = (0, 1, 255)[:width]  # the ends of the scale, in the first row gathered
    indices = generator.integers(0, rows, (members, batch))
    indices[0, 0] = 0
    return {"table": _floats(generator, (rows, width)), "pixels": pixels,
            "row_labels": generator.integers(0, mnist.NUM_CLASSES, rows).astype(np.int32), "indices": indices}


def _gemm_inputs(trans_a, trans_b, shared=False):
    """The model's three GEMM forms: images @ W [K, B, H]; images^T @ grad [K, D, H]; grad @ W^T [K, B, D]; and
    (shared) evaluation's images [B, D], the same for every member, @ W."""
    def make(generator, members, batch, width):
        pixels = mnist.IMAGE_PIXELS
        rows, inner, columns = (pixels, batch, width) if trans_a else (batch, width, pixels) if trans_b else \
            (batch, pixels, width)
        a_shape = (inner, rows) if trans_a else (rows, inner)
        return {"a": _floats(generator, a_shape if shared else (members, *a_shape)),
                "b": _floats(generator, (members, *((columns, inner) if trans_b else (inner, columns)))),
                "parameter": _floats(generator, (members, rows, columns)), "rates": _rates(members),
                "active": _active(members)}
    return make


def _matmul(trans_a, trans_b):
    def call(backend, inputs):
        out = backend.empty(inputs["parameter"].shape)
        backend.matmul(inputs["a"], inputs["b"], out, trans_a, trans_b)
        return (out,)
    return call


def _matmul_sgd(trans_a, trans_b):
    def call(backend, inputs):
        backend.matmul_sgd(inputs["a"], inputs["b"], inputs["parameter"], inputs["rates"], inputs["active"], trans_a,
                           trans_b)
        return (inputs["parameter"],)
    return call


def _unary(operation):
    """An op of x [K, B, H] and bias [K, H] writing out [K, B, H]."""
    def call(backend, inputs):
        out = backend.empty(inputs["x"].shape)
        operation(backend)(inputs["x"], inputs["bias"], out)
        return (out,)
    return call


def _x_and_bias(generator, members, batch, width):
    return {"x": _floats(generator, (members, batch, width)), "bias": _floats(generator, (members, width))}


def _bias_grad(backend, inputs):
    out = backend.empty((inputs["grad"].shape[0], inputs["grad"].shape[2]))
    backend.bias_grad(inputs["grad"], out)
    return (out,)


def _relu_backward_bias_grad(backend, inputs):
    shape = inputs["grad"].shape
    masked, bias_grad = backend.empty(shape), backend.empty((shape[0], shape[2]))
    backend.relu_backward_bias_grad(inputs["grad"], inputs["activation"], masked, bias_grad)
    return masked, bias_grad


def _softmax_xent(backend, inputs):
    grad = backend.empty(inputs["logits"].shape)
    active = inputs["active"]
    losses = backend.softmax_xent(inputs["logits"], inputs["labels"], grad, active)
    return grad, losses, active


def _in_top_k(backend, inputs):
    return tuple(backend.in_top_k(inputs["logits"], inputs["shared_labels"], k) for k in (1, 2))


def _sgd_update(backend, inputs):
    backend.sgd_update(inputs["parameter"], inputs["grad"], inputs["rates"], inputs["active"])
    return (inputs["parameter"],)


def _sgd_inputs(generator, members, batch, width):
    return {"parameter": _floats(generator, (members, batch * width + 1)),
            "grad": _floats(generator, (members, batch * width + 1)), "rates": _rates(members),
            "active": _active(members)}


def _gather_rows(backend, inputs):
    indices = inputs["indices"]
    rows, labels = backend.empty((*indices.shape, inputs["table"].shape[1])), backend.empty(indices.shape, np.int32)
    backend.gather_rows(inputs["table"], indices, rows)
    backend.gather_rows(inputs["row_labels"], indices, labels)
    shared = backend.empty(indices.shape[1], np.int32)  # evaluation's rows, the same for every member
    backend.gather_rows(inputs["row_labels"], indices[0], shared)
    return rows, labels, shared


def _gather_images(backend, inputs):
    indices = inputs["indices"]
    out, shared = backend.empty((*indices.shape, inputs["pixels"].shape[1])), \
        backend.empty((indices.shape[1], inputs["pixels"].shape[1]))
    backend.gather_images(inputs["pixels"], indices, out)
    backend.gather_images(inputs["pixels"], indices[0], shared)
    return out, shared


OP_CASES = [
    OpCase("gather_rows", _gather_inputs, _gather_rows, exact=True, tutorial_width=mnist.IMAGE_PIXELS),
    OpCase("gather_images", _gather_inputs, _gather_images, exact=True, tutorial_width=mnist.IMAGE_PIXELS),
    OpCase("matmul", _gemm_inputs(False, False), _matmul(False, False)),
    OpCase("matmul shared a", _gemm_inputs(False, False, shared=True), _matmul(False, False)),
    OpCase("matmul trans_a", _gemm_inputs(True, False), _matmul(True, False)),
    OpCase("matmul trans_b", _gemm_inputs(False, True), _matmul(False, True)),
    OpCase("matmul_sgd", _gemm_inputs(False, False), _matmul_sgd(False, False)),
    OpCase("matmul_sgd trans_a", _gemm_inputs(True, False), _matmul_sgd(True, False)),
    OpCase("matmul_sgd trans_b", _gemm_inputs(False, True), _matmul_sgd(False, True)),
    OpCase("bias_relu", _x_and_bias, _unary(lambda backend: backend.bias_relu), exact=True),
    OpCase("bias_add", _x_and_bias, _unary(lambda backend: backend.bias_add), exact=True),
    OpCase("bias_grad", lambda generator, members, batch, width: {"grad": _floats(generator, (members, batch, width))},
           _bias_grad),
    OpCase("relu_backward_bias_grad", _activation_pair, _relu_backward_bias_grad),
    OpCase("softmax_xent", _logits_and_labels, _softmax_xent),
    OpCase("in_top_k", _logits_and_labels, _in_top_k, exact=True),
    OpCase("sgd_update", _sgd_inputs, _sgd_update),
]


HOST_INPUTS = ("indices", "rates")  # what the trainer passes as host arrays


def to_backend(backend, inputs):
    """Fresh backend copies of host inputs (ops write some in place); batch row indices and learning rates stay on
    the host; a boolean array becomes the backend's int32 (a member's `active`)."""
    return {name: value.copy() if name in HOST_INPUTS else
            backend.asarray(value.astype(np.int32) if value.dtype == bool else value.copy())
            for name, value in inputs.items()}


def run_case(case, backend, inputs):
    """The case's results on `backend`, as host values."""
    results = case.call(backend, to_backend(backend, inputs))
    return [backend.to_host(value) for value in results]


def mismatch(case, got, expected):
    """None when `got` agrees with the spec's `expected`, else what differs, in a few words."""
    for index, (value, reference) in enumerate(zip(got, expected, strict=True)):
        value, reference = np.asarray(value), np.asarray(reference)
        if value.shape != reference.shape:
            return f"result {index} has shape {value.shape}, expected {reference.shape}"
        if case.exact:
            equal = np.array_equal(value, reference, equal_nan=True)
        else:  # float32 sums of up to D=784 terms, added in another order; the absolute slack is relative to the
            # result's scale (a softmax gradient at batch 10000 is at most 1e-4: a fixed atol of 1e-4 passed zeros)
            finite = np.abs(reference[np.isfinite(reference)])
            scale = float(finite.max()) if finite.size else 0.0
            equal = np.allclose(value, reference, rtol=1e-4, atol=1e-5 * scale, equal_nan=True)
        if not equal:
            worst = np.nanmax(np.abs(value.astype(np.float64) - reference)) if value.size else 0
            return f"result {index} differs from numpy by up to {worst:.3g}"
    return None


def versions():
    """{component: version or why it is missing}."""
    found = {"Python": platform.python_version()}
    for label, packages in (("NumPy", ["numpy"]), ("Numba", ["numba"]), ("numba-cuda", ["numba-cuda"]),
                            ("cuda-core", ["cuda-core"]), ("cuda-bindings", ["cuda-bindings"]),
                            ("cuda-pathfinder", ["cuda-pathfinder"]),
                            ("CuPy", ["cupy-cuda13x", "cupy-cuda12x", "cupy"]), ("nvmath-python", ["nvmath-python"])):
        installed = [metadata.version(package) for package in packages if _installed(package)]
        found[label] = installed[0] if installed else "not installed"
    try:
        from mnist_gpu.kernels import numba_cuda

        found["NVVM"] = numba_cuda.nvvm()[0]
    except Exception as error:  # noqa: BLE001 - any failure to find or load libNVVM is reported, not raised
        found["NVVM"] = f"not found ({type(error).__name__})"
    if why_no_cuda_device() is None:  # the GPU is named even where a package the cuda backend needs is missing
        import cupy

        runtime = cupy.cuda.runtime
        found["CUDA driver"] = str(runtime.driverGetVersion())
        found["CUDA runtime"] = str(runtime.runtimeGetVersion())
        properties = runtime.getDeviceProperties(0)
        found["GPU"] = f"{properties['name'].decode()} (compute capability {properties['major']}.{properties['minor']})"
    else:
        found["GPU"] = "none usable"
    return found


def libraries():
    """{library: where it was loaded from and how it was found, or why not}.

    NVVM as numba-cuda finds it (it compiles the kernels); cuBLAS and the CUDA runtime as
    cuda-pathfinder finds them (nvmath-python loads cuBLAS through it, numba-cuda the runtime).
    Either searches site-packages first, then CUDA_HOME / CUDA_PATH.
    """
    found = {}
    try:
        from mnist_gpu.kernels import numba_cuda

        _, path, how = numba_cuda.nvvm()
        found["NVVM"] = f"{path} ({how})"
    except Exception as error:  # noqa: BLE001 - reported, not raised
        found["NVVM"] = f"not found ({_first_line(error)})"
    try:
        from cuda import pathfinder
    except ImportError:
        pathfinder = None
    for label, name in (("cuBLAS", "cublas"), ("CUDA runtime", "cudart")):
        if pathfinder is None:
            found[label] = "not looked for (cuda-pathfinder is not installed)"
            continue
        try:
            library = pathfinder.load_nvidia_dynamic_lib(name)
            found[label] = f"{library.abs_path} ({library.found_via})"
        except Exception as error:  # noqa: BLE001 - reported, not raised
            found[label] = f"not found ({_first_line(error)})"
    return found


def _first_line(error):
    return f"{type(error).__name__}: " + (str(error).splitlines() or [""])[0]


def _installed(package):
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def time_call(function):
    """Median seconds of a few calls, after one warm-up call (compilation) outside the timing."""
    function()
    times = []
    for _ in range(TIMING_CALLS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_mismatch(backend, reference, graph=None, batch=TUTORIAL_BATCH, steps=TRAINING_STEPS, note=print,
                      members=CHECK_MEMBERS):
    """`steps` training steps of a population on both backends from the same start and batches.

    graph None: the backend's ops one by one, as the numpy and cpu backends train (HostSteps);
    "off" or "on": its step program, eager or as a CUDA graph (a backend that has one), its notes
    going to `note`. Returns (None if they agree else what differs, the backend's stepper: it can
    take 1 + TIMING_CALLS more steps, for timing).
    """
    from .input_data import DataSet
    from .steps import DeviceSplit, HostSteps

    generator = np.random.default_rng(0)
    variables = mnist.stacked([mnist.initial_variables(TUTORIAL_HIDDEN, 32, seed=seed) for seed in range(members)])
    rates = [0.01 * (1 + member % 2) for member in range(members)]
    pixels = generator.integers(0, 256, (1000, mnist.IMAGE_PIXELS), dtype=np.uint8)
    labels = generator.integers(0, mnist.NUM_CLASSES, 1000).astype(np.int32)
    results = []
    for each in (backend, reference):
        model = mnist.Model(each, variables, batch, rates)
        split = DeviceSplit(each, DataSet(pixels, labels))
        orders = [DataSet(pixels, labels, seed=seed) for seed in range(members)]  # the same batches, in TF's order
        if graph is not None and each is backend:
            stepper = each.step_program(model, split, orders, steps + 1 + TIMING_CALLS, graph, note=note)
        else:
            stepper = HostSteps(model, split, orders)
        for step in range(steps):
            stepper.run(step)
        results.append((stepper.losses(steps - 1, steps)[0], model.host_variables(), stepper))
    (losses, got, stepper), (expected_losses, expected, _) = results
    if not np.allclose(losses, expected_losses, rtol=1e-4):
        return f"final losses {np.round(losses, 6).tolist()}, numpy {np.round(expected_losses, 6).tolist()}", stepper
    for name, value in expected.items():
        if not np.allclose(got[name], value, rtol=1e-3, atol=1e-5):
            return f"{name} differs from numpy by up to {np.abs(got[name] - value).max():.3g}", stepper
    return None, stepper


def time_step(stepper, backend, first_step=TRAINING_STEPS):
    """Median seconds of one more training step, finished (the GPU synchronised), as time_call times an op."""
    steps = itertools.count(first_step)
    return time_call(lambda: (stepper.run(next(steps)), backend.synchronize()))


def one_line(error):
    return "raised " + _first_line(error)


def check_backend(backend, reference, say):
    """Every op and the training steps of one backend against NumPy; returns how many checks failed.

    The NumPy backend itself is only timed: it is the spec the others are checked against.
    """
    failures = 0
    generator = np.random.default_rng(2026)
    for case in OP_CASES:
        inputs = case.make_inputs(generator, CHECK_MEMBERS, TUTORIAL_BATCH, case.tutorial_width)
        problem = None
        if backend is not reference:
            try:
                problem = mismatch(case, run_case(case, backend, inputs), run_case(case, reference, inputs))
            except Exception as error:  # noqa: BLE001 - a crashing op is a failed check, reported on its line
                problem = one_line(error)
        if problem is None:
            arrays = to_backend(backend, inputs)
            seconds = time_call(lambda call=case.call, arrays=arrays: (call(backend, arrays), backend.synchronize()))
            verdict = "spec" if backend is reference else "ok"
            say(f"  {backend.name:<6} {case.name:<24} {verdict:<7} {seconds * 1e6:9.1f} us")
        else:
            failures += 1
            say(f"  {backend.name:<6} {case.name:<24} FAILED  {problem}")
    if backend is reference:
        return failures
    ways = [(None, f"{TRAINING_STEPS} training steps")]
    titles = {"off": f"{TRAINING_STEPS} steps, eager program", "on": f"{TRAINING_STEPS} steps, CUDA graph"}
    ways += [(mode, titles[mode]) for mode in backend.graph_modes]
    for graph, title in ways:
        def note(line, title=title):
            say(f"  {backend.name:<6} {title:<24} note: {line}")
        try:
            problem, stepper = training_mismatch(backend, reference, graph, note=note)
            if problem is None:
                verdict = f"ok      same variables as numpy; {time_step(stepper, backend) * 1e6:.1f} us a step"
                if graph is not None:  # the step program: eager or a graph, launches prepared or not
                    verdict += f"; ran {stepper.describe()}"
        except Exception as error:  # noqa: BLE001 - reported on its line
            problem = one_line(error)
        failures += problem is not None
        say(f"  {backend.name:<6} {title:<24} " + (verdict if problem is None else f"FAILED  {problem}"))
    return failures


def usable_backends(say):
    """The backends that load here, the NumPy reference first; one line for each: usable, or why not.

    A backend that cannot load raises BackendUnavailable (the cuda backend turns whatever its
    libraries raise while loading into one), or ImportError for a missing package.
    """
    usable = [get_backend("numpy")]
    say("backend numpy: usable (the reference: every other backend is checked against it)")
    for name in BACKEND_NAMES:
        if name in ("auto", "numpy"):
            continue
        try:
            backend = numba_cache.get_backend(name, say)
        except (BackendUnavailable, ImportError) as error:
            say(f"backend {name}: not usable: {error}")
            continue
        say(f"backend {name}: usable")
        usable.append(backend)
    return usable


def run_check(say=print):
    """The whole check; returns the exit code (0: every usable backend passed)."""
    say("mnist-gpu check (the tutorial's shapes: B=%d, H=%d, D=%d, C=%d; times are medians of %d calls)"
        % (TUTORIAL_BATCH, TUTORIAL_HIDDEN, mnist.IMAGE_PIXELS, mnist.NUM_CLASSES, TIMING_CALLS))
    say("versions: " + ", ".join(f"{name} {version}" for name, version in versions().items()))
    say("libraries: " + "; ".join(f"{name} {where}" for name, where in libraries().items()))
    usable = usable_backends(say)
    reference, failures = usable[0], 0
    for backend in usable:
        failures += check_backend(backend, reference, say)
    if failures:
        say(f"{failures} check{'s' if failures != 1 else ''} FAILED")
        return 1
    say(f"all checks passed on {', '.join(backend.name for backend in usable)}")
    return 0
