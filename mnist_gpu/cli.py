"""Command line: `mnist-gpu [train] FLAGS` (the tutorial's flags), `mnist-gpu eval`, `predict`, `check`.

Exit codes: 0 done; 2 a bad flag (a parse error prints the usage, a refusal at run time one
line: a log_dir holding a run, or in use by another run); 1 any other expected failure (bad data,
a checkpoint that fails its checks, no GPU, a file that cannot be written, a diverging loss), one
line `mnist-gpu: error: ...`; 3 a sweep that finished with some members diverged; 130 / 143
interrupted by SIGINT / SIGTERM. The flags are flags.py's.
"""
import os
import sys

from .errors import Error, TrainingInterrupted
from .flags import COMMAND_HELP, build_parser
from .log import Log

COMMANDS = tuple(COMMAND_HELP)
SOME_DIVERGED = 3  # `sweep`: it finished, and at least one member stopped because its loss diverged


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
            from .classifier import run_prediction

            return run_prediction(flags, Log())
        if flags.command == "eval":
            from .evaluation import run_evaluation

            run_evaluation(flags, Log())
        elif flags.command == "sweep":
            from .search import run

            result = run(flags, Log())
            return SOME_DIVERGED if result.diverged else 0
        else:
            from .trainer import run_training

            run_training(flags, Log())
    except Error as error:
        error_line(error)
        return error.exit_code
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
