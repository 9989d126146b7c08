"""mnist_gpu: TensorFlow's Mechanics 101 MNIST tutorial, trained by hand-written GPU kernels.

The NumPy backend is the executable spec; the CUDA backend runs our Numba kernels and cuBLAS.
From Python: `train(**flags)` and `load_checkpoint(path).predict(images)` (api.py, classifier.py);
every error mnist_gpu raises on purpose is a `mnist_gpu.Error` (errors.py).
"""
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
from .numba_cache import get_backend  # backends.get_backend, with a private kernel cache where Numba finds none
from .trainer import TrainingResult, run_training
from .version import __version__

__all__ = ["BackendUnavailable", "CheckpointError", "Classifier", "CudaGraphError", "DataError", "DataSet", "Error",
           "FlagError", "ImageError", "LogDirInUse", "StudyError", "TrainingDiverged", "TrainingInterrupted",
           "TrainingResult", "WriteError", "__version__", "evaluation", "get_backend", "inference", "load_checkpoint",
           "loss", "read_data_sets", "run_training", "sweep", "train", "training"]
