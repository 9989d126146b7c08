"""Checkpoints: safetensors files of every variable plus what an exact resume needs, saved durably.

`log_dir/model.ckpt-<step>.safetensors` holds the variables by their TF names, `global_step`, the
training DataSet's row order, and in its text metadata the model-shaping flags, the DataSet's
position and generator state, what made it ("provenance": versions, commit, device, flags; see
provenance.py), and a SHA-256 of all of that, checked on load. The TF-style text
state file `log_dir/checkpoint` lists the kept checkpoints (oldest first) and is written last: it
is the commit point, so a crash at any instant leaves the previous checkpoint listed and whole.
safetensors is a code-free format: loading a checkpoint never runs code (unlike pickle).
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .durable import WriteError, replace_durably, temporary_beside, write_bytes_durably

STATE_FILE = "checkpoint"
PREFIX = "model.ckpt"
SUFFIX = ".safetensors"
FORMAT = "mnist_gpu checkpoint 1"
ORDER_TENSOR = "data/train/order"
NAME_PATTERN = re.compile(re.escape(PREFIX) + r"-(\d+)" + re.escape(SUFFIX))


class CheckpointError(Exception):
    """A checkpoint is missing, damaged, or does not fit the flags; the message names the file."""


@dataclass
class Checkpoint:
    """Everything saved at one step: variables, global_step, flags, and the training data position."""

    variables: dict  # TF name -> float32 array
    global_step: int
    flags: dict  # hidden1, hidden2, batch_size, learning_rate, seed, dataset, fake_data
    data_order: np.ndarray
    data_position: dict
    path: str = ""
    provenance: dict = field(default_factory=dict)  # what made it (provenance.py); {} in older checkpoints


def content_hash(tensors, metadata):
    """SHA-256 over the metadata (sorted JSON) and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        array = tensors[name]
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write(path, checkpoint):
    """Write `checkpoint` to `path` atomically and durably (temporary file, fsync, rename)."""
    # safetensors 0.8.0 silently writes wrong data for non-contiguous arrays (its issue 825).
    tensors = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in checkpoint.variables.items()}
    tensors["global_step"] = np.array(checkpoint.global_step, dtype=np.int64)
    tensors[ORDER_TENSOR] = np.ascontiguousarray(checkpoint.data_order, dtype=np.int32)
    metadata = {"format": FORMAT, "flags": json.dumps(checkpoint.flags, sort_keys=True),
                "data_position": json.dumps(checkpoint.data_position, sort_keys=True)}
    if checkpoint.provenance:
        metadata["provenance"] = json.dumps(checkpoint.provenance, sort_keys=True)
    metadata["sha256"] = content_hash(tensors, metadata)
    from safetensors.numpy import save_file  # imported when the first checkpoint is written

    with temporary_beside(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
        replace_durably(temporary, path)


def read(path):
    """Load and verify a checkpoint; any damage raises CheckpointError naming the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    import safetensors

    try:
        with safetensors.safe_open(path, framework="numpy") as opened:
            metadata = dict(opened.metadata() or {})
            tensors = {name: opened.get_tensor(name) for name in opened.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    recorded = metadata.pop("sha256", None)
    if metadata.get("format") != FORMAT or recorded is None:
        raise CheckpointError(f"{path}: not an mnist_gpu checkpoint (format {metadata.get('format')!r})")
    actual = content_hash(tensors, metadata)
    if actual != recorded:
        raise CheckpointError(f"{path}: hash mismatch: contents hash to {actual[:16]}..., "
                              f"the file records {recorded[:16]}...; the file is damaged")
    global_step = int(tensors.pop("global_step"))
    order = tensors.pop(ORDER_TENSOR)
    return Checkpoint(variables=tensors, global_step=global_step, flags=json.loads(metadata["flags"]),
                      data_order=order, data_position=json.loads(metadata["data_position"]), path=path,
                      provenance=read_provenance(path, metadata))


def read_provenance(path, metadata):
    """The optional "provenance" metadata: a JSON object ({} when absent); anything else names the file and field."""
    if "provenance" not in metadata:
        return {}
    try:
        record = json.loads(metadata["provenance"])
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        record = None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: metadata field provenance is not a JSON object")
    return record


def read_state(log_dir):
    """The state file's checkpoint names, oldest first ([] when there is none)."""
    path = os.path.join(log_dir, STATE_FILE)
    if not os.path.exists(path):
        return []
    names = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            match = re.fullmatch(r'all_model_checkpoint_paths: "(.*)"', line.strip())
            if match:
                names.append(match[1])
    return names


def state_text(names):
    """TF's text CheckpointState: the newest first, then every kept one, oldest first."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{name}"' for name in names]
    return "\n".join(lines) + "\n"


def checkpoint_name(step):
    return f"{PREFIX}-{step}{SUFFIX}"


class Saver:
    """Saves checkpoints into log_dir, keeps the newest max_to_keep, and finds the newest good one."""

    def __init__(self, log_dir, max_to_keep=5):
        self.log_dir = log_dir
        self.max_to_keep = max_to_keep

    def save(self, step, checkpoint):
        """Write model.ckpt-<step>, then commit it in the state file, then prune old ones. Returns its path.

        A failed write (a full disk, say) raises WriteError and leaves the state file, and the
        checkpoints it lists, as they were: no temporary file, no unlisted new checkpoint.
        """
        name = checkpoint_name(step)
        path = os.path.join(self.log_dir, name)
        listed = read_state(self.log_dir)
        intact = f"the newest saved checkpoint is still {listed[-1]}" if listed else "no checkpoint was saved before"
        existed = os.path.exists(path)
        try:
            write(path, checkpoint)
        except OSError as error:
            raise WriteError(f"saving {path} failed: {error.strerror or error}; {intact}") from None
        names = [kept for kept in listed if kept != name] + [name]
        pruned, names = names[:-self.max_to_keep], names[-self.max_to_keep:]
        try:
            write_bytes_durably(os.path.join(self.log_dir, STATE_FILE), state_text(names).encode())
        except OSError as error:
            if not existed:  # not listed, and never will be: do not leave it looking like a checkpoint
                os.remove(path)
            raise WriteError(f"saving {os.path.join(self.log_dir, STATE_FILE)} failed: {error.strerror or error}; "
                             f"{intact}") from None
        for old in pruned:  # after the commit point: a crash here only leaves an unlisted file
            old_path = os.path.join(self.log_dir, old)
            if os.path.exists(old_path):
                os.remove(old_path)
        return path

    def latest(self):
        """The newest listed checkpoint that verifies, and the (path, reason) of newer ones that did not."""
        skipped = []
        for name in reversed(read_state(self.log_dir)):
            path = os.path.join(self.log_dir, name)
            try:
                return read(path), skipped
            except CheckpointError as error:
                skipped.append(str(error))
        listed = "; ".join(skipped) if skipped else "the state file lists none"
        raise CheckpointError(f"{self.log_dir}: no valid checkpoint to use ({listed})")


def resolve(path_or_log_dir):
    """A checkpoint file as given, or the newest valid one of a log_dir; and the reasons newer ones were skipped."""
    if os.path.isdir(path_or_log_dir):
        return Saver(path_or_log_dir).latest()
    return read(path_or_log_dir), []
