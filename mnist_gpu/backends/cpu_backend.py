"""The fast CPU backend: NumPy's own OpenBLAS for the GEMMs plus fused Numba njit kernels for everything else.

Same interface and the same numbers (within float32 rounding) as the NumPy reference backend,
which it inherits its arrays from; the element-wise and reduction ops each become one pass over
memory (see kernels/cpu.py), and the weight-gradient GEMMs apply SGD in the same BLAS call (see
openblas.py). Float32 only.

Members: a population of one calls the one-member kernels on member 0's arrays; a larger one runs
the *_members kernels, one member per thread, each member's work exactly a population of one's
(the same kernel, the same BLAS calls: a large product in row blocks fixed by its shape, each block on
one OpenBLAS thread, see openblas.py; so the numbers do not depend on how many cores the machine has).
"""
import os

import numpy as np

from mnist_gpu.kernels import cpu

from ..model import PIXEL_SCALE
from .interface import check_labels
from .numpy_backend import NumpyBackend
from .openblas import find_sgemm

ONE, ZERO = np.float32(1.0), np.float32(0.0)
# Numba's threads wait between parallel loops the OpenMP way: GNU OpenMP spins 300,000 times before it sleeps,
# and while another process also wants the cores, a spinning thread holds one its peers need. Spinning 3,000 times
# (tens of microseconds: the gaps inside a step) keeps most of the spin's speed and little of its harm (measured:
# docs/performance.md, bench_run.py's commands_at_once). The user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins (read
# when OpenMP starts, at the first parallel loop).
SPIN_COUNT = ("GOMP_SPINCOUNT", "3000")


class CpuBackend(NumpyBackend):
    """NumpyBackend with its ops replaced by fused, compiled loops and direct BLAS calls."""

    name = "cpu"

    def __init__(self):
        super().__init__(np.float32)
        if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
            os.environ[SPIN_COUNT[0]] = SPIN_COUNT[1]
        self.sgemm = find_sgemm()  # None where NumPy's BLAS is not its bundled OpenBLAS

    def _gemm(self, a, b, out, alphas, beta, trans_a, trans_b, active):
        """out[k] = alphas[k] * op(a[k]) @ op(b[k]) + beta * out[k] for the members with active[k] != 0 (no call for
        the others); a 2-D `a` is every member's. Two or more members: the one-member case is the caller's (a solo
        run's step makes 16 of these calls: it spends no allocation on them)."""
        if a.ndim == 2:
            self.sgemm.shared(a, b, out, alphas, beta, trans_a, trans_b, active)
        else:
            self.sgemm.members(a, b, out, alphas, beta, trans_a, trans_b, active)

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        if self.sgemm is None:
            super().matmul(a, b, out, trans_a, trans_b)
        elif len(out) == 1:
            self.sgemm.one(a if a.ndim == 2 else a[0], b[0], out[0], ONE, ZERO, trans_a, trans_b)
        else:
            self._gemm(a, b, out, np.ones(len(out), np.float32), ZERO, trans_a, trans_b, np.ones(len(out), np.int32))

    def matmul_sgd(self, a, b, parameter, learning_rates, active, trans_a=False, trans_b=False):
        """One BLAS call per member that trains, W[k] = W[k] - lr[k] * op(a[k]) @ op(b[k]): no gradient is written
        and read back; a stopped member gets no call at all."""
        if self.sgemm is None:
            super().matmul_sgd(a, b, parameter, learning_rates, active, trans_a, trans_b)
        elif len(parameter) == 1:
            if active[0] != 0:
                self.sgemm.one(a if a.ndim == 2 else a[0], b[0], parameter[0], -self.rates(learning_rates)[0], ONE,
                               trans_a, trans_b)
        else:
            self._gemm(a, b, parameter, -self.rates(learning_rates), ONE, trans_a, trans_b, active)

    def gather_rows(self, table, indices, out):
        table = table.reshape(len(table), -1)
        if indices.ndim == 1:
            cpu.gather_rows(table, indices, out.reshape(len(indices), -1))
        elif len(indices) == 1:
            cpu.gather_rows(table, indices[0], out[0].reshape(indices.shape[1], -1))
        else:
            cpu.gather_rows_members(table, indices, out.reshape(*indices.shape, -1))

    def gather_images(self, pixels, indices, out):
        if indices.ndim == 1:
            cpu.gather_images(pixels, indices, PIXEL_SCALE, out)
        elif len(indices) == 1:
            cpu.gather_images(pixels, indices[0], PIXEL_SCALE, out[0])
        else:
            cpu.gather_images_members(pixels, indices, PIXEL_SCALE, out)

    def bias_relu(self, x, bias, out):
        if len(x) == 1:
            cpu.bias_relu(x[0], bias[0], out[0])
        else:
            cpu.bias_relu_members(x, bias, out)

    def bias_add(self, x, bias, out):
        if len(x) == 1:
            cpu.bias_add(x[0], bias[0], out[0])
        else:
            cpu.bias_add_members(x, bias, out)

    def bias_grad(self, grad, out):
        if len(grad) == 1:
            cpu.bias_grad(grad[0], out[0])
        else:
            cpu.bias_grad_members(grad, out)

    def relu_backward_bias_grad(self, grad, activation, out, bias_grad):
        if len(grad) == 1:
            cpu.relu_backward_bias_grad(grad[0], activation[0], out[0], bias_grad[0])
        else:
            cpu.relu_backward_bias_grad_members(grad, activation, out, bias_grad)

    def softmax_xent(self, logits, labels, grad_out, active):
        check_labels(labels)
        losses = np.empty(len(logits), np.float32)
        if len(logits) == 1:
            cpu.softmax_xent_member(logits, labels, grad_out, active, losses, 0)
        else:
            cpu.softmax_xent_members(logits, labels, grad_out, active, losses)
        return losses

    def sgd_update(self, parameter, grad, learning_rates, active):
        rates = self.rates(learning_rates)
        if len(parameter) == 1:
            if active[0] != 0:
                cpu.sgd_update(parameter[0], grad[0], rates[0])
        else:
            cpu.sgd_update_members(parameter, grad, rates, active)

    def in_top_k(self, logits, labels, k=1):
        check_labels(labels)
        counts = np.empty(len(logits), np.int32)
        if len(logits) == 1:
            counts[0] = cpu.in_top_k(logits[0], labels, k)
        else:
            cpu.in_top_k_members(logits, labels, k, counts)
        return counts
