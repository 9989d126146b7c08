"""mnist_gpu: TensorFlow's Mechanics 101 MNIST tutorial, trained by hand-written GPU kernels.

The NumPy backend is the executable spec; the CUDA backend runs our Numba kernels and cuBLAS.
"""
import os as _os

# Installing maps the top-level kernels/ folder to mnist_gpu.kernels. When this package is
# imported straight from a source checkout (`python -m mnist_gpu` in the repository), let
# mnist_gpu.kernels resolve to that same folder.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "kernels")) and _os.path.isfile(
        _os.path.join(_checkout, "kernels", "numba_cuda.py")):
    __path__.append(_checkout)

from .backends import get_backend  # noqa: E402
from .input_data import DataSet, read_data_sets  # noqa: E402
from .model import evaluation, inference, loss, training  # noqa: E402
from .trainer import run_training  # noqa: E402

__all__ = ["DataSet", "evaluation", "get_backend", "inference", "loss", "read_data_sets", "run_training", "training"]
__version__ = "0.1.0"
