"""Checkpoints: safetensors files of every variable plus what an exact resume needs, saved durably.

`log_dir/model.ckpt-<step>.safetensors` holds the variables by their TF names, `global_step`, the
training DataSet's row order, and in its text metadata the model-shaping flags, the DataSet's
position and generator state, what made it ("provenance": versions, commit, device, flags; see
provenance.py), and a SHA-256 of all of that, checked on load. The TF-style text
state file `log_dir/checkpoint` lists the kept checkpoints (oldest first) and is written last: it
is the commit point, so a crash at any instant leaves the previous checkpoint listed and whole.
safetensors is a code-free format: loading a checkpoint never runs code (unlike pickle).

A checkpoint is a file people copy, share and download, and anyone can recompute its hash: the
hash only detects damage. After it, every field is checked against the schema (`check`), and the
state file's entries must be plain checkpoint names of its own folder: whatever a file says,
reading a checkpoint opens nothing else, and pruning deletes only this run's own checkpoints.
"""
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import stat

import numpy as np

from . import model as mnist
from .durable import failure_reason, replace_durably, temporary_beside, write_bytes_durably
from .errors import CheckpointError, WriteError
from .flag_values import non_negative_int, positive_float, positive_int
from .idx_files import DATASETS
from .input_data import split_sizes
from .regular_files import Refused, open_regular, read_at_most, read_bounded, read_exactly, size_words

STATE_FILE = "checkpoint"
PREFIX = "model.ckpt"
SUFFIX = ".safetensors"
# 2 added the metadata last_read and stopped.loss, which a reader of 1 refuses: it says "a newer format" instead of
# calling the file damaged. A 1 is read by the same schema (without them, or with them: written in between).
FORMAT = "mnist_gpu checkpoint 2"
READ_FORMATS = ("mnist_gpu checkpoint 1", FORMAT)
STEP_TENSOR = "global_step"
ORDER_TENSOR = "data/train/order"
NAME_PATTERN = re.compile(re.escape(PREFIX) + r"-(0|[1-9][0-9]*)" + re.escape(SUFFIX))
STATE_LINE = re.compile(r'(model_checkpoint_path|all_model_checkpoint_paths): "([^"]*)"')
MAX_STATE_BYTES = 16 * 2 ** 20  # ours take one line (~45 bytes) per kept checkpoint
LATEST_ATTEMPTS = 5  # reads of a state file that a run keeps changing under a reader
HEADER_LENGTH_BYTES = 8  # safetensors: the header's length, little-endian
MAX_HEADER_BYTES = 16 * 2 ** 20  # ours take a few kB (provenance included)
SLACK_BYTES = 2 ** 20  # read beyond twice what a checkpoint's flags imply (size_limit)
MAX_BYTES_WITHOUT_FLAGS = 64 * 2 ** 20  # read of a file whose flags say no shape: it fails its hash or its schema


@dataclasses.dataclass
class Checkpoint:
    """Everything saved at one step: variables, global_step, flags, and the training data position."""

    variables: dict  # TF name -> float32 array
    global_step: int
    flags: dict  # hidden1, hidden2, batch_size, learning_rate, seed, dataset, fake_data
    data_order: np.ndarray
    data_position: dict
    path: str = ""
    provenance: dict = dataclasses.field(default_factory=dict)  # what made it (provenance.py)
    # A population's member that stopped training at step s: {"step": s, "why": text, "loss": its last loss read,
    # None where not finite} (the results' final loss, across a resume; older checkpoints have no "loss").
    stopped: dict = None
    # {"step": s, "loss": x}: the last loss read (every 100 steps) before this checkpoint; the divergence rule
    # compares the next read with it, so a resumed run stops where an uninterrupted one would
    last_read: dict = None


def a_loss(value):
    """Whether a JSON value read back is a loss: a finite number >= 0 (a cross-entropy)."""
    return type(value) in (int, float) and 0 <= value < math.inf


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
    tensors[STEP_TENSOR] = np.array(checkpoint.global_step, dtype=np.int64)
    tensors[ORDER_TENSOR] = np.ascontiguousarray(checkpoint.data_order, dtype=np.int32)
    metadata = {"format": FORMAT, "flags": json.dumps(checkpoint.flags, sort_keys=True),
                "data_position": json.dumps(checkpoint.data_position, sort_keys=True)}
    if checkpoint.provenance:
        metadata["provenance"] = json.dumps(checkpoint.provenance, sort_keys=True)
    if checkpoint.stopped is not None:
        metadata["stopped"] = json.dumps(checkpoint.stopped, sort_keys=True)
    if checkpoint.last_read is not None:
        metadata["last_read"] = json.dumps(checkpoint.last_read, sort_keys=True)
    metadata["sha256"] = content_hash(tensors, metadata)
    from safetensors.numpy import save_file  # imported when the first checkpoint is written

    with temporary_beside(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
        replace_durably(temporary, path)


def read(path, follow_links=True):
    """Load and verify a checkpoint: its hash, then its schema; any violation raises CheckpointError naming the file.

    Only a regular file is read, at most size_limit bytes of it (read_file); follow_links=False
    refuses a link at `path` itself (a name from the state file).
    """
    metadata, tensors = read_file(path, follow_links)
    recorded = metadata.pop("sha256", None)
    actual = content_hash(tensors, metadata)
    if actual != recorded:
        raise CheckpointError(f"{path}: hash mismatch: contents hash to {actual[:16]}..., "
                              f"the file records {recorded[:16]}...; the file is damaged")
    return check(path, metadata, tensors)


def opened(path, follow_links=True):
    """A descriptor of the regular file `path` and its fstat (regular_files.open_regular), or a CheckpointError."""
    try:
        return open_regular(path, follow_links)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except Refused as error:
        raise CheckpointError(f"{path}: {error}") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read: {failure_reason(error)}") from None


def unreadable(path, why):
    return CheckpointError(f"{path}: not a readable safetensors checkpoint ({why})")


def read_header(path, descriptor, size):
    """(length of the safetensors header, its metadata) read from the descriptor's start; CheckpointError if none.

    safetensors' layout: an 8-byte little-endian length N, N bytes of JSON (the tensors' dtypes,
    shapes and offsets, and "__metadata__", strings only), then the tensors' bytes.
    """
    prefix = read_exactly(descriptor, HEADER_LENGTH_BYTES)
    if len(prefix) < HEADER_LENGTH_BYTES:
        raise unreadable(path, f"{len(prefix)} bytes is too short for a safetensors header")
    length = int.from_bytes(prefix, "little")
    if length > MAX_HEADER_BYTES or HEADER_LENGTH_BYTES + length > size:
        raise unreadable(path, f"its first 8 bytes give a header of {length} bytes, in a file of {size}")
    try:
        header = json.loads(read_exactly(descriptor, length))
    except (ValueError, RecursionError):
        raise unreadable(path, "its header is not JSON") from None
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not (isinstance(metadata, dict) and all(isinstance(value, str) for value in metadata.values())):
        raise unreadable(path, "its header is not a safetensors header")
    return length, dict(metadata)


def size_limit(header_length, metadata):
    """The most bytes a checkpoint with this header is read to: the header, twice the tensors its flags imply, 1 MiB.

    A written checkpoint has exactly the tensors its flags imply; the slack leaves room for the
    files the schema refuses field by field (a float64 variable, an order of another data set).
    Flags that do not say a shape (damaged, or crafted) allow MAX_BYTES_WITHOUT_FLAGS.
    """
    flags = parse_json(metadata.get("flags", ""))
    try:
        shapes = mnist.variable_shapes(flags["hidden1"], flags["hidden2"])
        train = split_sizes(flags["dataset"], flags["fake_data"])["train"]
        if not all(FLAG_CHECKS[name][0](flags[name]) for name in ("hidden1", "hidden2", "dataset", "fake_data")):
            raise ValueError
    except (TypeError, KeyError, ValueError):
        return HEADER_LENGTH_BYTES + header_length + MAX_BYTES_WITHOUT_FLAGS
    implied = sum(4 * math.prod(shape) for shape in shapes.values()) + 8 + 4 * train  # float32s, int64, int32s
    return HEADER_LENGTH_BYTES + header_length + 2 * implied + SLACK_BYTES


def read_file(path, follow_links=True):
    """(metadata, tensors) of the checkpoint file `path`, its format checked; CheckpointError naming the file.

    Only a regular file is read (regular_files.py: a FIFO, device, socket or folder is refused
    unread), and only after its header: a file larger than size_limit is refused unread.
    """
    descriptor, status = opened(path, follow_links)
    try:
        length, metadata = read_header(path, descriptor, status.st_size)
        found = metadata.get("format")
        if found not in READ_FORMATS or "sha256" not in metadata:
            if isinstance(found, str) and found.startswith(FORMAT.rsplit(" ", 1)[0] + " "):
                raise CheckpointError(f"{path}: format {found!r} is not one this mnist_gpu reads "
                                      f"({' or '.join(map(repr, READ_FORMATS))}): a newer mnist_gpu's?")
            raise CheckpointError(f"{path}: not an mnist_gpu checkpoint (format {found!r})")
        limit = size_limit(length, metadata)
        if status.st_size > limit:
            raise CheckpointError(f"{path}: {size_words(status.st_size)}, more than a checkpoint of its flags may "
                                  f"be ({size_words(limit)}); only its header was read")
        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            data = read_at_most(descriptor, limit, "a checkpoint of its flags")
        except Refused as error:
            raise CheckpointError(f"{path}: {error}") from None
    finally:
        os.close(descriptor)
    from safetensors.numpy import load

    try:
        tensors = {name: array.copy() for name, array in load(data).items()}  # writable, as safe_open gave them
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise unreadable(path, error) from None
    return metadata, tensors


# The schema. Besides "format" (checked first) and "sha256", the metadata (str values, as safetensors
# requires) holds exactly these JSON objects:
JSON_FIELDS = ("flags", "data_position")
# What made the file (versions, backend, ...): any JSON object; a stopped member's step, why and last loss; the last
# loss read before the checkpoint.
OPTIONAL_JSON_FIELDS = ("provenance", "stopped", "last_read")
FLAG_CHECKS = {  # flag: (holds, what it must be): the command line's own ranges (flag_values.py)
    "hidden1": (positive_int.holds, positive_int.expected),
    "hidden2": (positive_int.holds, positive_int.expected),
    "batch_size": (positive_int.holds, positive_int.expected),
    "learning_rate": (positive_float.holds, positive_float.expected),
    "seed": (non_negative_int.holds, non_negative_int.expected),
    "dataset": (lambda value: isinstance(value, str) and value in DATASETS, "one of " + ", ".join(DATASETS)),
    "fake_data": (lambda value: isinstance(value, bool), "true or false"),
}
POSITION_FIELDS = ("index_in_epoch", "epochs_completed", "generator")
GENERATOR_FIELDS = {"bit_generator", "state", "has_uint32", "uinteger"}  # NumPy's PCG64 state, as default_rng has it


NOT_JSON = object()


def parse_json(text):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than Python's stack
        return NOT_JSON


def check(path, metadata, tensors):
    """The Checkpoint that `metadata` (hash removed) and `tensors` describe, or a CheckpointError naming the field.

    Every variable of the architecture the flags describe, float32, finite, of the shape they imply;
    nothing unexpected; flags complete and within the command line's ranges; global_step >= 0;
    the training order a permutation of the training set; the position within it; the generator
    state one NumPy loads. A float64 (or any other dtype) variable is refused, not converted:
    mnist_gpu trains and saves float32 only, so such a file was made elsewhere.
    """
    def refuse(field, problem):
        raise CheckpointError(f"{path}: {field} {problem}")

    unexpected = sorted(set(metadata) - {"format", *JSON_FIELDS, *OPTIONAL_JSON_FIELDS})
    if unexpected:
        refuse(f"metadata {unexpected[0]!r}", "is not a field of an mnist_gpu checkpoint")
    parsed = {}
    for field in JSON_FIELDS + OPTIONAL_JSON_FIELDS:
        if field not in metadata:
            if field in OPTIONAL_JSON_FIELDS:
                continue
            refuse(f"metadata {field!r}", "is missing")
        parsed[field] = parse_json(metadata[field])
        if parsed[field] is NOT_JSON:
            refuse(f"metadata {field!r}", "is not JSON")
        if not isinstance(parsed[field], dict):
            refuse(f"metadata {field!r}", f"is a JSON {type(parsed[field]).__name__}, not an object")
    flags = parsed["flags"]
    for name, (holds, expected) in FLAG_CHECKS.items():
        if name not in flags:
            refuse(f"flags.{name}", "is missing")
        if not holds(flags[name]):
            refuse(f"flags.{name}", f"is {json.dumps(flags[name])[:40]}; expected {expected}")
    if len(flags) > len(FLAG_CHECKS):
        refuse(f"flags.{sorted(set(flags) - set(FLAG_CHECKS))[0]}", "is not a flag a checkpoint records")
    sizes = split_sizes(flags["dataset"], flags["fake_data"])
    if flags["batch_size"] > min(sizes.values()):
        smallest = min(sizes, key=sizes.get)
        refuse("flags.batch_size", f"is {flags['batch_size']}; the {smallest} set has {sizes[smallest]} examples")

    shapes = mnist.variable_shapes(flags["hidden1"], flags["hidden2"])
    unexpected = sorted(set(tensors) - set(shapes) - {STEP_TENSOR, ORDER_TENSOR})
    if unexpected:
        refuse(f"tensor {unexpected[0]!r}", "is not a variable of the tutorial's network")
    for name, shape in [*shapes.items(), (STEP_TENSOR, ()), (ORDER_TENSOR, (sizes["train"],))]:
        if name not in tensors:
            refuse(f"tensor {name}", "is missing")
        value = tensors[name]
        dtype = {STEP_TENSOR: np.int64, ORDER_TENSOR: np.int32}.get(name, np.float32)
        if value.dtype != dtype:
            refuse(f"tensor {name}", f"is {value.dtype}; expected {np.dtype(dtype)}")
        if value.shape != shape:
            implied = f"flags hidden1 = {flags['hidden1']}, hidden2 = {flags['hidden2']} imply" if name in shapes \
                else f"{flags['dataset']}{' fake data' if flags['fake_data'] else ''} implies"
            refuse(f"tensor {name}", f"has shape {list(value.shape)}; {implied} {list(shape)}")
        if dtype == np.float32 and not np.isfinite(value).all() and "stopped" not in parsed:
            refuse(f"tensor {name}", "holds NaN or infinite values")
    global_step = int(tensors[STEP_TENSOR])
    if global_step < 0:
        refuse(STEP_TENSOR, f"is {global_step}; expected >= 0")
    order = tensors[ORDER_TENSOR]
    if order.min() < 0 or order.max() >= len(order) or np.bincount(order, minlength=len(order)).min() != 1:
        refuse(f"tensor {ORDER_TENSOR}", f"is not a permutation of the training set's {len(order)} rows")
    position = parsed["data_position"]
    check_position(refuse, position, len(order), global_step)
    stopped = parsed.get("stopped")
    if stopped is not None and not (set(stopped) - {"loss"} == {"step", "why"}
                                    and non_negative_int.holds(stopped["step"]) and stopped["step"] <= global_step
                                    and isinstance(stopped["why"], str)
                                    and (stopped.get("loss") is None or a_loss(stopped["loss"]))):
        refuse("metadata 'stopped'", f"is not {{\"step\": 0..{global_step}, \"why\": text, \"loss\": a finite "
               "number >= 0 or null}")
    last_read = parsed.get("last_read")
    if last_read is not None and not (set(last_read) == {"step", "loss"} and non_negative_int.holds(last_read["step"])
                                      and last_read["step"] < global_step and a_loss(last_read["loss"])):
        refuse("metadata 'last_read'", f"is not {{\"step\": 0..{global_step - 1}, \"loss\": a finite number >= 0}}")
    variables = {name: tensors[name] for name in shapes}
    return Checkpoint(variables=variables, global_step=global_step, flags=flags, data_order=order,
                      data_position=position, path=path, provenance=parsed.get("provenance", {}), stopped=stopped,
                      last_read=last_read)


def check_position(refuse, position, examples, global_step):
    """The DataSet's position: index within the epoch's order, epochs completed (at most one a step), PCG64 state."""
    if set(position) != set(POSITION_FIELDS):
        odd = sorted(set(position) ^ set(POSITION_FIELDS))[0]
        refuse(f"data_position.{odd}", "is missing" if odd in POSITION_FIELDS else "is not a position field")
    for field, limit in (("index_in_epoch", examples), ("epochs_completed", global_step)):
        if not (non_negative_int.holds(position[field]) and position[field] <= limit):
            refuse(f"data_position.{field}", f"is {json.dumps(position[field])[:40]}; expected an integer in "
                   f"0..{limit}")
    state = position["generator"]
    words = state.get("state") if isinstance(state, dict) else None
    if not (isinstance(state, dict) and set(state) == GENERATOR_FIELDS and state["bit_generator"] == "PCG64"
            and isinstance(words, dict) and set(words) == {"state", "inc"}
            and all(non_negative_int.holds(words[word]) and words[word] < 2 ** 128 for word in words)
            and words["inc"] % 2 == 1 and state["has_uint32"] in (0, 1) and type(state["has_uint32"]) is int
            and non_negative_int.holds(state["uinteger"]) and state["uinteger"] < 2 ** 32):
        refuse("data_position.generator", "is not a NumPy PCG64 generator state")
    try:
        np.random.PCG64().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        refuse("data_position.generator", f"cannot be loaded by NumPy ({error})")


def read_state(log_dir):
    """The state file's checkpoint names, oldest first ([] when there is none).

    Each entry must be a plain name model.ckpt-<step>.safetensors of log_dir itself; anything else
    (a path, "../", a line that is no entry) is a CheckpointError naming the file and the entry:
    whatever the file says, nothing outside the folder is opened or deleted.
    """
    path = os.path.join(log_dir, STATE_FILE)
    try:
        data = read_bounded(path, MAX_STATE_BYTES, "a state file")
    except FileNotFoundError:
        return []
    except Refused as error:
        raise CheckpointError(f"{path}: the state file is {error}") from None
    except OSError as error:
        raise CheckpointError(f"{path}: the state file cannot be read: {failure_reason(error)}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: the state file is not UTF-8 text") from None
    newest, names = None, []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip(" \t\r")
        if not line:
            continue
        entry = STATE_LINE.fullmatch(line)
        if entry is None:
            raise CheckpointError(f"{path}: line {number} is not a checkpoint entry: {line[:80]!r}")
        key, name = entry.groups()
        if NAME_PATTERN.fullmatch(name) is None:
            raise CheckpointError(f"{path}: line {number} names {name[:240]!r}, not a checkpoint of this folder "
                                  f"({checkpoint_name('<step>')}); nothing it names is opened or deleted")
        if name in names or (key == "model_checkpoint_path" and newest is not None):
            raise CheckpointError(f"{path}: line {number} repeats {key} {name!r}")
        if key == "model_checkpoint_path":
            newest = name
        else:
            names.append(name)
    if names[-1:] != ([newest] if newest is not None else []):
        raise CheckpointError(f"{path}: model_checkpoint_path is {newest!r} but the last of "
                              f"all_model_checkpoint_paths is {(names or [None])[-1]!r}; they must agree")
    return names


def state_text(names):
    """TF's text CheckpointState: the newest first, then every kept one, oldest first."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{name}"' for name in names]
    return "\n".join(lines) + "\n"


def checkpoint_name(step):
    return f"{PREFIX}-{step}{SUFFIX}"


def step_words(global_step):
    """A checkpoint's step as everything shows it: the tutorial's index of the last step it holds (model.ckpt-1999,
    "Step 1999", TensorBoard's 1999 hold 2000 steps: global_step, TF's counter, is 2000)."""
    return f"step {global_step - 1}" if global_step else "no step trained"


def saved_seed(path):
    """The seed a checkpoint file's metadata records (its header only, never through a link), or None if it is no
    mnist_gpu checkpoint."""
    try:
        descriptor, status = opened(path, follow_links=False)
    except CheckpointError:
        return None
    try:
        metadata = read_header(path, descriptor, status.st_size)[1]
        seed = json.loads(metadata["flags"])["seed"] if metadata.get("format") in READ_FORMATS else None
    except Exception:  # noqa: BLE001 - any file that is not a readable checkpoint of ours
        return None
    finally:
        os.close(descriptor)
    return seed if non_negative_int.holds(seed) else None


class Saver:
    """Saves checkpoints into log_dir, keeps the newest max_to_keep, and finds the newest good one.

    `note` receives what pruning leaves alone (a listed file it cannot prove is this run's).
    """

    def __init__(self, log_dir, max_to_keep=5, note=None):
        self.log_dir = log_dir
        self.max_to_keep = max_to_keep
        self.note = note or (lambda text: None)
        self.unlisted = []  # (name, seed) of checkpoints no longer listed, kept until prune_unlisted()

    def save(self, step, checkpoint, prune=True):
        """Write model.ckpt-<step>, then commit it in the state file, then prune old ones (`prune` False: kept until
        prune_unlisted(), as a population member's are until the population commits). Returns its path.

        A failed write (a full disk, say) raises WriteError and leaves the state file, and the
        checkpoints it lists, as they were: no temporary file, no unlisted new checkpoint.
        """
        from safetensors import SafetensorError  # what safetensors raises when the disk is full, not an OSError

        name = checkpoint_name(step)
        path = os.path.join(self.log_dir, name)
        listed = read_state(self.log_dir)
        intact = f"the newest saved checkpoint is still {listed[-1]}" if listed else "no checkpoint was saved before"
        existed = os.path.exists(path)
        try:
            write(path, checkpoint)
        except (OSError, SafetensorError) as error:
            raise WriteError(f"saving {path} failed: {failure_reason(error)}; {intact}") from None
        names = [kept for kept in listed if kept != name] + [name]
        pruned, names = names[:-self.max_to_keep], names[-self.max_to_keep:]
        try:
            write_bytes_durably(os.path.join(self.log_dir, STATE_FILE), state_text(names).encode())
        except OSError as error:
            if not existed:  # not listed, and never will be: do not leave it looking like a checkpoint
                with contextlib.suppress(OSError):  # the state file's failure is the one to report
                    os.remove(path)
            raise WriteError(f"saving {os.path.join(self.log_dir, STATE_FILE)} failed: {failure_reason(error)}; "
                             f"{intact}") from None
        self.unlisted += [(old, checkpoint.flags.get("seed")) for old in pruned]
        if prune:
            self.prune_unlisted()
        return path

    def prune_later(self, checkpoint):
        """Delete `checkpoint` (read from this folder) at the next prune_unlisted() unless the state file lists it: a
        resumed population's, named by its population file after its member's list had already moved on."""
        name = os.path.basename(checkpoint.path)
        if name not in read_state(self.log_dir):
            self.unlisted.append((name, checkpoint.flags.get("seed")))

    def prune_unlisted(self):
        """Delete the checkpoints save() took off the list (after the commit point: a crash here only leaves an
        unlisted file)."""
        while self.unlisted:
            self.prune(*self.unlisted.pop(0))

    def prune(self, name, seed):
        """Delete the unlisted checkpoint `name` if it provably is this run's: a plain file of ours with its seed."""
        path = os.path.join(self.log_dir, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode) or seed is None or saved_seed(path) != seed:
            self.note(f"left {path} in place: it is no longer listed, but not provably a checkpoint of this run")
            return
        try:
            os.remove(path)
        except OSError as error:
            self.note(f"could not delete the old checkpoint {path}: {failure_reason(error)}")

    def latest(self):
        """The newest listed checkpoint that verifies, and why newer ones did not.

        A run may commit a checkpoint and prune the one listed before while this reads (`eval`
        during training): when a listed checkpoint fails and the state file has changed meanwhile,
        the new state file is read instead.
        """
        for attempt in range(LATEST_ATTEMPTS):
            names, skipped, found = read_state(self.log_dir), [], None
            for name in reversed(names):
                path = os.path.join(self.log_dir, name)
                try:
                    if os.path.islink(path):  # a name from a file leads nowhere outside its folder
                        raise CheckpointError(f"{path}: a link, not a checkpoint file of this folder; not opened")
                    found = read(path, follow_links=False)
                    break
                except CheckpointError as error:
                    skipped.append(str(error))
            if not skipped or read_state(self.log_dir) == names or attempt + 1 == LATEST_ATTEMPTS:
                break  # else a newer one failed while the state file changed: a save was under way
        if found is not None:
            return found, skipped
        listed = "; ".join(skipped) if skipped else "the state file lists none"
        raise CheckpointError(f"{self.log_dir}: no valid checkpoint to use ({listed})")
