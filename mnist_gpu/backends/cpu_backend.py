"""The fast CPU backend: NumPy's BLAS GEMMs plus fused Numba njit kernels for everything else.

Same interface and the same numbers (within float32 rounding) as the NumPy reference backend,
which it inherits its arrays and GEMMs from; the element-wise and reduction ops each become one
pass over memory (see kernels/cpu.py), and the weight-gradient GEMMs apply SGD in the same BLAS
call (see openblas.py). Float32 only.
"""
import numpy as np

from mnist_gpu.kernels import cpu

from ..model import PIXEL_SCALE
from .interface import check_labels
from .numpy_backend import NumpyBackend
from .openblas import find_sgemm


class CpuBackend(NumpyBackend):
    """NumpyBackend with its element-wise ops replaced by fused, compiled loops."""

    name = "cpu"

    def __init__(self):
        super().__init__(np.float32)
        self.sgemm = find_sgemm()  # None where NumPy's BLAS is not its bundled OpenBLAS

    def matmul_sgd(self, a, b, parameter, learning_rate, trans_a=False, trans_b=False):
        """One BLAS call, W = W - lr * op(a) @ op(b): no gradient array is written and read back."""
        if self.sgemm is None:
            super().matmul_sgd(a, b, parameter, learning_rate, trans_a, trans_b)
        else:
            self.sgemm(a, b, parameter, np.float32(-learning_rate), np.float32(1.0), trans_a, trans_b)

    def gather_rows(self, table, indices, out):
        cpu.gather_rows(table.reshape(len(table), -1), indices, out.reshape(len(indices), -1))

    def gather_images(self, pixels, indices, out):
        cpu.gather_images(pixels, indices, PIXEL_SCALE, out)

    def bias_relu(self, x, bias, out):
        cpu.bias_relu(x, bias, out)

    def bias_add(self, x, bias, out):
        cpu.bias_add(x, bias, out)

    def bias_grad(self, grad, out):
        cpu.bias_grad(grad, out)

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        cpu.relu_backward_bias_grad(grad, activation, out, bias_grad)

    def softmax_xent(self, logits, labels, grad_out):
        check_labels(labels)
        return cpu.softmax_xent(logits, labels, grad_out)

    def sgd_update(self, parameter, grad, learning_rate):
        cpu.sgd_update(parameter, grad, np.float32(learning_rate))

    def in_top_k(self, logits, labels, k=1):
        check_labels(labels)
        return cpu.in_top_k(logits, labels, k)
