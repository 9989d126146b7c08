"""Command line: `mnist-gpu [train] FLAGS` (the tutorial's flags), `mnist-gpu eval`, `predict`, `check`.

Exit codes: 0 done; 2 a bad flag (a parse error prints the usage, a refusal at run time one
line: a log_dir holding a run, or in use by another run); 1 any other expected failure (bad data,
a checkpoint that fails its checks, no GPU, a file that cannot be written, a diverging loss), one
line `mnist-gpu: error: ...`; 130 / 143 interrupted by SIGINT / SIGTERM.
"""
import argparse
import os
import sys

from . import __version__
from .backends import BACKEND_NAMES, CUDA_GRAPH_MODES, BackendUnavailable, CudaGraphError
from .checkpoint import CheckpointError
from .durable import WriteError
from .flag_values import FlagError, non_negative_int, positive_float, positive_int
from .idx_files import DATASETS, DataError
from .locations import default_input_data_dir
from .runs import default_root
from .trainer import DIVERGED_LOSS, Log, TrainingDiverged, TrainingInterrupted, run_evaluation, run_training

COMMANDS = ("train", "eval", "predict", "check")


def add_data_flags(parser):
    parser.add_argument("--input_data_dir", default=default_input_data_dir(),
                        help="Directory to put the input data.")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                        help="auto: cuda when a usable GPU and the GPU extras are present, else cpu (fused Numba "
                        "kernels); numpy is the reference.")
    parser.add_argument("--source_url", default=None,
                        help="Download the data files from this URL prefix instead of the default mirrors.")


def add_training_flags(parser):
    """The tutorial's flags, with its defaults, plus run management, --backend, --seed and the data source."""
    parser.add_argument("--learning_rate", type=positive_float, default=0.01,
                        help="Initial learning rate. Training stops (exit 1) when the loss becomes NaN or infinite, "
                        f"or is above 10 ln 10 = {DIVERGED_LOSS:.1f} at two loss reads in a row (100 steps apart): "
                        "every run starts near ln 10 = 2.3, and one that learns never climbs back that far.")
    parser.add_argument("--max_steps", type=non_negative_int, default=2000, help="Number of steps to run trainer.")
    parser.add_argument("--hidden1", type=positive_int, default=128, help="Number of units in hidden layer 1.")
    parser.add_argument("--hidden2", type=positive_int, default=32, help="Number of units in hidden layer 2.")
    parser.add_argument("--batch_size", type=positive_int, default=100,
                        help="Batch size; at most the smallest split (5000). Evaluation counts the split's whole "
                        "batches, as the tutorial does.")
    add_data_flags(parser)
    parser.add_argument("--log_dir", default=None,
                        help="Directory to put the log data. Without it, each run gets a new folder under "
                        f"{default_root()}, named by its start time (UTC), and --resume continues the newest one.")
    parser.add_argument("--fake_data", action="store_true", help="If true, uses fake data for unit testing.")
    parser.add_argument("--seed", type=non_negative_int, default=None,
                        help="Seed for initial weights and shuffling; a run with the same seed repeats exactly. "
                        "Without it, a random seed of at most 10 digits, printed in the run's first line.")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="mnist", help="MNIST or Fashion-MNIST.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue the run in --log_dir (without --log_dir: the newest run that has a "
                        "checkpoint) from its latest valid checkpoint, exactly.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Delete the run already in --log_dir (checkpoints, events) and start fresh.")
    parser.add_argument("--max_to_keep", type=positive_int, default=5, help="Checkpoints to keep (newest).")
    parser.add_argument("--cuda_graph", choices=CUDA_GRAPH_MODES, default="auto",
                        help="The cuda backend's training step: on, one CUDA graph replayed each step; off, prepared "
                        "launches issued one by one; auto, the graph when its first step matches the eager step "
                        "bit for bit, else eager with a note saying why.")


def add_checkpoint_flag(parser):
    parser.add_argument("--checkpoint", default=None,
                        help="A model.ckpt-<step>.safetensors file, or a log_dir (its latest valid checkpoint). "
                        f"Without it, the newest valid checkpoint of the runs under {default_root()}.")


def add_evaluation_flags(parser):
    add_checkpoint_flag(parser)
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="Evaluation batch size (default: the checkpoint's).")
    add_data_flags(parser)
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="Also write the test set's confusion matrix and misclassified digits (PNG) and a "
                        "Markdown report (per-class precision and recall, the most confused pairs) into DIR.")


def add_prediction_flags(parser):
    add_checkpoint_flag(parser)
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="As for training.")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="Image files (PNG, JPEG, GIF, BMP, TIFF, WebP, PPM) of any size, colour or background; "
                        "each is prepared as MNIST's digits were (grayscale, ink white on black, cropped to the ink, "
                        "longer side 20 pixels, centred by its centre of mass in 28 x 28).")


def build_parser():
    parser = argparse.ArgumentParser(prog="mnist-gpu", description="TensorFlow's Mechanics 101 MNIST tutorial "
                                     "with hand-written GPU kernels.")
    parser.add_argument("--version", action="version", version=f"mnist-gpu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    defaults_shown = argparse.ArgumentDefaultsHelpFormatter
    train = commands.add_parser("train", help="train and evaluate the tutorial's network (the default command)",
                                formatter_class=defaults_shown)
    add_training_flags(train)
    evaluate = commands.add_parser("eval", help="evaluate a saved checkpoint on the train, validation and test sets",
                                   formatter_class=defaults_shown)
    add_evaluation_flags(evaluate)
    predict = commands.add_parser("predict", help="label digits in image files with a saved checkpoint: one line "
                                  "per image, its label and probability", formatter_class=defaults_shown)
    add_prediction_flags(predict)
    commands.add_parser("check", help="versions, which backends are usable here, and every op and 100 training "
                        "steps of each against the NumPy reference (exit 1 if any check fails)")
    return parser


class _RaisingParser(argparse.ArgumentParser):
    """The same flags for Python callers: a bad value raises FlagError instead of exiting."""

    def error(self, message):
        raise FlagError(message)


COMMAND_FLAGS = {"train": add_training_flags, "eval": add_evaluation_flags, "predict": add_prediction_flags}


def parse_flags(command="train", **values):
    """The Namespace the command line would parse for `command`, from keyword arguments named like its flags.

    Every value goes through the command line's own parser (its types, checks and defaults), so
    flags built in Python can never differ from typed ones. An unknown name is a TypeError
    naming it; a bad value a FlagError.
    """
    parser = _RaisingParser(prog=f"mnist-gpu {command}")
    COMMAND_FLAGS[command](parser)
    options = {action.dest: action for action in parser._actions if action.option_strings and action.dest != "help"}
    argv = []
    for name, value in values.items():
        if name not in options:
            raise TypeError(f"unknown flag {name!r} for {command}; expected one of {', '.join(sorted(options))}")
        action = options[name]
        if action.nargs == 0:  # a switch such as --fake_data
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            argv += [action.option_strings[0]] if value else []
        elif value is not None:
            argv += [action.option_strings[0], str(value)]
    return parser.parse_args(argv)


def error_line(error):
    print(f"mnist-gpu: error: {error}", file=sys.stderr)


def main(argv=None):
    """Entry point; returns the process exit code (see the module's docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "train")  # `mnist-gpu --max_steps 10` trains, like the tutorial's script
    flags = build_parser().parse_args(argv)  # a parse error prints the usage and exits with 2
    try:
        if flags.command == "check":
            from .check import run_check

            return run_check()
        if flags.command == "predict":
            from .api import run_prediction

            return run_prediction(flags, Log())
        if flags.command == "eval":
            run_evaluation(flags, Log())
        else:
            run_training(flags, Log())
    except FlagError as error:
        error_line(error)
        return 2
    except (DataError, BackendUnavailable, CudaGraphError, TrainingDiverged, CheckpointError, WriteError) as error:
        error_line(error)
        return 1
    except TrainingInterrupted as interrupted:
        print(f"mnist-gpu: {interrupted}", file=sys.stderr)
        return interrupted.exit_code
    except KeyboardInterrupt:  # before training took over the signal, or after it let go
        print("mnist-gpu: interrupted; nothing was saved", file=sys.stderr)
        return 130
    return 0


def main_exit():
    """Console-script and `python -m mnist_gpu` entry point: run, flush, and leave without interpreter teardown.

    Everything a run writes is closed before main returns. Python's teardown after that (Numba's
    LLVM, freeing a quarter GB of objects) took 0.15-0.2 s of a 1.5 s tutorial run, and os._exit
    skips it; the two standard streams are flushed first.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to flush into
            pass
    os._exit(code)
