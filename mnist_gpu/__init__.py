"""mnist_gpu: TensorFlow's Mechanics 101 MNIST tutorial, trained by hand-written GPU kernels.

The NumPy backend is the executable spec; the CUDA backend runs our Numba kernels and cuBLAS.
"""
from .backends import get_backend
from .input_data import DataSet, read_data_sets
from .model import evaluation, inference, loss, training
from .trainer import run_training

__all__ = ["DataSet", "evaluation", "get_backend", "inference", "loss", "read_data_sets", "run_training", "training"]
__version__ = "0.1.0"
