"""The two kernels that let a training step run with no host input: its batch and its loss live in rings.

The step program (mnist_gpu/backends/cuda_program.py) keeps a device step counter. The host
uploads the batch indices of many steps ahead into an index ring, and each step's loss lands in
a loss ring, so one captured CUDA graph can be replayed for every step unchanged.

gather_batch_kernel: slot = step[0] % R_index
    images[b, :] = float32(pixels[index_ring[slot, b], :]) * scale    (uint8 -> float32, fused)
    labels[b]    = all_labels[index_ring[slot, b]]
  Shapes: pixels [N, D=784] uint8, all_labels [N] int32, index_ring [R_index, B] int32, step [1]
  int32, images [B, D] float32, labels [B] int32.
  Launch: one thread per image element, blocks_for(B * D) blocks of THREADS_PER_BLOCK; the thread of
  a row's first pixel also copies its label (one launch for both, as the step needs both).
advance_step_kernel: loss_ring[step[0] % R_loss] = mean_loss[0]; step[0] += 1
  Shapes: step [1] int32, mean_loss [1] float32 (softmax_xent's output), loss_ring [R_loss] float32.
  Launch: ONE thread, last in the step: every earlier kernel of the step has read the counter.
"""
from .numba_cuda import cuda, float32


@cuda.jit(cache=True)
def gather_batch_kernel(pixels, all_labels, index_ring, step, scale, images, labels):
    index = cuda.grid(1)
    width = images.shape[1]
    if index < images.shape[0] * width:
        row = index // width
        column = index - row * width
        source = index_ring[step[0] % index_ring.shape[0], row]
        images[row, column] = float32(pixels[source, column]) * scale
        if column == 0:
            labels[row] = all_labels[source]


@cuda.jit(cache=True)
def advance_step_kernel(step, mean_loss, loss_ring):
    if cuda.grid(1) == 0:
        loss_ring[step[0] % loss_ring.shape[0]] = mean_loss[0]
        step[0] += 1
