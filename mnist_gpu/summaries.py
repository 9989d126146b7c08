"""TensorBoard event files, written with tensorboardX's event-file writer (no TensorFlow needed).

Scalars: `loss` every 100 steps (the tutorial's one summary), `precision/<split>` at each
evaluation; histograms of every variable at each checkpoint; and the model graph as a GraphDef
whose node names carry the tutorial's name scopes, so TensorBoard's Graphs tab draws
hidden1 -> hidden2 -> softmax_linear like the original.

Events are written in the calling thread (tensorboardX's EventsWriter, not its SummaryWriter,
which writes from a background thread): a full disk or a vanished folder is an OSError raised
where it happens, which the trainer reports in one line, instead of a traceback from a thread.
tensorboardX is imported only when a run writes its first event.
"""
import functools
import os
import time
import uuid
from contextlib import contextmanager

from .durable import WriteError
from .model import LAYERS

EVENT_FILE_PREFIX = "events.out.tfevents."


@functools.cache
def tensorflow_buckets():
    """TensorFlow's default histogram bucket edges: 0, and +-1e-12 growing by 10% up to 1e20."""
    edges, edge = [], 1e-12
    while edge < 1e20:
        edges.append(edge)
        edge *= 1.1
    return [-edge for edge in reversed(edges)] + [0] + edges


def tutorial_graph():
    """The tutorial's graph: (name, op, inputs) per node, in TF's naming."""
    nodes = [("images", "Placeholder", []), ("labels", "Placeholder", []), ("global_step", "VariableV2", [])]
    layer_input = "images"
    for layer in LAYERS:
        nodes += [
            (f"{layer}/weights", "VariableV2", []),
            (f"{layer}/biases", "VariableV2", []),
            (f"{layer}/MatMul", "MatMul", [layer_input, f"{layer}/weights"]),
            (f"{layer}/add", "Add", [f"{layer}/MatMul", f"{layer}/biases"]),
        ]
        layer_input = f"{layer}/add"
        if layer != "softmax_linear":
            nodes.append((f"{layer}/Relu", "Relu", [f"{layer}/add"]))
            layer_input = f"{layer}/Relu"
    nodes += [
        ("xentropy", "SparseSoftmaxCrossEntropyWithLogits", [layer_input, "labels"]),
        ("xentropy_mean", "Mean", ["xentropy"]),
        ("GradientDescent", "ApplyGradientDescent", ["xentropy_mean", "global_step"]),
        ("InTopK", "InTopK", [layer_input, "labels"]),
        ("Sum", "Sum", ["InTopK"]),
    ]
    return nodes


@contextmanager
def reported_as_write_errors(log_dir):
    """An OSError while writing events (a full disk, say) becomes a WriteError naming log_dir and why."""
    try:
        yield
    except OSError as error:
        raise WriteError(f"writing TensorBoard events in {log_dir} failed: {error.strerror or error}; the "
                         "checkpoints saved so far are intact") from None


class Summaries:
    """One run's event file; a resumed run passes purge_step so that events after it are hidden."""

    def __init__(self, log_dir, purge_step=None):
        from tensorboardX import summary
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2

        self.log_dir, self._summary, self._proto = log_dir, summary, event_pb2
        with reported_as_write_errors(log_dir):
            # Event files are named by the second they were opened; the suffix keeps a run resumed
            # within the same second from replacing the file it continues.
            self.writer = EventsWriter(os.path.join(log_dir, "events"), filename_suffix=f".{uuid.uuid4().hex[:12]}")
        if purge_step is not None:  # TensorBoard drops this file's earlier events at or after purge_step
            self._write(self._proto.Event(step=purge_step,
                                          session_log=self._proto.SessionLog(status=self._proto.SessionLog.START)))

    def _write(self, event, flush=False):
        event.wall_time = time.time()
        with reported_as_write_errors(self.log_dir):
            self.writer.write_event(event)
            if flush:
                self.writer.flush()

    def add_graph(self):
        from tensorboardX.proto.graph_pb2 import GraphDef
        from tensorboardX.proto.node_def_pb2 import NodeDef

        graph = GraphDef(node=[NodeDef(name=name, op=op, input=inputs) for name, op, inputs in tutorial_graph()])
        self._write(self._proto.Event(graph_def=graph.SerializeToString()))

    def add_loss(self, step, value):
        self._write(self._proto.Event(step=step, summary=self._summary.scalar("loss", value)), flush=True)

    def add_precision(self, step, split, value):
        self._write(self._proto.Event(step=step, summary=self._summary.scalar(f"precision/{split}", value)))

    def add_histograms(self, step, variables):
        for index, (name, value) in enumerate(variables.items()):
            histogram = self._summary.histogram(name, value, tensorflow_buckets())
            self._write(self._proto.Event(step=step, summary=histogram), flush=index + 1 == len(variables))

    def close(self):
        with reported_as_write_errors(self.log_dir):
            self.writer.close()
