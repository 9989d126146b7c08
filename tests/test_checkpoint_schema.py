"""A checkpoint's hash proves nothing about its contents: files made inconsistent on purpose, with the hash
recomputed as anyone can (checkpoint.content_hash), are refused field by field, in one line, everywhere."""
import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import mnist_gpu
from mnist_gpu import checkpoint as checkpoints
from mnist_gpu.errors import CheckpointError

from helpers import one_error_line, run_main, snapshot

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--seed", "1"]
CHECKPOINT = "model.ckpt-0.safetensors"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of one step on fake data: its log_dir holds model.ckpt-0 (global_step 1)."""
    log_dir = tmp_path_factory.mktemp("trained") / "run"
    assert mnist_gpu.cli.main([*FAST, "--max_steps", "1", "--log_dir", str(log_dir)]) == 0
    return log_dir


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run to spoil."""
    return shutil.copytree(trained, tmp_path / "run")


def recrafted(path, change):
    """Rewrite the checkpoint at `path` with change(metadata, tensors) applied and its hash recomputed."""
    with safe_open(str(path), framework="numpy") as opened:
        metadata = dict(opened.metadata())
        tensors = {name: opened.get_tensor(name) for name in opened.keys()}
    del metadata["sha256"]
    change(metadata, tensors)
    metadata["sha256"] = checkpoints.content_hash(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)


def in_json(field, edit):
    """A change that edits the JSON object in metadata[field]."""
    def change(metadata, tensors):
        value = json.loads(metadata[field])
        edit(value)
        metadata[field] = json.dumps(value)
    return change


def tensor(name, value):
    def change(metadata, tensors):
        tensors[name] = value(tensors[name]) if callable(value) else value
    return change


def removed(name):
    def change(metadata, tensors):
        del tensors[name]
    return change


def metadata_entry(field, text):
    def change(metadata, tensors):
        metadata[field] = text
    return change


def duplicated_row(order):
    order = order.copy()
    order[1] = order[0]
    return order


# name: (how it is spoiled, what the error must say after "<file>: ")
ISSUE_CASES = {  # the cases of the issue, each of which gave a traceback or was accepted
    "flag missing": (in_json("flags", lambda flags: flags.pop("batch_size")), "flags.batch_size is missing"),
    "weights of another shape": (tensor("hidden1/weights", np.zeros((784, 6), np.float32)),
                                 "tensor hidden1/weights has shape [784, 6]; flags hidden1 = 8, hidden2 = 4 imply "
                                 "[784, 8]"),
    "variable missing": (removed("hidden2/biases"), "tensor hidden2/biases is missing"),
    "flags not JSON": (metadata_entry("flags", "{hidden1: 8"), "metadata 'flags' is not JSON"),
    "negative global_step": (tensor("global_step", np.array(-5, np.int64)), "global_step is -5; expected >= 0"),
    "position far past the data": (in_json("data_position", lambda position: position.update(index_in_epoch=10**9)),
                                   "data_position.index_in_epoch is 1000000000; expected an integer in 0..10000"),
    "float64 weights": (tensor("softmax_linear/weights", lambda weights: weights.astype(np.float64)),
                        "tensor softmax_linear/weights is float64; expected float32"),
}
MORE_CASES = {
    "unexpected tensor": (tensor("hidden3/weights", np.zeros((4, 4), np.float32)),
                          "tensor 'hidden3/weights' is not a variable of the tutorial's network"),
    "flag of the wrong type": (in_json("flags", lambda flags: flags.update(hidden1="8")),
                               'flags.hidden1 is "8"; expected a positive integer'),
    "flag out of range": (in_json("flags", lambda flags: flags.update(hidden2=0)),
                          "flags.hidden2 is 0; expected a positive integer"),
    "learning rate NaN": (in_json("flags", lambda flags: flags.update(learning_rate=float("nan"))),
                          "flags.learning_rate is NaN; expected a finite number > 0"),
    "learning rate an integer": (in_json("flags", lambda flags: flags.update(learning_rate=1)),
                                 "flags.learning_rate is 1; expected a finite number > 0"),
    "negative seed": (in_json("flags", lambda flags: flags.update(seed=-1)),
                      "flags.seed is -1; expected an integer >= 0"),
    "boolean seed": (in_json("flags", lambda flags: flags.update(seed=True)),
                     "flags.seed is true; expected an integer >= 0"),
    "unknown dataset": (in_json("flags", lambda flags: flags.update(dataset="cifar10")),
                        'flags.dataset is "cifar10"; expected one of mnist, fashion_mnist'),
    "fake_data not a boolean": (in_json("flags", lambda flags: flags.update(fake_data=1)),
                                "flags.fake_data is 1; expected true or false"),
    "unknown flag": (in_json("flags", lambda flags: flags.update(momentum=0.9)),
                     "flags.momentum is not a flag a checkpoint records"),
    "batch larger than a split": (in_json("flags", lambda flags: flags.update(batch_size=10001)),
                                  "flags.batch_size is 10001; the train set has 10000 examples"),
    "order not a permutation": (tensor("data/train/order", duplicated_row),
                                "tensor data/train/order is not a permutation of the training set's 10000 rows"),
    "order of another data set": (tensor("data/train/order", np.arange(55000, dtype=np.int32)),
                                  "tensor data/train/order has shape [55000]; mnist fake data implies [10000]"),
    "order of another type": (tensor("data/train/order", lambda order: order.astype(np.int64)),
                              "tensor data/train/order is int64; expected int32"),
    "more epochs than steps": (in_json("data_position", lambda position: position.update(epochs_completed=2)),
                               "data_position.epochs_completed is 2; expected an integer in 0..1"),
    "negative position": (in_json("data_position", lambda position: position.update(index_in_epoch=-1)),
                          "data_position.index_in_epoch is -1; expected an integer in 0..10000"),
    "position field missing": (in_json("data_position", lambda position: position.pop("generator")),
                               "data_position.generator is missing"),
    "another generator": (in_json("data_position", lambda position: position["generator"].update(
        bit_generator="MT19937")), "data_position.generator is not a NumPy PCG64 generator state"),
    "generator increment even": (in_json("data_position", lambda position: position["generator"]["state"].update(
        inc=2)), "data_position.generator is not a NumPy PCG64 generator state"),
    "generator word too large": (in_json("data_position", lambda position: position["generator"]["state"].update(
        state=2**128)), "data_position.generator is not a NumPy PCG64 generator state"),
    "position not an object": (metadata_entry("data_position", "[]"),
                               "metadata 'data_position' is a JSON list, not an object"),
    "unexpected metadata": (metadata_entry("comment", "hi"), "metadata 'comment' is not a field of an mnist_gpu "
                                                             "checkpoint"),
    "provenance not an object": (metadata_entry("provenance", '"mnist_gpu 0.1.0"'),
                                 "metadata 'provenance' is a JSON str, not an object"),
    "last read loss NaN": (metadata_entry("last_read", '{"step": 0, "loss": NaN}'),
                           'metadata \'last_read\' is not {"step": 0..0, "loss": a finite number >= 0}'),
    "last read after the step": (metadata_entry("last_read", '{"step": 1, "loss": 2.3}'),
                                 'metadata \'last_read\' is not {"step": 0..0, "loss": a finite number >= 0}'),
    "last read with more": (metadata_entry("last_read", '{"step": 0, "loss": 2.3, "path": "/etc"}'),
                            'metadata \'last_read\' is not {"step": 0..0, "loss": a finite number >= 0}'),
    "stopped loss infinite": (metadata_entry("stopped", '{"step": 0, "why": "pruned", "loss": Infinity}'),
                              'metadata \'stopped\' is not {"step": 0..1, "why": text, "loss": a finite number >= 0 '
                              'or null}'),
    "stopped loss negative": (metadata_entry("stopped", '{"step": 0, "why": "pruned", "loss": -5}'),
                              'metadata \'stopped\' is not {"step": 0..1, "why": text, "loss": a finite number >= 0 '
                              'or null}'),
    "stopped with more": (metadata_entry("stopped", '{"step": 0, "why": "pruned", "path": "/etc"}'),
                          'metadata \'stopped\' is not {"step": 0..1, "why": text, "loss": a finite number >= 0 or '
                          'null}'),
    "weights not finite": (tensor("hidden1/biases", lambda biases: np.full_like(biases, np.inf)),
                           "tensor hidden1/biases holds NaN or infinite values"),
    "global_step of another type": (tensor("global_step", np.array(1, np.int32)),
                                    "tensor global_step is int32; expected int64"),
    "global_step missing": (removed("global_step"), "tensor global_step is missing"),
    "a newer format": (metadata_entry("format", "mnist_gpu checkpoint 3"),
                       "format 'mnist_gpu checkpoint 3' is not one this mnist_gpu reads ('mnist_gpu checkpoint 1' or "
                       "'mnist_gpu checkpoint 2'): a newer mnist_gpu's?"),
}


@pytest.mark.parametrize("case", [*ISSUE_CASES, *MORE_CASES])
def test_every_violation_is_a_checkpoint_error_naming_the_file_and_the_field(run, case):
    change, message = {**ISSUE_CASES, **MORE_CASES}[case]
    path = run / CHECKPOINT
    recrafted(path, change)
    with pytest.raises(CheckpointError) as error:
        checkpoints.read(str(path))
    assert str(error.value) == f"{path}: {message}"


def test_a_checkpoint_of_the_first_format_still_reads(run):
    """Format 2 added last_read and stopped.loss (a reader of 1 refused them as damage); a 1 reads as before."""
    path = run / CHECKPOINT
    assert checkpoints.read(str(path)).global_step == 1  # as written: format 2
    recrafted(path, metadata_entry("format", "mnist_gpu checkpoint 1"))
    assert checkpoints.read(str(path)).global_step == 1


@pytest.mark.parametrize("case", ISSUE_CASES)
def test_eval_resume_and_load_checkpoint_refuse_it_in_one_line(run, capsys, case):
    change, message = ISSUE_CASES[case]
    path = run / CHECKPOINT
    recrafted(path, change)
    before = snapshot(run)
    code, lines, error = run_main(capsys, "eval", "--checkpoint", str(path), "--backend", "numpy")
    assert code == 1 and lines == []
    assert one_error_line(error) == f"mnist-gpu: error: {path}: {message}"
    code, lines, error = run_main(capsys, *FAST, "--log_dir", str(run), "--resume", "--max_steps", "5")
    assert code == 1 and lines == []
    assert one_error_line(error) == f"mnist-gpu: error: {run}: no valid checkpoint to use ({path}: {message})"
    assert snapshot(run) == before
    with pytest.raises(CheckpointError, match=f"^{run}: no valid checkpoint to use \\({path}: "):
        mnist_gpu.load_checkpoint(str(run), backend="numpy")


def test_a_provenance_object_is_accepted(run):
    """What made the file (recorded by another part of mnist_gpu) is optional, and any JSON object."""
    path = run / CHECKPOINT
    original = checkpoints.read(str(path))
    recrafted(path, metadata_entry("provenance", json.dumps({"mnist_gpu": "0.1.0", "backend": "numpy"})))
    loaded = checkpoints.read(str(path))
    assert loaded.global_step == original.global_step and loaded.flags == original.flags
    for name, value in original.variables.items():
        np.testing.assert_array_equal(loaded.variables[name], value)


def test_a_checkpoint_written_by_a_run_passes_every_check(trained):
    loaded = checkpoints.read(str(trained / CHECKPOINT))
    assert loaded.global_step == 1 and loaded.flags["hidden1"] == 8
    assert sorted(loaded.variables) == sorted(mnist_gpu.model.variable_shapes(8, 4))
