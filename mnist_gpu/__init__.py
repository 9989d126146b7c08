"""mnist_gpu: TensorFlow's Mechanics 101 MNIST tutorial, trained by hand-written GPU kernels.

The NumPy backend is the executable spec; the CUDA backend runs our Numba kernels and cuBLAS.
From Python: `train(**flags)` and `load_checkpoint(path).predict(images)` (api.py, classifier.py);
every error mnist_gpu raises on purpose is a `mnist_gpu.Error` (errors.py).

Importing the package loads only version.py (not NumPy): each name below is imported when first
used. So the command line (entry.py) starts with nothing loaded, and a Ctrl-C while it loads its
modules is one line, not a traceback.
"""
import importlib
import importlib.util
from typing import TYPE_CHECKING

from .version import __version__

# {name: the module that defines it}
_EXPORTS = {
    **dict.fromkeys(("sweep", "train"), "api"),
    **dict.fromkeys(("Classifier", "load_checkpoint"), "classifier"),
    **dict.fromkeys(("BackendUnavailable", "CheckpointError", "CudaGraphError", "DataError", "Error", "FlagError",
                     "ImageError", "LogDirInUse", "StudyError", "TrainingDiverged", "TrainingInterrupted",
                     "WriteError"), "errors"),
    **dict.fromkeys(("DataSet", "read_data_sets"), "input_data"),
    **dict.fromkeys(("evaluation", "inference", "loss", "training"), "model"),
    "get_backend": "numba_cache",  # backends.get_backend, with a private kernel cache where Numba finds none
    **dict.fromkeys(("TrainingResult", "run_training"), "trainer"),
}
__all__ = ["BackendUnavailable", "CheckpointError", "Classifier", "CudaGraphError", "DataError", "DataSet", "Error",
           "FlagError", "ImageError", "LogDirInUse", "StudyError", "TrainingDiverged", "TrainingInterrupted",
           "TrainingResult", "WriteError", "__version__", "evaluation", "get_backend", "inference", "load_checkpoint",
           "loss", "read_data_sets", "run_training", "sweep", "train", "training"]  # _EXPORTS's names (a test checks)


def __getattr__(name):
    """A public name, imported from its module on first use (then kept here); or a submodule."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name.isidentifier() and not name.startswith("__") and _is_module(f"{__name__}.{name}"):
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _is_module(name):
    """Whether `name` is a module or package of ours (a folder of data is neither)."""
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.has_location and spec.origin.endswith(".py")


def __dir__():
    """The public names, and the submodules loaded so far."""
    return sorted({*__all__, *(name for name, value in globals().items()
                               if getattr(value, "__name__", "").startswith(f"{__name__}."))})


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .api import sweep, train
    from .classifier import Classifier, load_checkpoint
    from .errors import (
        BackendUnavailable,
        CheckpointError,
        CudaGraphError,
        DataError,
        Error,
        FlagError,
        ImageError,
        LogDirInUse,
        StudyError,
        TrainingDiverged,
        TrainingInterrupted,
        WriteError,
    )
    from .input_data import DataSet, read_data_sets
    from .model import evaluation, inference, loss, training
    from .numba_cache import get_backend
    from .trainer import TrainingResult, run_training
