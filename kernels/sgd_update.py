"""Plain SGD, in place, each member at its own learning rate: parameters[k] -= learning_rates[k] * gradients[k],
for each member that trains (active[k] != 0); a stopped member is left exactly as it is (a select, so
that a NaN gradient of a member that diverged cannot reach its variables).

Shapes: parameters, gradients [K, P] (a bias [K, H], or a weight [K, fan_in, fan_out] viewed flat),
learning_rates [K] float32, active [K] int32. The weights' gradients come from one strided-batched
GEMM each (CudaBackend.matmul_sgd), then this kernel applies them.
Launch: a grid-stride loop over the K * P elements, blocks_for(K * P) blocks of THREADS_PER_BLOCK (on a GPU
each thread takes one element; in the simulator at most SIMULATED_BLOCKS blocks: numba_cuda.py).
"""
from .numba_cuda import cuda


@cuda.jit(cache=True)
def sgd_update_kernel(parameters, gradients, learning_rates, active):
    members, width = parameters.shape
    for index in range(cuda.grid(1), members * width, cuda.gridsize(1)):
        member = index // width
        if active[member] != 0:
            column = index - member * width
            parameters[member, column] -= learning_rates[member] * gradients[member, column]
