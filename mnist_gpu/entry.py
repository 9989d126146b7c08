"""The console script `mnist-gpu` and `python -m mnist_gpu`: cli.main_exit, once its modules are loaded.

Loading them (NumPy first) takes a tenth of a second, before cli.main can take Ctrl-C: a SIGINT then
would print Python's traceback. Here it is the interruption cli.main reports, exit 130, one line. This
module imports nothing of ours at its top, and the package's __init__ loads nothing, so the window is
the interpreter's own start-up.
"""
import os


def main_exit():
    try:
        from .cli import main_exit as run_command
    except KeyboardInterrupt:
        try:
            os.write(2, b"mnist-gpu: interrupted while starting; nothing was written\n")
        except OSError:  # no stderr to say it on
            pass
        os._exit(130)
    run_command()
