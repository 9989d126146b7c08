"""Plain SGD, in place, for every parameter at once: parameters -= learning_rate * gradients.

Shapes: parameters, gradients [P], the model's variables and gradients packed into one flat
buffer each (see Model), so one launch updates all six variables.
Launch: one thread per element, blocks_for(P) blocks of THREADS_PER_BLOCK.
"""
from .numba_cuda import cuda


@cuda.jit
def sgd_update_kernel(parameters, gradients, learning_rate):
    index = cuda.grid(1)
    if index < parameters.shape[0]:
        parameters[index] -= learning_rate * gradients[index]
