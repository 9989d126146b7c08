"""A population: K members trained by one step program, each an ordinary run of its own (its seed, its learning
rate, its folder). The tutorial's run is a population of one.

`mnist-gpu sweep --seed 1-4 --learning_rate 0.01,0.1` trains the grid of its lists, members that
share a learning rate side by side (the cuda backend's GEMMs take all members in one call each):

    <log_dir>/population.json         which members, with which flags, and the global_step all of them have
                                      saved: the population's commit point (written after every
                                      member's checkpoint of that step, so a resume is exact)
    <log_dir>/lr0.01_seed1/ ...       each member's run folder: checkpoints, events (TensorBoard's
                                      HParams tab compares them side by side), provenance
    <log_dir>/results.csv, results.md one row per member, one per learning rate (mean +- std over
                                      seeds, min, max, and the ensemble of its members)
"""
import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .durable import failure_reason, write_bytes_durably
from .errors import CheckpointError, WriteError
from .flag_values import non_negative_int, positive_float, positive_int
from .regular_files import Refused, read_bounded

POPULATION_FILE = "population.json"
RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
FORMAT = "mnist_gpu population 1"
MEMBER_NAME = re.compile(r"(?:trial(?P<trial>0|[1-9][0-9]*)_h(?P<hidden1>[1-9][0-9]*)x(?P<hidden2>[1-9][0-9]*)"
                         r"_b(?P<batch_size>[1-9][0-9]*)_)?lr(?P<learning_rate>[0-9.e+-]+)_seed(?P<seed>0|[1-9][0-9]*)")
MAX_POPULATION_FILE_BYTES = 64 * 2 ** 20  # 65536 members of ~100 bytes each, with room
SHARED_FLAGS = ("hidden1", "hidden2", "batch_size", "dataset", "fake_data")  # every member's: the model's shape


PRUNED = "pruned"  # how a pruned member's `stopped["why"]` begins (any other stop is a divergence)


def member_name(seed, learning_rate, trial=None, shape=None):
    """A member's folder name: its learning rate (Python's shortest repr, so two rates never share a name), its seed;
    a study's member (search.py) first names its trial and its shape (hidden1, hidden2, batch_size):
    trial7_h64x16_b100_lr0.01_seed1. Only digits, letters, dots and signs: a name never leaves its folder."""
    name = f"lr{float(learning_rate)!r}_seed{seed}"
    if trial is None:
        return name
    hidden1, hidden2, batch_size = shape
    return f"trial{trial}_h{hidden1}x{hidden2}_b{batch_size}_{name}"


def was_pruned(stopped):
    """Whether a member's stop ({"step", "why"}, or None) was a pruning (search.py) rather than a divergence."""
    return stopped is not None and stopped["why"].startswith(PRUNED)


def diverged(member):
    """Whether the member stopped because its loss diverged (not finite, or far above where training starts)."""
    return member.stopped is not None and not was_pruned(member.stopped)


@dataclass
class Member:
    """One member: a run of its own inside the population's step program."""

    name: str  # "" when it is alone (the tutorial's run): its lines carry no prefix
    seed: int
    learning_rate: float
    log_dir: str
    trial: int = None  # the study's trial it belongs to (search.py), else None
    stopped: dict = None  # {"step": s, "why": "..."} once it stopped training (a loss that was not finite, ...)
    losses: dict = field(default_factory=dict)  # step -> loss, every 100 steps
    last_loss: float = math.nan  # the loss of the last step read while it trained
    evaluations: dict = field(default_factory=dict)  # step -> {split: (examples, correct)}

    @property
    def prefix(self):
        return f"{self.name}: " if self.name else ""


def grid(seeds, learning_rates, folder):
    """The members of a sweep: every learning rate with every seed, those of a learning rate side by side."""
    return [Member(member_name(seed, rate), seed, float(rate), os.path.join(folder, member_name(seed, rate)))
            for rate in learning_rates for seed in seeds]


def record(flags, members, global_step):
    """The population file's contents: the shared flags, the members, and the global_step all of them have saved."""
    return {"format": FORMAT, "global_step": global_step, "max_steps": flags.max_steps,
            "flags": {name: getattr(flags, name) for name in SHARED_FLAGS},
            "members": [{"name": member.name, "seed": member.seed, "learning_rate": member.learning_rate,
                         **({} if member.trial is None else {"trial": member.trial})} for member in members]}


def commit(folder, flags, members, global_step):
    """Record, durably and atomically, that every member has saved its checkpoint of `global_step`."""
    path = os.path.join(folder, POPULATION_FILE)
    intact = "it still names the step it named before, which --resume starts from" if os.path.isfile(path) else \
        "no step of this population was committed: it starts again with --overwrite"
    write_durably(path, (json.dumps(record(flags, members, global_step), indent=1) + "\n").encode(), intact)


def write_durably(path, data, intact):
    """write_bytes_durably, a failure a WriteError naming the file, why, and what is `intact`."""
    try:
        write_bytes_durably(path, data)
    except OSError as error:
        raise WriteError(f"saving {path} failed: {failure_reason(error)}; {intact}") from None


def read(folder):
    """The population file of `folder`, checked against its schema; None where there is none.

    Read as a hostile file: a regular file only (never a FIFO or a device), bounded in size, every
    field checked; a member's name must be the one its seed and learning rate give (so a name
    never leads outside the folder). Anything else is a CheckpointError naming the file and the field.
    """
    path = os.path.join(folder, POPULATION_FILE)
    try:
        data = read_bounded(path, MAX_POPULATION_FILE_BYTES, "a population file", follow_links=False)
    except FileNotFoundError:
        return None
    except Refused as error:
        raise CheckpointError(f"{path}: {error}; not a population file") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror}); not a population file") from None

    def refuse(field_name, problem):
        raise CheckpointError(f"{path}: {field_name} {problem}")

    try:
        found = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        refuse("the file", "is not JSON text")
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        refuse("format", f"is not {FORMAT!r}")
    if set(found) != {"format", "global_step", "max_steps", "flags", "members"}:
        refuse("the file", f"has fields {sorted(found)}; expected format, global_step, max_steps, flags, members")
    for name in ("global_step", "max_steps"):
        if not non_negative_int.holds(found[name]):
            refuse(name, "is not an integer >= 0")
    flags = found["flags"]
    checks = {"hidden1": positive_int.holds, "hidden2": positive_int.holds, "batch_size": positive_int.holds,
              "dataset": lambda value: isinstance(value, str), "fake_data": lambda value: isinstance(value, bool)}
    if not isinstance(flags, dict) or set(flags) != set(checks):
        refuse("flags", f"must hold exactly {', '.join(SHARED_FLAGS)}")
    for name, holds in checks.items():
        if not holds(flags[name]):
            refuse(f"flags.{name}", f"is {json.dumps(flags[name])[:40]}")
    members = found["members"]
    if not isinstance(members, list) or not members:
        refuse("members", "is not a list of members")
    names = set()
    shape = (flags["hidden1"], flags["hidden2"], flags["batch_size"])
    for index, member in enumerate(members):
        if not (isinstance(member, dict) and set(member) - {"trial"} == {"name", "seed", "learning_rate"}
                and non_negative_int.holds(member["seed"]) and positive_float.holds(member["learning_rate"])
                and non_negative_int.holds(member.get("trial", 0))
                and member["name"] == member_name(member["seed"], member["learning_rate"], member.get("trial"),
                                                  shape)):
            refuse(f"members[{index}]", "is not a member (name, seed, learning_rate and maybe trial; the name "
                   "lr<rate>_seed<seed>, after trial<trial>_h<hidden1>x<hidden2>_b<batch_size>_ with a trial)")
        if member["name"] in names:
            refuse(f"members[{index}]", f"repeats {member['name']}")
        names.add(member["name"])
    return found


# -- results -----------------------------------------------------------------------------------------------
def group_key(member):
    """Members that differ only by seed form a group (results per group, the ensemble): in a grid those of a learning
    rate, in a study those of a trial."""
    return (member.trial, member.learning_rate)


def member_rows(members):
    """One row per member: its seed, learning rate, last loss, last evaluation's precisions, and whether it stopped
    (a study's members also say their trial, and whether a pruner stopped them)."""
    rows = []
    trials = any(member.trial is not None for member in members)
    for member in members:
        last = member.evaluations[max(member.evaluations)] if member.evaluations else {}
        precision = {split: correct / examples for split, (examples, correct) in last.items()}
        pruned = was_pruned(member.stopped)
        row = {"member": member.name, **({"trial": member.trial} if trials else {}), "seed": member.seed,
               "learning_rate": member.learning_rate, "final_loss": member.last_loss,
               "train": precision.get("train", math.nan), "validation": precision.get("validation", math.nan),
               "test": precision.get("test", math.nan),
               "diverged_at_step": member.stopped["step"] if diverged(member) else ""}
        if trials:
            row["pruned_at_step"] = member.stopped["step"] if pruned else ""
        rows.append(row)
    return rows


def group_rows(members, ensembles):
    """One row per group (a learning rate; in a study, a trial): its members' test precision (mean, sample std, min,
    max), its validation mean, how many diverged, and the test precision of the ensemble (the members' averaged
    softmax)."""
    rows = []
    table = member_rows(members)
    for key in dict.fromkeys(group_key(member) for member in members):
        group = [row for member, row in zip(members, table, strict=True) if group_key(member) == key]
        test = np.array([row["test"] for row in group])
        trial, rate = key
        rows.append({**({} if trial is None else {"trial": trial}), "learning_rate": rate, "members": len(group),
                     "test_mean": float(test.mean()), "test_std": float(test.std(ddof=1)) if len(group) > 1 else 0.0,
                     "test_min": float(test.min()), "test_max": float(test.max()),
                     "validation_mean": float(np.mean([row["validation"] for row in group])),
                     "diverged": sum(row["diverged_at_step"] != "" for row in group),
                     "ensemble_test": ensembles.get(key, math.nan)})
    return rows


def ensemble_precisions(members, test_logits, labels):
    """{group key: test Precision @ 1 of its members' averaged softmax}, counted with in_top_k's rules, over the
    members that did not diverge (a diverged model's softmax is noise, or NaN, which would make every row wrong);
    NaN for a group whose members all diverged.

    test_logits: every member's test logits, a host array [K, N, C] (the evaluation keeps them).
    """
    from .backends.numpy_backend import NumpyBackend
    from .confusion import softmax

    backend = NumpyBackend()
    found = {}
    for key in dict.fromkeys(group_key(member) for member in members):
        indices = [index for index, member in enumerate(members) if group_key(member) == key and not diverged(member)]
        if not indices:
            found[key] = math.nan
            continue
        # The mean as np.mean(..., axis=0, dtype=float32) takes it (each softmax rounded to float32, summed in member
        # order, divided in float64), one member at a time: a group of 1024 never holds 1024 softmaxes at once.
        average = softmax(test_logits[indices[0]]).astype(np.float32)
        for index in indices[1:]:
            average += softmax(test_logits[index]).astype(np.float32)
        np.true_divide(average, np.intp(len(indices)), out=average, casting="unsafe")
        correct = backend.in_top_k(average[None], labels[:len(average)].astype(np.int32), 1)[0]
        found[key] = int(correct) / len(average)
    return found


def write_results(folder, members, ensembles):
    """results.csv (every row, for a program) and results.md (the same, for a person), each replaced atomically."""
    import csv
    import io

    members_table, groups_table = member_rows(members), group_rows(members, ensembles)
    text = io.StringIO()
    for rows in (members_table, groups_table):
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text.write("\n")
    for name, data in ((RESULTS_CSV, text.getvalue()), (RESULTS_MD, results_markdown(members_table, groups_table))):
        write_durably(os.path.join(folder, name), data.encode(), "every member's checkpoint of this step is saved")
    return [RESULTS_CSV, RESULTS_MD]


def results_markdown(members_table, groups_table):
    def number(value, digits=4):
        return "" if isinstance(value, str) else ("nan" if math.isnan(value) else f"{value:.{digits}f}")

    trials = bool(members_table) and "trial" in members_table[0]  # a study's population: its trials, its prunings
    lines = ["# Population results", "", f"| member |{' trial |' if trials else ''} seed | learning rate | final loss "
             f"| train | validation | test | diverged at step |{' pruned at step |' if trials else ''}",
             f"|---|{'---:|' if trials else ''}---:|---:|---:|---:|---:|---:|---:|{'---:|' if trials else ''}"]
    for row in members_table:
        lines.append(f"| {row['member']} |" + (f" {row['trial']} |" if trials else "")
                     + f" {row['seed']} | {row['learning_rate']!r} | {number(row['final_loss'], 2)} | "
                     f"{number(row['train'])} | {number(row['validation'])} | {number(row['test'])} | "
                     f"{row['diverged_at_step']} |" + (f" {row['pruned_at_step']} |" if trials else ""))
    group = "trial" if trials else "learning rate"
    lines += ["", f"Per {group}, over its seeds (test precision; sample std):", "",
              f"| {'trial | ' if trials else ''}learning rate | members | test mean ± std | min | max | "
              "validation mean | diverged | ensemble |",
              f"|{'---:|' if trials else ''}---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [("| " + (f"{row['trial']} | " if trials else "")
               + f"{row['learning_rate']!r} | {row['members']} | {number(row['test_mean'])} ± "
               f"{number(row['test_std'])} | {number(row['test_min'])} | {number(row['test_max'])} | "
               f"{number(row['validation_mean'])} | {row['diverged']} | {number(row['ensemble_test'])} |")
              for row in groups_table]
    return "\n".join(lines) + "\n"
