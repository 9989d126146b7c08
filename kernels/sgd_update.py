"""Plain SGD, in place: parameters -= learning_rate * gradients.

Shapes: parameters, gradients [P]: the model's three biases and their gradients, packed into one
flat buffer each (see Model), so one launch updates all of them (P = H1 + H2 + C, padded). The
weights need no launch of their own: their update rides in the weight-gradient GEMM
(cuBLAS with alpha = -learning_rate, beta = 1; see CudaBackend.matmul_sgd).
Launch: one thread per element, blocks_for(P) blocks of THREADS_PER_BLOCK.
"""
from .numba_cuda import cuda


@cuda.jit(cache=True)
def sgd_update_kernel(parameters, gradients, learning_rate):
    index = cuda.grid(1)
    if index < parameters.shape[0]:
        parameters[index] -= learning_rate * gradients[index]
