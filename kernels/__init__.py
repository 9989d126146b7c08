"""Hand-written Numba CUDA kernels (installed as mnist_gpu.kernels)."""
