"""Provenance: what made a run, in every checkpoint and event file, on eval's stderr, in HParams."""
import calendar
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

import mnist_gpu
from mnist_gpu import checkpoint as checkpoints
from mnist_gpu import provenance
from mnist_gpu.flags import build_parser
from mnist_gpu.log import Log
from mnist_gpu.trainer import run_training

from helpers import run_main

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_FLAGS = ("--backend", "numpy", "--seed", "7", "--max_steps", "1000", "--batch_size", "50")


def parse_utc(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def git(folder, *arguments):
    return subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_dir):
    """A 1000-step numpy run: (log_dir, the flags as parsed, the start and end times)."""
    log_dir = tmp_path_factory.mktemp("run")
    argv = ["train", "--input_data_dir", mnist_dir, "--log_dir", str(log_dir), *RUN_FLAGS]
    flags = build_parser().parse_args(argv)
    started = time.time()
    run_training(flags, Log(verbose=False))
    return log_dir, flags, started, time.time()


def expected_checkout():
    """(commit, changes) of the checkout mnist_gpu was imported from, or None for an installed copy."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(mnist_gpu.__file__)))
    if not os.path.exists(os.path.join(checkout, ".git")) or shutil.which("git") is None:
        return None
    return git(checkout, "rev-parse", "HEAD"), git(checkout, "status", "--porcelain") != ""


def check_record(record, flags, started, ended):
    assert record["mnist_gpu"] == mnist_gpu.__version__
    assert record["python"] == platform.python_version()
    assert record["libraries"]["numpy"] == np.__version__
    assert set(record["libraries"]) <= {"numpy", "numba", "numba-cuda", "cupy", "nvmath-python"}
    assert record["backend"]["name"] == "numpy" and record["backend"]["processor"]
    assert record["flags"] == {name: value for name, value in vars(flags).items() if name != "command"}
    assert record["seed"] == 7
    assert int(started) <= parse_utc(record["started"]) <= ended
    checkout = expected_checkout()
    if checkout is None:  # CI installs a copy: no commit to name
        assert "git" not in record
    else:
        assert (record["git"]["commit"], record["git"]["changes"]) == checkout


def test_every_checkpoint_records_what_made_it(run):
    log_dir, flags, started, ended = run
    for name in checkpoints.read_state(str(log_dir)):
        check_record(checkpoints.read(os.path.join(log_dir, name)).provenance, flags, started, ended)
    loaded = mnist_gpu.load_checkpoint(str(log_dir), backend="numpy")
    assert loaded.provenance == checkpoints.read(loaded.path).provenance and loaded.provenance["seed"] == 7


def test_the_event_file_records_it_and_hparams_list_the_flags(run):
    log_dir, flags, started, ended = run
    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    assert "provenance" in events.Tags()["tensors"]
    (text,) = events.Tensors("provenance")
    assert text.step == 0
    markdown = text.tensor_proto.string_val[0].decode()
    assert markdown.startswith("```json\n") and markdown.endswith("\n```")
    record = json.loads(markdown[len("```json\n"):-len("\n```")])
    check_record(record, flags, started, ended)
    assert record == checkpoints.read(os.path.join(log_dir, "model.ckpt-999.safetensors")).provenance

    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["learning_rate"].number_value == 0.01
    assert start.hparams["batch_size"].number_value == 50
    assert start.hparams["backend"].string_value == "numpy"
    assert start.hparams["seed"].number_value == 7
    assert start.hparams["fake_data"].bool_value is False


def session_groups(root):
    """What TensorBoard's HParams tab lists for the runs under root: {run: ({hparam: value}, {metric: value})}.

    TensorBoard's own hparams backend, over its own event multiplexer, as `tensorboard --logdir root`
    serves /data/plugin/hparams/session_groups.
    """
    from google.protobuf import json_format
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
    hparams = backend_context.Context(base_plugin.TBContext(data_provider=provider, logdir=str(root),
                                                            multiplexer=multiplexer))
    request_context = context.RequestContext()
    experiment = hparams.experiment_from_metadata(request_context, "", True,
                                                  hparams.hparams_metadata(request_context, ""),
                                                  hparams.hparams_from_data_provider(request_context, "", None))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, include_metrics=True,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS],
        col_params=[api_pb2.ColParams(metric=metric.name) for metric in experiment.metric_infos]
        + [api_pb2.ColParams(hparam=info.name) for info in experiment.hparam_infos])
    response = list_session_groups.Handler(request_context, hparams, "", request).run()
    return {group.name: ({name: json_format.MessageToDict(value) for name, value in group.hparams.items()},
                         {metric.name.tag: metric.value for metric in group.metric_values})
            for group in response.session_groups}


def test_tensorboards_hparams_tab_lists_each_runs_flags_and_final_precisions(tmp_path, capsys, mnist_dir):
    finals = {}
    for name, rate in (("a", "0.01"), ("b", "0.02")):
        code, lines, error = run_main(capsys, "--input_data_dir", mnist_dir, "--log_dir", str(tmp_path / name),
                                      "--backend", "numpy", "--seed", "3", "--max_steps", "300",
                                      "--learning_rate", rate)
        assert code == 0, error
        finals[name] = [float(line.rsplit(": ", 1)[1]) for line in lines if line.startswith("  Num examples")]
    groups = session_groups(tmp_path)
    assert set(groups) == {"a", "b"}
    for name, rate in (("a", 0.01), ("b", 0.02)):
        flags, metrics = groups[name]
        assert flags["learning_rate"] == rate and flags["max_steps"] == 300 and flags["seed"] == 3
        assert flags["log_dir"] == str(tmp_path / name) and flags["backend"] == "numpy"
        for split, printed in zip(("train", "validation", "test"), finals[name], strict=True):
            assert metrics[f"precision/{split}"] == pytest.approx(printed, abs=5e-5)


def test_eval_prints_one_line_of_it(run, capsys, mnist_dir):
    log_dir, flags, started, _ = run
    code, lines, error = run_main(capsys, "eval", "--checkpoint", str(log_dir), "--input_data_dir", mnist_dir,
                                  "--backend", "numpy")
    assert code == 0, error
    described = [line for line in error.splitlines() if "made by" in line]
    assert len(described) == 1 and len(error.splitlines()) == 1
    record = checkpoints.read(os.path.join(log_dir, "model.ckpt-999.safetensors")).provenance
    assert described[0] == f"mnist-gpu: model.ckpt-999.safetensors: {provenance.describe(record)}"
    for part in (f"mnist_gpu {mnist_gpu.__version__}", f"backend numpy (processor {record['backend']['processor']})",
                 f"Python {platform.python_version()}", f"numpy {np.__version__}", f"started {record['started']}",
                 "seed 7", "--learning_rate 0.01", "--batch_size 50", f"--log_dir {log_dir}"):
        assert part in described[0], part
    assert "--fake_data" not in described[0]  # a switch that is off is not typed
    assert lines[0] == f"Evaluating {log_dir / 'model.ckpt-999.safetensors'} (step 999)"


@pytest.mark.slow
def test_provenance_is_gathered_at_the_first_checkpoint_not_before_the_first_step(tmp_path, mnist_dir, monkeypatch):
    calls = []
    printed = []

    class Recording(Log):
        def line(self, text):
            printed.append(text)

    real = provenance.gather
    monkeypatch.setattr(provenance, "gather", lambda *arguments: calls.append(list(printed)) or real(*arguments))
    flags = build_parser().parse_args(["train", "--input_data_dir", mnist_dir, "--log_dir", str(tmp_path),
                                       "--backend", "numpy", "--seed", "1", "--max_steps", "2000"])
    run_training(flags, Recording(verbose=False))
    assert len(calls) == 1  # once a run, for both checkpoints and the event file
    assert calls[0][-1].startswith("Step 900: ")  # after the last step line before the first checkpoint


def small_checkpoint():
    from mnist_gpu import model as mnist

    flags = {"hidden1": 5, "hidden2": 4, "batch_size": 3, "learning_rate": 0.01, "seed": 0, "dataset": "mnist",
             "fake_data": False}
    position = {"index_in_epoch": 0, "epochs_completed": 0,
                "generator": np.random.default_rng(0).bit_generator.state}
    return checkpoints.Checkpoint(mnist.initial_variables(5, 4, seed=0), 1, flags, np.arange(55000), position)


def crafted_checkpoint(path, provenance_text):
    """A checkpoint whose metadata "provenance" is `provenance_text`, with a correct hash (anyone can make one)."""
    import safetensors
    from safetensors.numpy import save_file

    checkpoints.write(path, small_checkpoint())

    with safetensors.safe_open(path, framework="numpy") as opened:
        metadata = dict(opened.metadata())
        tensors = {name: opened.get_tensor(name) for name in opened.keys()}
    metadata.pop("sha256")
    metadata["provenance"] = provenance_text
    metadata["sha256"] = checkpoints.content_hash(tensors, metadata)
    save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '"a string"', "[" * 100000])
def test_a_provenance_that_is_not_an_object_is_refused_naming_the_file_and_field(tmp_path, text):
    path = str(tmp_path / "model.ckpt-1.safetensors")
    crafted_checkpoint(path, text)
    with pytest.raises(checkpoints.CheckpointError, match=r"model\.ckpt-1\.safetensors: .*provenance"):
        checkpoints.read(path)


def test_a_hostile_record_is_described_on_one_line(tmp_path, capsys, mnist_dir):
    path = str(tmp_path / "model.ckpt-1.safetensors")
    hostile = {"mnist_gpu": "9\n\x1b[2Jfake", "git": "not an object", "backend": {"name": ["x"], "gpu": 5},
               "libraries": {"numpy\r": "1"}, "flags": {"a\nb": "c\nd", "on": True, "off": False}}
    crafted_checkpoint(path, json.dumps(hostile))
    line = provenance.describe(checkpoints.read(path).provenance)
    assert line.isprintable() and "\\n" in line and "\\x1b" in line
    assert "--on" in line and "--off" not in line
    assert provenance.describe({}) == "made by an mnist_gpu that recorded no provenance"


def test_an_older_checkpoint_without_provenance_still_loads(tmp_path):
    import safetensors

    path = str(tmp_path / "model.ckpt-1.safetensors")
    checkpoints.write(path, small_checkpoint())  # no provenance given: no metadata key

    with safetensors.safe_open(path, framework="numpy") as opened:
        assert "provenance" not in opened.metadata()
    assert checkpoints.read(path).provenance == {}


def copy_of_the_package(destination):
    source = os.path.dirname(os.path.abspath(mnist_gpu.__file__))
    shutil.copytree(source, destination / "mnist_gpu", ignore=shutil.ignore_patterns("__pycache__", "data"))


def git_state_of(folder):
    """provenance.git_state() of the mnist_gpu copy in `folder`, in a fresh process."""
    code = "import json; from mnist_gpu import provenance; print(json.dumps(provenance.git_state()))"
    environment = {**os.environ, "PYTHONPATH": str(folder)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=folder,
                            check=True)
    return json.loads(result.stdout)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")
def test_git_commit_and_changes_of_a_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    copy_of_the_package(checkout)
    # As the project's own checkout: its .gitignore keeps the bytecode that importing the copy writes (where
    # PYTHONDONTWRITEBYTECODE is not set) from counting as a change.
    shutil.copy(os.path.join(REPOSITORY, ".gitignore"), checkout / ".gitignore")
    git(checkout.parent, "init", "-q", str(checkout))
    git(checkout, "add", "-A")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start")
    commit = git(checkout, "rev-parse", "HEAD")
    assert git_state_of(checkout) == {"commit": commit, "changes": False}
    with open(checkout / "mnist_gpu" / "model.py", "a", encoding="utf-8") as stream:
        stream.write("# edited\n")  # a tracked file changed
    assert git_state_of(checkout) == {"commit": commit, "changes": True}
    git(checkout, "checkout", "--", "mnist_gpu/model.py")
    (checkout / "notes.txt").write_text("new\n", encoding="utf-8")  # an untracked file
    assert git_state_of(checkout) == {"commit": commit, "changes": True}
    # A copy inside some other repository (a virtual environment in it, say) is not that repository's code.
    copy_of_the_package(checkout / "site")
    assert git_state_of(checkout / "site") is None


def test_hparams_hold_what_a_double_cannot_as_text():
    from mnist_gpu.summaries import hparam_value

    assert hparam_value(2 ** 64 + 1) == str(2 ** 64 + 1)  # a 20-digit seed would lose its last digits
    assert hparam_value(2 ** 53) == 2 ** 53 and hparam_value(0.01) == 0.01 and hparam_value(True) is True


def test_a_resumed_checkpoint_shows_the_runs_it_continues(tmp_path, capsys):
    """Before, a resumed checkpoint's record was the resume's alone (its start, `--max_steps 1200 --resume`)."""
    common = ("--fake_data", "--log_dir", str(tmp_path), "--seed", "5")
    assert run_main(capsys, *common, "--backend", "numpy", "--max_steps", "1000", "--learning_rate", "0.02")[0] == 0
    first = checkpoints.Saver(str(tmp_path)).latest()[0].provenance
    code, _, error = run_main(capsys, *common, "--backend", "cpu", "--max_steps", "1100", "--learning_rate", "0.02",
                              "--resume")
    assert code == 0, error
    assert "mnist-gpu: resuming on the cpu backend; model.ckpt-999.safetensors was trained on the numpy backend: " \
           "the run goes on, but its numbers will not repeat an uninterrupted numpy run bit for bit" in error
    assert run_main(capsys, *common, "--backend", "cpu", "--max_steps", "1200", "--learning_rate", "0.02",
                    "--resume")[0] == 0
    record = checkpoints.Saver(str(tmp_path)).latest()[0].provenance
    assert [part["checkpoint"] for part in record["continues"]] == ["model.ckpt-999.safetensors",
                                                                     "model.ckpt-1099.safetensors"]
    assert [part["step"] for part in record["continues"]] == [999, 1099]
    oldest = record["continues"][0]
    assert {name: oldest[name] for name in ("started", "flags", "backend", "seed")} == \
        {name: first[name] for name in ("started", "flags", "backend", "seed")}
    assert oldest["flags"]["max_steps"] == 1000 and not oldest["flags"]["resume"]
    assert record["flags"]["resume"] and record["flags"]["max_steps"] == 1200
    described = provenance.describe(record)
    assert described.endswith(f"; resuming model.ckpt-1099.safetensors of a run started "
                              f"{record['continues'][1]['started']}, which continued 1 earlier run (the first "
                              f"started {first['started']})")


def test_a_members_record_names_its_sweep_in_words_not_as_flags(tmp_path, capsys):
    """A member's flags hold its sweep's folder (and a study's, its trial): eval typed them as `--population_dir ...`
    and `--trial 3`, flags no command takes."""
    grid = tmp_path / "grid"
    assert run_main(capsys, "sweep", "--fake_data", "--backend", "numpy", "--seed", "1,2", "--max_steps", "3",
                    "--log_dir", str(grid))[0] == 0
    record = checkpoints.Saver(str(grid / "lr0.01_seed1")).latest()[0].provenance
    assert record["flags"]["population_dir"] == str(grid)
    described = provenance.describe(record)
    assert "--population_dir" not in described and f"--log_dir {grid / 'lr0.01_seed1'}" in described
    assert described.endswith(f"; a member of the sweep in {grid}")
    assert provenance.describe({"flags": {"population_dir": "runs/s", "trial": 3, "seed": 1}}) == \
        "made by mnist_gpu (version unknown); backend (unknown); flags --seed 1; a member of the sweep in runs/s, " \
        "trial 3"
