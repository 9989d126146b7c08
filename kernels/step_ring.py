"""The two kernels that let a training step run with no host input: its batch and its loss live in rings.

The step program (mnist_gpu/backends/cuda_program.py) keeps a device step counter. The host
uploads the batch indices of many steps ahead into an index ring, and each step's loss lands in
a loss ring, so one captured CUDA graph can be replayed for every step unchanged.

gather_batch_kernel: slot = step[0] % R_index
    images[r, :] = float32(pixels[index_ring[slot, r], :]) * scale    (uint8 -> float32, fused)
    labels[r]    = all_labels[index_ring[slot, r]]
  Shapes: pixels [N, D=784] uint8, all_labels [N] int32, index_ring [R_index, K * B] int32 (each
  member's batch after the one before), step [1] int32, images [K * B, D] float32 and labels
  [K * B] int32 (the model's [K, B, D] and [K, B], viewed flat).
  Launch: a grid-stride loop over the image elements, blocks_for(K * B * D) blocks of THREADS_PER_BLOCK
  (on a GPU one element a thread; in the simulator at most SIMULATED_BLOCKS blocks: numba_cuda.py); the
  thread of a row's first pixel also copies its label (one launch for both, as the step needs both).
advance_step_kernel: loss_ring[step[0] % R_loss, k] = losses[k] for every member k; step[0] += 1
  Shapes: step [1] int32, losses [K] float32 (softmax_xent's output), loss_ring [R_loss, K] float32.
  Launch: ONE block of THREADS_PER_BLOCK threads, last in the step (every earlier kernel of the step
  has read the counter); its threads copy the K losses, then one moves the counter.
"""
from .numba_cuda import cuda, float32


@cuda.jit(cache=True)
def gather_batch_kernel(pixels, all_labels, index_ring, step, scale, images, labels):
    width = images.shape[1]
    for index in range(cuda.grid(1), images.shape[0] * width, cuda.gridsize(1)):
        row = index // width
        column = index - row * width
        source = index_ring[step[0] % index_ring.shape[0], row]
        images[row, column] = float32(pixels[source, column]) * scale
        if column == 0:
            labels[row] = all_labels[source]


@cuda.jit(cache=True)
def advance_step_kernel(step, losses, loss_ring):
    thread = cuda.threadIdx.x
    slot = step[0] % loss_ring.shape[0]
    for member in range(thread, losses.shape[0], cuda.blockDim.x):
        loss_ring[slot, member] = losses[member]
    cuda.syncthreads()  # every thread has read the counter before it moves
    if thread == 0:
        step[0] += 1
