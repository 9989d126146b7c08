"""TensorBoard event files through tensorboardX (a maintained writer that needs no TensorFlow).

Scalars: `loss` every 100 steps (the tutorial's one summary), `precision/<split>` at each
evaluation; histograms of every variable at each checkpoint; and the model graph as a GraphDef
whose node names carry the tutorial's name scopes, so TensorBoard's Graphs tab draws
hidden1 -> hidden2 -> softmax_linear like the original.
"""
import uuid

from tensorboardX import SummaryWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.graph_pb2 import GraphDef
from tensorboardX.proto.node_def_pb2 import NodeDef

from .model import LAYERS

EVENT_FILE_PREFIX = "events.out.tfevents."


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


def graph_def():
    graph = GraphDef()
    for name, op, inputs in tutorial_graph():
        graph.node.append(NodeDef(name=name, op=op, input=inputs))
    return graph


class Summaries:
    """One run's TensorBoard writer; a resumed run passes purge_step so stale later events are hidden."""

    def __init__(self, log_dir, purge_step=None):
        # Event files are named by the second they were opened; the suffix keeps a run resumed
        # within the same second from replacing the file it continues.
        self.writer = SummaryWriter(log_dir, purge_step=purge_step, filename_suffix=f".{uuid.uuid4().hex[:12]}")

    def add_graph(self):
        self.writer.file_writer.add_event(Event(graph_def=graph_def().SerializeToString()))

    def add_loss(self, step, value):
        self.writer.add_scalar("loss", value, step)
        self.writer.flush()

    def add_precision(self, step, split, value):
        self.writer.add_scalar(f"precision/{split}", value, step)

    def add_histograms(self, step, variables):
        for name, value in variables.items():
            self.writer.add_histogram(name, value, step)
        self.writer.flush()

    def close(self):
        self.writer.close()
