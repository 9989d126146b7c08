"""mnist_gpu: TensorFlow's Mechanics 101 MNIST tutorial with hand-written GPU kernels."""
from setuptools import setup

TEST_REQUIRES = [
    "pytest>=8",
    "pytest-benchmark>=4",
    "tensorboard>=2.14",  # its EventAccumulator reads our event files back in tests
    "matplotlib>=3.7",  # the benchmark report's chart
    "numba-cuda>=0.30",  # the CUDA simulator runs the kernels on the CPU in CI
]

setup(
    name="mnist_gpu",
    version="0.1.0",
    description="TensorFlow's Mechanics 101 MNIST tutorial, trained by hand-written Numba CUDA kernels and cuBLAS",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The top-level kernels/ folder is installed as mnist_gpu.kernels, never as a generic `kernels`.
    packages=["mnist_gpu", "mnist_gpu.backends", "mnist_gpu.kernels"],
    package_dir={"mnist_gpu.kernels": "kernels"},
    package_data={"mnist_gpu": ["data/mnist/*.gz"]},
    install_requires=[
        "numpy>=1.26",
        "numba>=0.60",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "tensorboardX>=2.6",
    ],
    extras_require={
        "test": TEST_REQUIRES,
        # CuPy brings the CUDA libraries (cuBLAS, NVRTC) only through its [ctk] extra.
        "cuda12": ["cupy-cuda12x[ctk]>=13.4", "numba-cuda[cu12]>=0.30"],
        "cuda13": ["cupy-cuda13x[ctk]>=13.6", "numba-cuda[cu13]>=0.30"],
    },
    entry_points={"console_scripts": ["mnist-gpu = mnist_gpu.cli:main_exit"]},
)
