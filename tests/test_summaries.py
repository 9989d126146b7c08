"""TensorBoard event files, read back with TensorBoard's own reader."""
import os

import pytest
from tensorboard.backend.event_processing import event_accumulator

from helpers import run_main

VARIABLES = ["hidden1/weights", "hidden1/biases", "hidden2/weights", "hidden2/biases",
             "softmax_linear/weights", "softmax_linear/biases"]


def read_events(log_dir):
    accumulator = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture
def train(capsys, mnist_dir):
    def train(log_dir, *flags):
        code, lines, error = run_main(capsys, "--input_data_dir", mnist_dir, "--log_dir", str(log_dir),
                                      "--backend", "numpy", *flags)
        assert code == 0, error
        return lines
    return train


def test_scalars_histograms_and_graph(train, tmp_path):
    lines = train(tmp_path, "--seed", "1", "--max_steps", "1500")
    events = read_events(tmp_path)
    tags = events.Tags()
    assert set(tags["scalars"]) == {"loss", "precision/train", "precision/validation", "precision/test"}
    loss = events.Scalars("loss")
    assert [event.step for event in loss] == list(range(0, 1500, 100))
    printed = [float(line.split("loss = ")[1].split(" ")[0]) for line in lines if line.startswith("Step")]
    assert [round(event.value, 2) for event in loss] == pytest.approx(printed, abs=0.0051)
    test_precision = events.Scalars("precision/test")
    assert [event.step for event in test_precision] == [999, 1499]
    printed_precision = [float(line.rsplit(": ", 1)[1]) for line in lines if line.startswith("  Num examples")]
    assert test_precision[-1].value == pytest.approx(printed_precision[-1], abs=5e-5)
    assert set(tags["histograms"]) == set(VARIABLES)
    assert [event.step for event in events.Histograms("hidden1/weights")] == [999, 1499]
    assert events.Histograms("hidden1/weights")[0].histogram_value.num == 784 * 128
    nodes = {node.name: node for node in events.Graph().node}
    for layer, source in (("hidden1", "images"), ("hidden2", "hidden1/Relu"), ("softmax_linear", "hidden2/Relu")):
        assert nodes[f"{layer}/MatMul"].op == "MatMul"
        assert list(nodes[f"{layer}/MatMul"].input) == [source, f"{layer}/weights"]
        assert nodes[f"{layer}/weights"].op == "VariableV2" and f"{layer}/biases" in nodes
    assert nodes["hidden1/Relu"].op == "Relu" and "softmax_linear/Relu" not in nodes
    assert list(nodes["xentropy"].input) == ["softmax_linear/add", "labels"]
    assert "InTopK" in nodes and "global_step" in nodes


def test_event_files_opened_in_the_same_second_sort_in_the_order_they_were_opened(tmp_path, monkeypatch):
    """TensorBoard reads a log_dir's event files in name order, and names carry only the second: a run resumed
    within the same second as the run it continues must still come after it (its purge refers to earlier events)."""
    from tensorboardX import event_file_writer

    from mnist_gpu.summaries import Summaries

    monkeypatch.setattr(event_file_writer.time, "time", lambda: 1764578000.25)  # every file opened in one second
    opened = []
    for step in range(12):  # a run, then eleven resumes of it
        summaries = Summaries(str(tmp_path), purge_step=step * 100 or None)
        summaries.add_loss(step * 100, 1.0)
        summaries.close()
        new = sorted(set(os.listdir(tmp_path)) - set(opened))
        assert len(new) == 1, new  # each its own file (a shared name would append to the run it resumes)
        opened += new
    assert sorted(os.listdir(tmp_path)) == opened and len(opened) == 12


def test_resumed_run_appends_to_the_same_log_dir(train, tmp_path):
    train(tmp_path, "--seed", "1", "--max_steps", "1000")
    train(tmp_path, "--resume", "--max_steps", "1300")
    events = read_events(tmp_path)
    assert [event.step for event in events.Scalars("loss")] == list(range(0, 1300, 100))
    assert [event.step for event in events.Scalars("precision/validation")] == [999, 1299]
