"""Plain SGD, in place, each member at its own learning rate: parameters[k] -= learning_rates[k] * gradients[k].

Shapes: parameters, gradients [K, P]: a bias of every member and its gradient (P = H1, H2 or C);
learning_rates [K]. The weights need no launch of their own: their update rides in the
weight-gradient GEMM (cuBLAS with alpha = -learning_rate, beta = 1; see CudaBackend.matmul_sgd).
Launch: one thread per element, blocks_for(K * P) blocks of THREADS_PER_BLOCK.
"""
from .numba_cuda import cuda


@cuda.jit(cache=True)
def sgd_update_kernel(parameters, gradients, learning_rates):
    index = cuda.grid(1)
    members, width = parameters.shape
    if index < members * width:
        member = index // width
        column = index - member * width
        parameters[member, column] -= learning_rates[member] * gradients[member, column]
