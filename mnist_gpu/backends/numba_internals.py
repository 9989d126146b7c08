"""The numba-cuda internals mnist_gpu relies on, named here alone (tests/test_cuda_host.py pins them).

A prepared launch (cuda_launch.PreparedLaunch) does once what numba-cuda 0.30's `kernel[grid, block,
stream](*args)` does on every call: convert the stream to cuda.core's, marshal each argument into
the kernel's parameters (Numba's array ABI), find the compiled function. None of that is public API.
If a numba-cuda release moves it, the step program notes it and launches through Numba's own
dispatcher instead (slower, same results), and the pinning test fails loudly.
"""


def core_stream(stream):
    """A Numba stream as the cuda.core stream its launches use."""
    from numba.cuda.cudadrv.driver import _to_core_stream

    return _to_core_stream(stream)


def marshal(compiled, kind, value, stream, write_backs, parameters):
    """Append the kernel parameters Numba passes for one argument `value` of type `kind` to `parameters`."""
    compiled._prepare_args(kind, value, stream, write_backs, parameters)


def cuda_core_kernel(compiled):
    """The cuda.core kernel object of a compiled Numba kernel, for cuda.core's launch."""
    return compiled._codelibrary.get_cufunc().kernel
