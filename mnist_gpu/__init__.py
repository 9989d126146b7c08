"""mnist_gpu: TensorFlow's Mechanics 101 MNIST tutorial, trained by hand-written GPU kernels.

The NumPy backend is the executable spec; the CUDA backend runs our Numba kernels and cuBLAS.
From Python: `train(**flags)` and `load_checkpoint(path).predict(images)` (see api.py).
"""
import os as _os

__version__ = "0.1.0"

from . import numba_environment  # noqa: F401 - Numba's settings, before any module here imports numba

# Installing maps the top-level kernels/ folder to mnist_gpu.kernels. When this package is
# imported straight from a source checkout (`python -m mnist_gpu` in the repository), let
# mnist_gpu.kernels resolve to that same folder.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "kernels")) and _os.path.isfile(
        _os.path.join(_checkout, "kernels", "numba_cuda.py")):
    __path__.append(_checkout)

from .api import Classifier, load_checkpoint, train
from .backends import get_backend
from .input_data import DataSet, read_data_sets
from .model import evaluation, inference, loss, training
from .trainer import TrainingResult, run_training

__all__ = ["Classifier", "DataSet", "TrainingResult", "evaluation", "get_backend", "inference", "load_checkpoint",
           "loss", "read_data_sets", "run_training", "train", "training"]
