"""Kernels with the faults the real-compiler tier must catch (tests/test_compile_report.py compiles them)."""
from mnist_gpu.kernels.numba_cuda import cuda, float32


@cuda.jit
def float64_literal_kernel(values):
    index = cuda.grid(1)
    if index < values.shape[0]:
        values[index] = values[index] * 0.1  # 0.1 is a Python float: the multiply happens in float64


@cuda.jit
def local_memory_kernel(values, pick):
    scratch = cuda.local.array(512, float32)  # 2 KB indexed at run time: more than registers can hold
    for index in range(512):
        scratch[index] = values[index]
    values[0] = scratch[pick]


@cuda.jit
def typing_error_kernel(values):
    values[0] = "not a number"
