"""Training from Python (a notebook, a script): the command line's behaviour as functions.

    import mnist_gpu
    result = mnist_gpu.train(max_steps=2000, seed=1, log_dir="runs/a", verbose=False)
    result.precision                     # {"train": ..., "validation": ..., "test": ...}
    model = mnist_gpu.load_checkpoint("runs/a")
    model.predict(images)                # int32 labels [N]: arrays, or image files ["seven.png", ...]
    model.provenance                     # what made it: versions, commit, device, flags, start time
    grid = mnist_gpu.sweep(seed=range(1, 17), learning_rate=[0.01, 0.1], log_dir="runs/grid")
    grid.groups                          # per learning rate: test precision mean +- std, min, max, ensemble
"""
from .flags import parse_flags
from .log import Log
from .trainer import run_training


def train(*, verbose=True, **flags):
    """Train like `mnist-gpu train`; returns a TrainingResult (precision, losses, evaluations, model).

    Keyword arguments are named exactly like the flags (learning_rate, max_steps, hidden1, ...,
    log_dir, seed, resume, overwrite, backend, cuda_graph) and get the same defaults and the same
    checks: an unknown name is a TypeError naming it, a bad value a FlagError (a ValueError).
    Without log_dir the run gets a new folder under the default root (result.log_dir names it).
    verbose=False prints nothing. Errors are raised, not printed: DataError, WriteError,
    CheckpointError (resume=True with no checkpoint that passes its checks), TrainingDiverged,
    CudaGraphError (cuda_graph="on" where no graph can be used), and TrainingInterrupted (after
    saving the step it stopped at) on Ctrl-C or SIGTERM; a log_dir another run is using is a
    LogDirInUse (a FlagError).
    """
    return run_training(parse_flags("train", **flags), Log(verbose))


def sweep(*, verbose=True, **flags):
    """Train a population like `mnist-gpu sweep`; returns a SweepResult: `members`, one TrainingResult each (its seed,
    learning_rate, precision, losses, evaluations, log_dir, diverged_at_step), and `groups`, one row per learning
    rate (results.md's).

    Keyword arguments are the sweep's flags; seed and learning_rate take one value or several
    (a list, a range): mnist_gpu.sweep(seed=range(16), learning_rate=[0.01, 0.1], log_dir="runs/grid").
    Errors as for train; a member that diverges is reported in its result, not raised. A resume=True with nothing
    left to train returns each member's seed, learning_rate, log_dir and diverged_at_step only (its results.md
    has the rest).
    With a study's flags (docs/sweeps.md; the sweep extra), this process is one worker of an Optuna study:
    mnist_gpu.sweep(learning_rate="0.001:0.3:log", hidden1=[64, 128], trials=32, prune="halving"); `members` are
    those it trained and `trials` the study's table (one row per member of each finished trial).
    """
    from .search import run

    return run(parse_flags("sweep", **flags), Log(verbose))
