"""A data split on the backend, and training steps taken the tutorial's way (the numpy and cpu backends' steps).

Each of the K members draws its own batches from its own DataSet (its seed's order, exactly as a
solo run draws them); the pixels and labels are shared, on the backend once. The cuda backend
takes its steps as a prepared program instead (backends/cuda_program.py): the same batches and the
same step, with no host work inside it. Both have run(step), losses(first, last), position(step).
"""
import numpy as np

from . import model as mnist

LOSS_HISTORY = 256  # steps whose losses can still be read: the trainer reads every 100 steps


class DeviceSplit:
    """One data split on the backend: uint8 pixels [N, D] (a quarter of float32's bytes) and int32 labels [N]."""

    def __init__(self, backend, data_set):
        self.data_set = data_set
        self.labels = backend.asarray(data_set.labels, dtype=np.int32)
        self.pixels = backend.asarray(data_set.pixels, dtype=np.uint8)

    def gather(self, backend, indices, images, labels):
        """The rows `indices` (host integers, [K, B] or [R]) into preallocated float32 `images` [..., D] and
        `labels` [...]."""
        backend.gather_images(self.pixels, indices, out=images)
        backend.gather_rows(self.labels, indices, out=labels)


class HostSteps:
    """Training steps as the tutorial takes them: draw each member's batch on the host, gather them, train_step."""

    def __init__(self, model, split, orders):
        if len(orders) != model.members:
            raise ValueError(f"{len(orders)} data orders for {model.members} members")
        self.model, self.split, self.orders = model, split, orders
        backend, members, batch = model.backend, model.members, model.batch_size
        self.indices = np.empty((members, batch), np.int64)
        self.images = backend.empty((members, batch, mnist.IMAGE_PIXELS))
        self.labels = backend.empty((members, batch), dtype=np.int32)
        self.history = {}  # step -> its losses ([K], on the backend), for the last LOSS_HISTORY steps

    def run(self, step):
        """Run training step `step` (the next one) of every member."""
        model = self.model
        for member, order in enumerate(self.orders):
            self.indices[member] = order.next_batch_indices(model.batch_size)
        self.split.gather(model.backend, self.indices, self.images, self.labels)
        self.history[step] = mnist.train_step(model, self.images, self.labels)
        self.history.pop(step - LOSS_HISTORY, None)

    def losses(self, first, last):
        """The members' losses of steps first .. last - 1: a host float32 array [last - first, K]."""
        return np.stack([self.model.backend.to_host(self.history[step]) for step in range(first, last)])

    def position(self, step):
        """Each member's data position after step `step`'s batch (the step just run), for its checkpoint."""
        return [order.position() for order in self.orders]

    def describe(self):
        return "op by op on the host"
