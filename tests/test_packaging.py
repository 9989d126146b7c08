"""The installed package: no generic top-level `kernels`, the kernels inside mnist_gpu, MNIST shipped."""
import importlib.metadata
import importlib.util
import os
import site
import sys

import mnist_gpu
import mnist_gpu.kernels


def test_no_top_level_kernels_package_is_installed(monkeypatch):
    # Look at what is installed, not at a source checkout that may be on sys.path.
    installed = [distribution for distribution in importlib.metadata.distributions(path=site.getsitepackages())
                 if distribution.metadata["Name"] == "mnist_gpu"]
    assert len(installed) == 1, "mnist_gpu is not installed (or installed twice)"
    files = [str(path) for path in installed[0].files]
    assert not [path for path in files if path.split("/")[0] == "kernels"]
    monkeypatch.setattr(sys, "path", site.getsitepackages())
    assert importlib.util.find_spec("kernels") is None


def test_kernels_are_mnist_gpu_kernels():
    assert mnist_gpu.kernels.__name__ == "mnist_gpu.kernels"
    assert os.path.isfile(os.path.join(os.path.dirname(mnist_gpu.kernels.__file__), "softmax_xent.py"))


def test_mnist_ships_inside_the_package():
    folder = os.path.join(os.path.dirname(mnist_gpu.__file__), "data", "mnist")
    assert sorted(os.listdir(folder)) == ["NOTICE.md", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                          "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert "CC BY-SA 3.0" in open(os.path.join(folder, "NOTICE.md"), encoding="utf-8").read()
