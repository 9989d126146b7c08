"""What only a real GPU can show: CuPy arrays end to end, and the tutorial's accuracy with --backend cuda."""
import math
from types import SimpleNamespace

import pytest

from mnist_gpu.backends import gpu_available

pytestmark = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU with CuPy (pip install 'mnist_gpu[cuda13]')")


def test_cuda_backend_holds_cupy_arrays(cuda_backend):
    import cupy

    assert isinstance(cuda_backend.empty((2, 2)), cupy.ndarray)
    assert not cuda_backend.simulated


def test_tutorial_run_on_the_gpu_reaches_the_numpy_band(mnist_dir, tmp_path, capsys):
    from mnist_gpu.trainer import run_training

    flags = SimpleNamespace(learning_rate=0.01, max_steps=2000, hidden1=128, hidden2=32, batch_size=100,
                            input_data_dir=mnist_dir, log_dir=str(tmp_path), fake_data=False, backend="cuda",
                            seed=1, dataset="mnist", source_url=None)
    result = run_training(flags)
    examples, correct = result.evaluations[1999]["test"]
    assert 0.89 <= correct / examples <= 0.91
    assert abs(result.losses[0] - math.log(10)) < 0.1
