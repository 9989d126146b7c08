"""TensorBoard event files, written with tensorboardX's event-file writer (no TensorFlow needed).

Scalars: `loss` every 100 steps (the tutorial's one summary), `precision/<split>` at each
evaluation; histograms of every variable at each checkpoint; and the model graph as a GraphDef
whose node names carry the tutorial's name scopes, so TensorBoard's Graphs tab draws
hidden1 -> hidden2 -> softmax_linear like the original. At each evaluation, the test set's
pictures (pictures.py): the images `test/confusion_matrix` and `test/misclassified`, and the
Markdown text `test/confusion_table` (the matrix and per-class precision and recall). Once per
run, with its first checkpoint: the text `provenance` (what made the run, as JSON: provenance.py)
and the run's flags for the HParams tab (a session start; TensorBoard takes its metrics from the
run's scalars, so the tab lists each run's flags beside its final loss and precisions).

Events are written in the calling thread (tensorboardX's EventsWriter, not its SummaryWriter,
which writes from a background thread): a full disk or a vanished folder is an OSError raised
where it happens, which the trainer reports in one line, instead of a traceback from a thread.
The file is flushed (and fsync'ed, ~12 ms) before each checkpoint commits and at the end, not at
every loss as the tutorial did (20 fsyncs, 0.25 s a run): a resumed run purges the events after
its checkpoint, and finds every one before it. tensorboardX is imported only when a run writes its first event.
"""
import functools
import os
import time
import uuid
from contextlib import contextmanager

from .durable import failure_reason
from .errors import WriteError
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


def hparam_value(value):
    """A flag's value as the HParams tab can hold it: a number (a double), text or a switch; None is left out.

    An integer a double cannot hold exactly (a seed of more than 15 digits, say) becomes text; text
    is stored as UTF-8, so a path's bytes that are not UTF-8 are written escaped (\\xff), as printed.
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2 ** 53:
        return str(value)
    if isinstance(value, str):
        from .log import printable

        return printable(value)
    return value


@contextmanager
def reported_as_write_errors(log_dir):
    """An OSError while writing events (a full disk, say) becomes a WriteError naming log_dir and why."""
    try:
        yield
    except OSError as error:
        raise WriteError(f"writing TensorBoard events in {log_dir} failed: {failure_reason(error)}; the "
                         "checkpoints saved so far are intact") from None


class Summaries:
    """One run's event file; a resumed run passes purge_step so that events after it are hidden."""

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.writer = None  # the file is opened, and tensorboardX imported (~90 ms), by the first event

    def _open(self):
        from tensorboardX import summary
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2

        self._summary, self._proto = summary, event_pb2
        # Event files are named by the second they were opened (and the host), and TensorBoard reads them in
        # name order: a run resumed within the same second must sort after the file it continues, or its
        # purge comes before the events it purges. So the suffix starts with the file's place among the
        # log_dir's event files (one run writes a log_dir at a time: runs.py's lock), then a random part:
        # a run that replaces another (--overwrite) within the second does not reuse a name a running
        # TensorBoard has read to some offset.
        earlier = sum(name.startswith(EVENT_FILE_PREFIX) for name in os.listdir(self.log_dir))
        self.writer = EventsWriter(os.path.join(self.log_dir, "events"),
                                   filename_suffix=f".{earlier:06d}.{uuid.uuid4().hex[:8]}")
        if self.purge_step is not None:  # TensorBoard drops this file's earlier events at or after purge_step
            self._write(self._proto.Event(step=self.purge_step,
                                          session_log=self._proto.SessionLog(status=self._proto.SessionLog.START)))

    def _write(self, event):
        event.wall_time = time.time()
        with reported_as_write_errors(self.log_dir):
            self.writer.write_event(event)

    def _event(self, **fields):
        with reported_as_write_errors(self.log_dir):
            if self.writer is None:
                self._open()
        return self._proto.Event(**fields)

    def add_graph(self):
        from tensorboardX.proto.graph_pb2 import GraphDef
        from tensorboardX.proto.node_def_pb2 import NodeDef

        event = self._event()
        graph = GraphDef(node=[NodeDef(name=name, op=op, input=inputs) for name, op, inputs in tutorial_graph()])
        event.graph_def = graph.SerializeToString()
        self._write(event)

    def add_loss(self, step, value):
        event = self._event(step=step)
        event.summary.CopyFrom(self._summary.scalar("loss", value))
        self._write(event)

    def add_precision(self, step, split, value):
        event = self._event(step=step)
        event.summary.CopyFrom(self._summary.scalar(f"precision/{split}", value))
        self._write(event)

    def add_histograms(self, step, variables):
        for name, value in variables.items():
            event = self._event(step=step)
            event.summary.CopyFrom(self._summary.histogram(name, value, tensorflow_buckets()))
            self._write(event)

    def add_run(self, step, record, hparams):
        """The run's provenance record (as a JSON text) and its flags for the HParams tab; once per run."""
        import json

        event = self._event(step=step)
        event.summary.CopyFrom(self._text("provenance", f"```json\n{json.dumps(record, indent=2)}\n```"))
        self._write(event)
        _, session_start, _ = self._summary.hparams({name: hparam_value(value) for name, value in hparams.items()}, {})
        event = self._event(step=step)
        event.summary.CopyFrom(session_start)
        self._write(event)

    def add_pictures(self, step, pictures, table_markdown):
        """An evaluation's pictures (pictures.Pictures) and its confusion table (Markdown) for the test set."""
        from tensorboardX.proto.summary_pb2 import Summary

        event = self._event(step=step)
        for tag, picture in (("test/confusion_matrix", pictures.confusion_matrix),
                             ("test/misclassified", pictures.misclassified)):
            image = Summary.Image(height=picture.height, width=picture.width, colorspace=picture.channels,
                                  encoded_image_string=picture.png)
            event.summary.value.add(tag=tag, image=image)
        # Its own tag: TensorBoard keeps one plugin per tag, so a text cannot share the image's.
        event.summary.value.append(self._text("test/confusion_table", table_markdown).value[0])
        self._write(event)

    def _text(self, tag, markdown):
        """A summary for TensorBoard's Text tab, tagged `tag` (tensorboardX's own appends "/text_summary")."""
        summary = self._summary.text(tag, markdown)
        summary.value[0].tag = tag
        return summary

    def flush(self):
        """Every event written so far, on disk (flushed and fsync'ed): before each checkpoint commits."""
        if self.writer is not None:
            with reported_as_write_errors(self.log_dir):
                self.writer.flush()

    def close(self):
        if self.writer is not None:
            with reported_as_write_errors(self.log_dir):
                self.writer.close()
