"""A data split on the backend, and training steps taken the tutorial's way (the numpy and cpu backends' steps).

The cuda backend takes its steps as a prepared program instead (backends/cuda_program.py): the
same batches and the same step, with no host work inside it. Both have run(step) and position(step).
"""
import numpy as np

from . import model as mnist


class DeviceSplit:
    """One data split on the backend: uint8 pixels [N, D] (a quarter of float32's bytes) and int32 labels [N]."""

    def __init__(self, backend, data_set):
        self.data_set = data_set
        self.labels = backend.asarray(data_set.labels, dtype=np.int32)
        self.pixels = backend.asarray(data_set.pixels, dtype=np.uint8)

    def gather(self, backend, indices, images, labels):
        """The rows `indices` (host integers) into preallocated float32 `images` [B, D] and `labels` [B]."""
        backend.gather_images(self.pixels, indices, out=images)
        backend.gather_rows(self.labels, indices, out=labels)


class HostSteps:
    """Training steps as the tutorial takes them: draw the batch on the host, gather it, train_step."""

    def __init__(self, model, split, learning_rate):
        self.model, self.split, self.learning_rate = model, split, learning_rate
        self.images = model.backend.empty((model.batch_size, mnist.IMAGE_PIXELS))
        self.labels = model.backend.empty((model.batch_size,), dtype=np.int32)

    def run(self, step):
        """Run training step `step` (the next one); returns its loss (float() reads it)."""
        model = self.model
        self.split.gather(model.backend, self.split.data_set.next_batch_indices(model.batch_size), self.images,
                          self.labels)
        return mnist.train_step(model, self.images, self.labels, self.learning_rate)

    def position(self, step):
        """The data set's position after step `step`'s batch (the step just run), for its checkpoint."""
        return self.split.data_set.position()
