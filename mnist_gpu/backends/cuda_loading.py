"""Loading the cuda backend's libraries: whatever goes wrong becomes one BackendUnavailable line naming what."""
import contextlib

from ..errors import BackendUnavailable

INSTALL_HINT = ("install the GPU extras: in the mnist_gpu checkout, pip install '.[cuda13]' (CUDA 13 driver) "
                "or '.[cuda12]'")  # how to get the cuda backend's packages


@contextlib.contextmanager
def loading(what):
    """Whatever goes wrong while the cuda backend loads `what` becomes one BackendUnavailable line naming it.

    Libraries raise their own types while they load, not only ImportError: numba-cuda's
    CudaSupportError without a driver, nvmath-python's NotSupportedError from cublas.create(),
    CuPy's CUDARuntimeError, cuda-pathfinder's DynamicLibNotFoundError, a RuntimeError for a
    version that does not fit. `mnist-gpu check` prints the line as "cuda: not usable: ...",
    training as "mnist-gpu: error: ...".
    """
    try:
        yield
    except BackendUnavailable:
        raise
    except ModuleNotFoundError as error:  # not other ImportErrors: numba-cuda's CudaSupportError is one
        raise BackendUnavailable(f"--backend cuda needs {what}, which is not installed ({error}); "
                                 f"{INSTALL_HINT}") from error
    except Exception as error:  # see above: any library's error, reported in one line
        raise BackendUnavailable(f"--backend cuda could not load {what}: {type(error).__name__}: "
                                 f"{one_line(error)}") from error


def one_line(error):
    """An error's message on one line (numba-cuda's driver errors, for one, span several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())
