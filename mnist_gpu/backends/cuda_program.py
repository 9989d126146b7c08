"""The CUDA training step as a program: a list of prepared operations, run eagerly or replayed as one CUDA graph.

Why: a step is some twenty small kernels and GEMMs. Issued one by one from Python through Numba's
dispatcher, they cost ~1.2-1.5 ms of host time (typing and converting every CuPy argument on
every launch) while the GPU works well under 0.1 ms. So the step is built once, as data:

    gather_batch   images, labels <- rows index_ring[step % R_index] of the split (on the device)
    train_step     the model's one step (model.py) for every member, recorded through the backend:
                   its kernels and 8 GEMMs (each GEMM one strided-batched call for all members)
    advance_step   loss_ring[step % R_loss] <- the members' losses; step += 1

where `step` is a counter in device memory. Every buffer is allocated once, here; nothing in a
step allocates, copies from the host or waits for it. The host's part of a step is drawing its
members' batches' row indices with DataSet.draw_batches (TF's order, each member's own, exactly as
the other backends draw them), a window of up to WINDOW_STEPS steps at a time, uploaded from
pinned memory between steps.

Two ways to run it (--cuda_graph):
  eager: each operation issued in order, prepared once: a kernel's Numba argument marshalling is
         done when the program is built, each launch is one cuda.core launch (what Numba's own
         launch ends with); a GEMM is one cuBLAS call with its arguments already worked out.
  graph: the same operations captured once into a CUDA graph on the backend's stream and replayed,
         one launch a step. Before it is used, the first step runs both ways from the same state;
         the parameters must agree to the bit, or the graph is not used (auto) or the run stops (on).
Under Numba's simulator the program runs eagerly, each launch through the simulator's dispatcher:
that is how CI checks it against the NumPy backend. Preparation and capture run only on a GPU.
"""
import copy

import numpy as np

from mnist_gpu.kernels import step_ring

from .. import model as mnist
from ..errors import CudaGraphError
from ..steps import LOSS_HISTORY
from .cuda_launch import KernelLaunch, PreparedLaunch

WINDOW_STEPS = 1000  # batches drawn and uploaded at a time: the index ring's rows (up to INDEX_RING_BYTES)
INDEX_RING_BYTES = 16 * 2 ** 20
LOSS_RING_STEPS = LOSS_HISTORY  # a step's loss can be read until this many steps later, as on the host


def window_steps(rows):
    """Steps a window holds: WINDOW_STEPS, fewer where a step's rows (K * B) are so many that the ring would pass
    INDEX_RING_BYTES."""
    return max(1, min(WINDOW_STEPS, INDEX_RING_BYTES // (4 * rows)))


class StepProgram:
    """K members' training step on one split, as a program. run(step) runs the next step; model.global_step follows.

    `orders`: each member's DataSet (its batches, in TF's order). `last_step`: the run's --max_steps
    (no batch is drawn beyond it). `graph`: "auto", "on" or "off". `note`: where a line about the
    chosen mode goes (the trainer's log).
    """

    def __init__(self, model, split, orders, last_step, graph="auto", note=print):
        backend = self.backend = model.backend
        self.model, self.orders = model, orders
        self.last_step, self.graph_mode, self.note = last_step, graph, note
        members, batch_size = model.members, model.batch_size
        rows = members * batch_size  # each member's batch after the one before, in one row of the index ring
        self.window_steps = window_steps(rows)
        # Host side of the index window (pinned on a GPU, so its upload is truly asynchronous).
        if backend.simulated:
            self.host_window = np.empty((self.window_steps, rows), np.int32)
        else:
            import cupyx

            self.host_window = cupyx.empty_pinned((self.window_steps, rows), np.int32)
        self.index_ring = backend.empty((self.window_steps, rows), np.int32)
        self.step_counter = backend.empty(1, np.int32)
        backend.upload(np.array([model.global_step], np.int32), self.step_counter)
        self.loss_ring = backend.zeros((LOSS_RING_STEPS, members))
        self.images = backend.empty((members, batch_size, mnist.IMAGE_PIXELS))
        self.labels = backend.empty((members, batch_size), np.int32)
        self.next_step = self.window_end = model.global_step
        self.positions = {}  # step -> the members' data positions after drawing its batches (this window's steps)
        self.upload_done = None  # an event after the last window's upload (GPU)
        with backend.recording() as operations:
            backend.launch(step_ring.gather_batch_kernel, *backend.stride_grid(rows * mnist.IMAGE_PIXELS),
                           split.pixels, split.labels, self.index_ring, self.step_counter, mnist.PIXEL_SCALE,
                           self.images.reshape(rows, mnist.IMAGE_PIXELS), self.labels.reshape(rows))
            # The model's own step, recorded on a copy so the recording does not count as a step.
            losses = mnist.train_step(copy.copy(model), self.images, self.labels)
            backend.launch(step_ring.advance_step_kernel, 1, backend.kernels_module.THREADS_PER_BLOCK,
                           self.step_counter, losses, self.loss_ring)
        self.operations = operations
        self.graph = None
        self.started = False
        self.unprepared = None  # once started: why the launches are not prepared (None: they are)

    # -- the host's part: batch indices ahead, positions, losses --------------------------------
    def _draw_window(self, step):
        """Draw every member's batches of steps step .. step + n - 1 and queue their upload into the index ring."""
        count = min(self.window_steps, self.last_step - step)
        if self.upload_done is not None:
            self.upload_done.synchronize()  # the previous upload has left the pinned buffer
        first = step % self.window_steps
        head = min(count, self.window_steps - first)  # rows first.. of the ring, then wrapping to row 0
        batch_size = self.model.batch_size
        positions = [[] for _ in self.orders]
        for rows in (slice(first, first + head), slice(0, count - head)):
            if rows.stop > rows.start:
                window = self.host_window[rows]
                for member, order in enumerate(self.orders):
                    positions[member] += order.draw_batches(batch_size,
                                                            window[:, member * batch_size:(member + 1) * batch_size])
                self.backend.upload(window, self.index_ring[rows])
        if not self.backend.simulated:
            self.upload_done = self.backend.stream.record()
        self.positions = {step + offset: [member[offset] for member in positions] for offset in range(count)}
        self.window_end = step + count

    def position(self, step):
        """Each member's data position after step `step`'s batch (order, fields), for a checkpoint of that step."""
        return self.positions[step]

    def losses(self, first, last):
        """The members' losses of steps first .. last - 1, from the loss ring: a host array [last - first, K]."""
        if not (self.next_step - LOSS_RING_STEPS <= first <= last <= self.next_step):
            raise ValueError(f"the losses of steps {first} to {last - 1} are no longer (or not yet) in the loss ring, "
                             f"which holds steps {self.next_step - LOSS_RING_STEPS} to {self.next_step - 1}")
        ring = self.backend.to_host(self.loss_ring)  # waits for the steps queued so far
        return ring[[step % LOSS_RING_STEPS for step in range(first, last)]]

    # -- running -------------------------------------------------------------------------------
    def run(self, step):
        """Run training step `step` (the next one) of every member."""
        if step != self.next_step or step >= self.last_step:
            raise ValueError(f"the program's next step is {self.next_step} (of {self.last_step}), not {step}")
        if step >= self.window_end:
            self._draw_window(step)
        if not self.started:
            self._start()
        elif self.graph is not None:
            self.graph.launch(self.backend.stream)
        else:
            self._run_eagerly()
        self.next_step += 1
        self.model.global_step += 1

    def describe(self):
        """How the steps run, in a few words: eagerly or as one CUDA graph, and whether the launches are prepared."""
        if not self.started:
            return "not started yet"
        launches = "launches prepared" if self.unprepared is None else f"launches {self.unprepared}"
        return f"as one CUDA graph ({launches})" if self.graph is not None else f"eagerly, {launches}"

    def _start(self):
        """The first step: prepare the launches, then choose eager or graph (running the step both ways to
        compare) as --cuda_graph says, and run the step."""
        if self.backend.simulated:
            self.unprepared = "through Numba's CUDA simulator"
        else:
            self._prepare()
        if self.graph_mode == "off":
            self._run_eagerly()
        else:
            self._start_graph()
        self.started = True

    def _prepare(self):
        try:
            self.operations = [PreparedLaunch(operation) if isinstance(operation, KernelLaunch) else operation
                               for operation in self.operations]
        except Exception as error:  # noqa: BLE001 - Numba internals moved: its own launches still work, slower
            self.unprepared = f"through Numba's dispatcher (preparing them failed: {type(error).__name__}: {error})"
            self.note(f"kernel launches go {self.unprepared}")

    def _why_no_graph(self):
        return "Numba's CUDA simulator cannot capture a CUDA graph" if self.backend.simulated else None

    def _start_graph(self):
        reason = self._why_no_graph()
        if reason is None:
            try:
                self.graph = self._verified_graph()
                self.note("the training step runs as one CUDA graph (its first step matched the eager step bit for "
                          "bit)")
                return
            except Exception as error:  # noqa: BLE001 - any capture failure means: run eagerly, or stop if asked to
                reason = f"{type(error).__name__}: {error}"
        if self.graph_mode == "on":
            raise CudaGraphError(f"--cuda_graph on: {reason}")
        self.note(f"the training step runs eagerly, not as a CUDA graph: {reason}")
        self._run_eagerly()

    def _run_eagerly(self):
        for operation in self.operations:
            operation.run()

    def _state(self):
        """Host copies of what a step changes: the variables, the step counter and the loss ring."""
        state = {name: self.backend.to_host(value) for name, value in self.model.variables.items()}
        state["step"] = self.backend.to_host(self.step_counter)
        state["losses"] = self.backend.to_host(self.loss_ring)
        state["active"] = self.backend.to_host(self.model.active)
        return state

    def _restore(self, state):
        targets = dict(self.model.variables, step=self.step_counter, losses=self.loss_ring, active=self.model.active)
        for name, value in state.items():
            self.backend.upload(value, targets[name])

    def _capture(self):
        """The step's operations captured on the backend's stream into a CUDA graph.

        If an operation fails, the capture is still ended (a stream left capturing would refuse all later
        work), and the operation's error is the one raised: ending a broken capture usually fails too, and
        that second error says nothing about the cause (it is noted).
        """
        stream = self.backend.stream
        stream.begin_capture()
        try:
            for operation in self.operations:
                operation.run()
        except BaseException:
            try:
                stream.end_capture()
            except Exception as ending:  # noqa: BLE001 - the first error is the one to report
                self.note(f"ending the failed CUDA graph capture failed too: {type(ending).__name__}: {ending}")
            raise
        return stream.end_capture()

    def _verified_graph(self):
        """Run this step eagerly and as a captured graph from the same state; the graph if they agree to the bit.

        On any failure the state is put back as it was before the step, so the caller can run it eagerly.
        """
        before = self._state()
        try:
            self._run_eagerly()  # also loads every kernel and warms cuBLAS up before the capture
            eager = self._state()
            self._restore(before)
            graph = self._capture()
            graph.launch(self.backend.stream)
            graphed = self._state()
            differing = [name for name in eager
                         if not np.array_equal(eager[name].view(np.uint8), graphed[name].view(np.uint8))]
            if differing:
                raise CudaGraphError(f"the graph's step differs from the eager step in {', '.join(differing)}")
        except BaseException:
            self._restore(before)
            raise
        return graph
