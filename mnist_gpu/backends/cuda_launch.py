"""A kernel launch as data, run through Numba's dispatcher (KernelLaunch) or prepared once (PreparedLaunch).
Used by cuda_backend.py and cuda_program.py.
"""
import warnings


class KernelLaunch:
    """kernel[blocks, threads, stream](*arguments) as data: run() launches it through Numba's dispatcher.

    `on_stream` makes the launch's stream CuPy's current one meanwhile: Numba imports each CuPy
    argument through DLPack for the launch stream, and CuPy makes that stream wait on an event
    of its current stream when the two differ (an extra wait per array; in a graph capture, a
    dependency from outside it).
    """

    def __init__(self, kernel, blocks, threads, arguments, stream, on_stream):
        self.kernel, self.blocks, self.threads, self.arguments = kernel, blocks, threads, arguments
        self.stream, self.on_stream = stream, on_stream

    def run(self):
        with self.on_stream, warnings.catch_warnings():
            # The tutorial's grids are small on purpose; numba-cuda warns of any grid under 128 blocks. Silenced
            # for our launches only: other Numba code in the process keeps its warnings.
            warnings.filterwarnings("ignore", message="Grid size", category=Warning)
            self.kernel[self.blocks, self.threads, self.stream](*self.arguments)


class PreparedLaunch:
    """A KernelLaunch with Numba's per-call work done once: one cuda.core launch per run().

    numba-cuda 0.30's launch converts the stream to cuda.core's, types each argument, finds the
    compiled kernel, marshals each array into its parameters (Numba's array ABI: meminfo, parent,
    size, itemsize, data, shape, strides) and ends with cuda.core's `launch`. The conversion and
    the marshalling here are Numba's own (numba_internals.py), so the launch gets exactly what
    Numba's would pass; only the repetition is gone.
    """

    def __init__(self, launch):
        from cuda.core import LaunchConfig
        from cuda.core import launch as launch_kernel

        from . import numba_internals

        dispatcher = launch.kernel
        compiled = dispatcher.compile(tuple(dispatcher.typeof_pyval(value) for value in launch.arguments))
        stream = numba_internals.core_stream(launch.stream)  # what kernel[blocks, threads, stream] keeps
        parameters, write_backs = [], []
        with launch.on_stream:  # see KernelLaunch
            for kind, value in zip(compiled.argument_types, launch.arguments, strict=True):
                numba_internals.marshal(compiled, kind, value, stream, write_backs, parameters)
        if write_backs:
            raise TypeError(f"{dispatcher.py_func.__name__}: a host array among its arguments (it would be copied "
                            "on every launch)")
        self.launch_kernel = launch_kernel
        self.kernel = numba_internals.cuda_core_kernel(compiled)
        self.config = LaunchConfig(grid=launch.blocks, block=launch.threads)
        self.stream, self.parameters = stream, parameters
        self.arguments = launch.arguments  # the arrays stay alive as long as the launch can run

    def run(self):
        self.launch_kernel(self.stream, self.config, self.kernel, *self.parameters)
