"""The commands mnist_gpu advises, made exact: run as printed, from any folder, they do what they say.

`continuation(flags)` is the command that continues an interrupted run: this very program (as a
shell finds it again), `--resume`, the run's log_dir as an absolute path (a relative one means
another folder elsewhere; without it, --resume would take the newest run under the default root),
and every flag the run was given that differs from its default (`--max_steps 3000`, a
`--learning_rate` the resume would otherwise reset), each quoted for the shell. From Python the
same hint reads `mnist_gpu.train(resume=True, log_dir='...', ...)` (errors.Command).
"""
import os
import shutil
import sys

from .errors import Command, shell_word

NOT_REPEATED = ("resume", "overwrite", "log_dir", "seed", "command")  # seed: the checkpoint's is used
PATH_FLAGS = ("input_data_dir",)


def program():
    """The words that start this program again from a shell in any folder.

    `mnist-gpu` when that name on the PATH is the very script running; else the script's absolute
    path (a venv that is not activated); for `python -m mnist_gpu`, this Python's path and `-m mnist_gpu`.
    """
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "__main__.py" or not os.path.isfile(script):
        return f"{shell_word(sys.executable)} -m mnist_gpu"
    found = shutil.which("mnist-gpu")
    if found is not None and os.path.basename(script) == "mnist-gpu" and os.path.samefile(found, script):
        return "mnist-gpu"
    return shell_word(os.path.abspath(script))


def continuation(flags, command="train"):
    """The Command that continues the run of `flags` (a train or sweep Namespace whose log_dir is the run's folder).

    A sweep repeats neither its seeds nor its learning rates: its population file holds its members."""
    from .flags import COMMAND_FLAGS

    defaults = {flag.name: flag.options.get("default", False if flag.switch else None)
                for flag in COMMAND_FLAGS[command]() if command != "sweep" or flag.name != "learning_rate"}
    given = {"resume": True, "log_dir": os.path.abspath(flags.log_dir)}
    for name, value in vars(flags).items():
        if name in NOT_REPEATED or name not in defaults or value == defaults[name] or value is None:
            continue
        given[name] = os.path.abspath(value) if name in PATH_FLAGS else value
    return Command(program() + ("" if command == "train" else f" {command}"), function=command, **given)
