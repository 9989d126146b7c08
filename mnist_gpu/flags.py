"""Every command's flags, defined once: the command line parses them and `parse_flags` builds them from keywords.

The tutorial's flags keep its names and defaults (fully_connected_feed.py); the rest manage runs,
data, backends and checkpoints. `parse_flags(command, **values)` hands keyword arguments to the
very parser the command line uses, so flags built in Python can never differ from typed ones.
"""
import argparse
import difflib
import re
import sys

from .backends import BACKEND_NAMES, CUDA_GRAPH_MODES
from .errors import NAME, FlagError
from .errors import Flag as NamedFlag
from .flag_values import (
    non_negative_int,
    positive_float,
    positive_int,
    searchable_int,
    searchable_learning_rate,
    seed_list,
)
from .idx_files import DATASETS
from .locations import default_input_data_dir
from .model import DIVERGED_LOSS
from .runs import default_root
from .version import __version__


class Flag:
    """One flag: its name (the Python keyword too; `--name` on the command line) and argparse's keywords."""

    def __init__(self, name, positional=False, **options):
        self.name, self.positional, self.options = name, positional, options

    @property
    def switch(self):
        return self.options.get("action") == "store_true"

    def add_to(self, parser):
        parser.add_argument(self.name if self.positional else f"--{self.name}", **self.options)


def data_flags():
    return [
        Flag("input_data_dir", default=default_input_data_dir(),
             help="Directory to put the input data."),
        Flag("backend", choices=BACKEND_NAMES, default="auto",
             help="auto: cuda when a usable GPU and the GPU extras are present, else cpu (fused Numba kernels); "
             "numpy is the reference."),
        Flag("source_url", default=None,
             help="Download the data files from this URL prefix instead of the default mirrors."),
    ]


def training_flags():
    """The tutorial's flags, with its defaults, plus run management, --backend, --seed and the data source."""
    return [
        Flag("learning_rate", type=positive_float, default=0.01,
             help="Initial learning rate. Training stops (exit 1) when the loss becomes NaN or infinite, or is above "
             f"10 ln 10 = {DIVERGED_LOSS:.1f} at two loss reads in a row (100 steps apart): every run starts near "
             "ln 10 = 2.3, and one that learns never climbs back that far."),
        Flag("max_steps", type=non_negative_int, default=2000, help="Number of steps to run trainer."),
        Flag("hidden1", type=positive_int, default=128, help="Number of units in hidden layer 1."),
        Flag("hidden2", type=positive_int, default=32, help="Number of units in hidden layer 2."),
        Flag("batch_size", type=positive_int, default=100,
             help="Batch size; at most the smallest split (5000). Evaluation counts the split's whole batches, as "
             "the tutorial does."),
        *data_flags(),
        Flag("log_dir", default=None,
             help=f"Directory to put the log data. Without it, each run gets a new folder under {default_root()}, "
             "named by its start time (UTC), and --resume continues the newest one."),
        Flag("fake_data", action="store_true", help="If true, uses fake data for unit testing."),
        Flag("seed", type=non_negative_int, default=None,
             help="Seed for initial weights and shuffling; a run with the same seed repeats exactly. Without it, a "
             "random seed of at most 10 digits, printed in the run's first line."),
        Flag("dataset", choices=tuple(DATASETS), default="mnist", help="MNIST or Fashion-MNIST."),
        Flag("resume", action="store_true",
             help="Continue the run in --log_dir (without --log_dir: the newest run that has a checkpoint) from its "
             "latest valid checkpoint, exactly."),
        Flag("overwrite", action="store_true",
             help="Delete the run already in --log_dir (checkpoints, events) and start fresh."),
        Flag("max_to_keep", type=positive_int, default=5, help="Checkpoints to keep (newest)."),
        Flag("eval_every", type=positive_int, default=1000,
             help="Save a checkpoint and evaluate every this many steps (the tutorial's 1000), and after the last "
             "step."),
        Flag("cuda_graph", choices=CUDA_GRAPH_MODES, default="auto",
             help="The cuda backend's training step: on, one CUDA graph replayed each step; off, prepared launches "
             "issued one by one; auto, the graph when its first step matches the eager step bit for bit, else "
             "eager with a note saying why."),
    ]


SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "halving")
SEARCH_INSTALL = "pip install 'mnist_gpu[sweep]'"


def sweep_flags():
    """Every training flag; --seed and --learning_rate take lists, and the members are their grid. With Optuna
    (search.py): lists of hidden sizes and batch sizes too, ranges that a study searches, and the study's flags."""
    lists = {
        "seed": Flag("seed", type=seed_list, default=None,
                     help="Seeds, separated by commas, integers also as ranges A-B (1-16): each learning rate (each "
                     "trial of a study) is trained with each seed. Without it, one random seed of at most 10 "
                     "digits."),
        "learning_rate": Flag("learning_rate", type=searchable_learning_rate, default=None,
                              help="Learning rates, separated by commas (default 0.01), or a range LOW:HIGH[:log] "
                              "that a study searches (with --trials). A member whose loss diverges stops training at "
                              "that step and the others train on; the command then exits with 3."),
        **{name: Flag(name, type=searchable_int, default=default,
                      help=f"{what}; several separated by commas (grid points of a study) or a range LOW:HIGH[:log] "
                      "(searched, with --trials). Members of equal hidden and batch sizes share a population.")
           for name, default, what in (("hidden1", 128, "Units in hidden layer 1"),
                                       ("hidden2", 32, "Units in hidden layer 2"),
                                       ("batch_size", 100, "Batch size"))},
    }
    study = [
        Flag("trials", type=positive_int, default=None,
             help="Trials of the study (each a configuration, trained with every --seed): needed with a range; a "
             "grid's default is all of its points. Every option below runs the sweep as an Optuna study "
             f"({SEARCH_INSTALL})."),
        Flag("sampler", choices=SAMPLERS, default=None,
             help="How the study picks configurations: grid (every point of the lists, the default without a range), "
             "tpe (the default with one), random."),
        Flag("prune", choices=PRUNERS, default="none",
             help="Stop trials that lag at an evaluation (every --eval_every steps): median (Optuna's "
             "MedianPruner), halving (its SuccessiveHalvingPruner), none."),
        Flag("population", type=positive_int, default=None,
             help="Most members (trials x seeds) a worker trains in one population (default 16), fewer where memory "
             "allows fewer: trials of equal hidden and batch sizes share one."),
        Flag("storage", default=None,
             help="The study's Optuna storage: an RDB URL (postgresql://user@host/db) that workers on many machines "
             "share. Without it, a journal file in --log_dir (study.journal): workers on one machine, or on "
             "machines sharing --log_dir over NFS."),
        Flag("study", default=None,
             help="The study's name in --storage (default mnist-gpu); a study made by another sweep's flags is "
             "refused."),
        Flag("heartbeat", type=positive_float, default=None,
             help="Seconds between a worker's heartbeats on its running trials (default 30). A running trial whose "
             "heartbeat stops for 3 of them (its worker was killed, its machine rebooted) is taken over by another "
             "worker, from its population's last checkpoint where that worker can read it."),
    ]
    return [lists.get(flag.name, flag) for flag in training_flags()] + study


def checkpoint_flag():
    return Flag("checkpoint", default=None,
                help="A model.ckpt-<step>.safetensors file, or a log_dir (its latest valid checkpoint). Without it, "
                f"the newest valid checkpoint of the runs under {default_root()}.")


def evaluation_flags():
    return [
        checkpoint_flag(),
        Flag("batch_size", type=positive_int, default=None, help="Evaluation batch size (default: the checkpoint's)."),
        *data_flags(),
        Flag("report", metavar="DIR", default=None,
             help="Also write the test set's confusion matrix and misclassified digits (PNG) and a Markdown report "
             "(per-class precision and recall, the most confused pairs) into DIR."),
    ]


def prediction_flags():
    return [
        checkpoint_flag(),
        Flag("backend", choices=BACKEND_NAMES, default="auto", help="As for training."),
        Flag("images", positional=True, nargs="+", metavar="IMAGE",
             help="Image files (PNG, JPEG, GIF, BMP, TIFF, WebP, PPM) of any size, colour or background; each is "
             "prepared as MNIST's digits were (grayscale, ink white on black, cropped to the ink, longer side 20 "
             "pixels, centred by its centre of mass in 28 x 28)."),
    ]


COMMAND_FLAGS = {"train": training_flags, "sweep": sweep_flags, "eval": evaluation_flags,
                 "predict": prediction_flags}
COMMAND_HELP = {
    "train": "train and evaluate the tutorial's network (the default command)",
    "sweep": "train a population: every learning rate with every seed (--seed 1-16 --learning_rate 0.01,0.1) in one "
             "step program, each member its own run folder, then a results table",
    "eval": "evaluate a saved checkpoint on the train, validation and test sets",
    "predict": "label digits in image files with a saved checkpoint: one line per image, its label and probability",
    "check": "versions, which backends are usable here, and every op and 100 training steps of each against the "
             "NumPy reference (exit 1 if any check fails)",
}


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad command line raises FlagError (one line, no usage block; cli.py prints it)
    and help goes through log.py (a reader that leaves `mnist-gpu --help | head` is no error)."""

    def error(self, message):
        raise FlagError(*argparse_message_parts(message))

    def _print_message(self, message, file=None):
        from .log import write_text

        if message:
            write_text("stderr" if file is sys.stderr else "stdout", message)


class HelpFormatter(argparse.HelpFormatter):
    """Each flag's help, then its default once: `(default: X)` only where the help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or action.option_strings == []:
            return text
        return f"{text} (default: %(default)s)"


def build_parser():
    """The command line's parser: `mnist-gpu COMMAND FLAGS`."""
    parser = Parser(prog="mnist-gpu", description="TensorFlow's Mechanics 101 MNIST tutorial with hand-written GPU "
                    "kernels.")
    parser.add_argument("--version", action="version", version=f"mnist-gpu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, help_text in COMMAND_HELP.items():
        subparser = commands.add_parser(command, help=help_text, formatter_class=HelpFormatter)
        for flag in COMMAND_FLAGS[command]() if command in COMMAND_FLAGS else ():
            flag.add_to(subparser)
    return parser


def argparse_message_parts(message):
    """argparse's "argument --name: why" as message parts naming the flag (so Python reads `name: why`)."""
    found = re.fullmatch(r"argument --(\w+): (.*)", message, re.DOTALL)
    return ("argument ", NamedFlag(found[1], NAME), ": ", found[2]) if found else (message,)


def parse_command_line(argv):
    """The Namespace of a command line (its first word the command); FlagError for anything argparse refuses,
    and for an unknown flag, naming the nearest known one (`--max-steps`: did you mean --max_steps?)."""
    parser = build_parser()
    flags, unknown = parser.parse_known_args(argv)
    if unknown:
        command = flags.command or "train"
        names = [flag.name for flag in COMMAND_FLAGS.get(command, list)() if not flag.positional]
        option = unknown[0]
        nearest = nearest_flag(option, names) if option.startswith("-") else None
        hint = f"; did you mean --{nearest}?" if nearest else \
            f" (mnist-gpu {command} --help lists its flags)" if option.startswith("-") else ""
        raise FlagError(f"{command}: unrecognized argument {option}{hint}")
    return flags


def unknown_command(word):
    """The FlagError of a first word that is neither a command nor a flag (`mnist-gpu swep`): the nearest command,
    or the list of them."""
    nearest = difflib.get_close_matches(word, COMMAND_HELP, n=1, cutoff=0.6)
    hint = f"; did you mean {nearest[0]}?" if nearest else \
        f"; the commands are {', '.join(COMMAND_HELP)} (without one, train; its flags begin with --)"
    return FlagError(f"unknown command {word}{hint}")


def nearest_flag(option, names):
    """The flag a mistyped `option` most likely meant: dashes for underscores, initials (`--lr`), or a near
    spelling; None if nothing is near."""
    word = option.lstrip("-").split("=", 1)[0].replace("-", "_").lower()
    if word in names:
        return word
    initials = {"".join(part[0] for part in name.split("_")): name for name in names if "_" in name}
    if word in initials:
        return initials[word]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def parse_flags(command="train", **values):
    """The Namespace the command line would parse for `command`, from keyword arguments named like its flags.

    Every value goes through the command line's own parser (its types, checks and defaults). An
    unknown name is a TypeError naming it; a bad value a FlagError.
    """
    parser = Parser(prog=f"mnist-gpu {command}")
    flags = COMMAND_FLAGS[command]()
    for flag in flags:
        flag.add_to(parser)
    options = {flag.name: flag for flag in flags if not flag.positional}
    argv = []
    for name, value in values.items():
        if name not in options:
            raise TypeError(f"unknown flag {name!r} for {command}; expected one of {', '.join(sorted(options))}")
        if options[name].switch:  # a switch such as --fake_data
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            argv += [f"--{name}"] if value else []
        elif value is not None:
            items = list(value) if isinstance(value, (list, tuple, range)) else [value]
            argv.append(f"--{name}=" + ",".join(str(item) for item in items))  # one word: a value may start with -
    return parser.parse_args(argv)
