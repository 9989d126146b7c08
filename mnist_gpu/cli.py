"""Command line: `mnist-gpu [train] FLAGS` (the tutorial's flags), `mnist-gpu sweep`, `eval`, `predict`, `check`.

Exit codes: 0 done; 2 a bad flag (one line: a flag argparse refuses, with the nearest known flag
for a typo, or a refusal at run time: a log_dir holding a run, or in use by another run); 1 any
other expected failure (bad data, a checkpoint that fails its checks, no GPU, a file that cannot
be written, a diverging loss, too little memory), one line `mnist-gpu: error: ...`; 3 a sweep that
finished with some members diverged; 130 / 143 interrupted by SIGINT / SIGTERM. Lost output never
changes what a command does (log.py): `train` and `sweep` exit with their run's code; `eval`,
`predict` and `check`, whose result is what they print, exit 1 when stdout could not take it,
except when its reader closed it on purpose (`| head`). The flags are flags.py's.
"""
import os
import sys

from . import log as output
from .errors import Error, TrainingInterrupted
from .flags import COMMAND_HELP, parse_command_line, unknown_command
from .log import Log

COMMANDS = tuple(COMMAND_HELP)
SOME_DIVERGED = 3  # `sweep`: it finished, and at least one member stopped because its loss diverged


def error_line(error):
    """Print an error (an mnist_gpu Error, or any text) as the one line `mnist-gpu: error: ...` on stderr."""
    output.write_line("stderr", f"mnist-gpu: error: {error.command_line() if isinstance(error, Error) else error}")


def main(argv=None):
    """Entry point; returns the process exit code (see the module's docstring)."""
    output.lost.clear()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        if argv and not argv[0].startswith("-"):  # a word where the command goes: a mistyped one (`swep`)
            error_line(unknown_command(argv[0]))
            return 2
        argv.insert(0, "train")  # `mnist-gpu --max_steps 10` trains, like the tutorial's script
    log = Log()
    try:
        try:
            flags = parse_command_line(argv)
        except SystemExit as printed:  # --help or --version: argparse printed it and exits
            why = output.lost_output()
            if why is not None:
                error_line(f"stdout {why}: what `{' '.join(argv)}` printed was lost")
                return 1
            return printed.code or 0
        code = run(flags, log)
    except Error as error:
        error_line(error)
        return error.exit_code
    except TrainingInterrupted as interrupted:
        output.write_line("stderr", f"mnist-gpu: {interrupted.command_line()}")
        return interrupted.exit_code
    except MemoryError as error:  # an allocation the memory check (memory.py) did not foresee
        from .memory import out_of_memory

        error_line(out_of_memory(error))
        return 1
    except KeyboardInterrupt:  # before training took over the signal, or after it let go
        output.write_line("stderr", "mnist-gpu: interrupted; nothing was saved")
        return 130
    why = output.lost_output()
    if why is not None and flags.command not in ("train", "sweep"):
        error_line(f"stdout {why}: what `{flags.command}` printed was lost")
        return max(code, 1)
    return code


def run(flags, log):
    """Run the parsed command; returns its exit code or raises one of its errors."""
    if flags.command == "check":
        from .check import run_check

        return run_check(say=log.line)
    if flags.command == "predict":
        from .classifier import run_prediction

        return run_prediction(flags, log)
    if flags.command == "eval":
        from .evaluate import run_evaluation

        run_evaluation(flags, log)
    elif flags.command == "sweep":
        from .search import run as run_sweep  # the grid of trainer.run_sweep, or an Optuna study

        return SOME_DIVERGED if run_sweep(flags, log).diverged else 0
    else:
        from .trainer import run_training

        run_training(flags, log)
    return 0


def standard_descriptors():
    """Give each closed standard descriptor (0, 1, 2) /dev/null, before anything is opened.

    A command started with `>&-` or `2>&-` would otherwise hand that number to the next file it
    opens (a log_dir's lock, a checkpoint being written), and whatever wrote to the closed stream
    (a library's warning) would write into that file. Python already knows the stream is gone
    (sys.stdout is None) and log.py treats it so.
    """
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != descriptor:  # a lower one was free too: it was given /dev/null just before
                os.dup2(opened, descriptor)
                os.close(opened)


def main_exit():
    """The command line (entry.py calls it once it is loaded): run, flush, and leave without interpreter teardown.

    Everything a run writes is closed before main returns. Python's teardown after that (Numba's
    LLVM, freeing a quarter GB of objects) took 0.15-0.2 s of a 1.5 s tutorial run, and os._exit
    skips it; the two standard streams are flushed first.
    """
    standard_descriptors()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # an encoding that cannot show a character shows its escape instead
            stream.reconfigure(errors="backslashreplace")
    code = main()
    from .numba_cache import remove_private_folder

    remove_private_folder()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to flush into
            pass
    os._exit(code)
