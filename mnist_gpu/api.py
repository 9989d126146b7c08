"""Training and prediction from Python (a notebook, a script): the command line's behaviour as functions.

    import mnist_gpu
    result = mnist_gpu.train(max_steps=2000, seed=1, log_dir="runs/a", verbose=False)
    result.precision                     # {"train": ..., "validation": ..., "test": ...}
    model = mnist_gpu.load_checkpoint("runs/a")
    model.predict(images)                # int32 labels [N]
"""
import numpy as np

from . import checkpoint as checkpoints
from . import model as mnist
from .backends import get_backend
from .cli import parse_flags
from .trainer import Log, run_training


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


class Classifier:
    """A trained network that labels images: `predict`. Made by load_checkpoint."""

    def __init__(self, model, path):
        self.model, self.path = model, path
        self.global_step = model.global_step

    def predict(self, images):
        """int32 labels [N] for images float32 [N, 784] in [0, 1], or uint8 [N, 784] or [N, 28, 28]; any N.

        The label is the class with the largest logit; of equal largest logits, the first.
        """
        images = np.asarray(images)
        if images.ndim not in (2, 3) or images.shape[1:] not in ((mnist.IMAGE_PIXELS,),
                                                                  (mnist.IMAGE_SIZE, mnist.IMAGE_SIZE)):
            raise ValueError(f"images must be [N, 784] or [N, 28, 28], got shape {images.shape}")
        flat = images.reshape(len(images), mnist.IMAGE_PIXELS)
        if images.dtype == np.uint8:
            images = flat.astype(np.float32) * mnist.PIXEL_SCALE
        elif images.dtype.kind == "f":
            images = flat.astype(np.float32)
            if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
                raise ValueError("float images must be in [0, 1] (uint8 pixels are scaled by 1/255 here)")
        else:
            raise TypeError(f"images must be float32 in [0, 1] or uint8 pixels, got {images.dtype}")
        labels = np.empty(len(images), np.int32)
        backend, rows = self.model.backend, mnist.evaluation_rows(1, *self.model.hidden_units)
        for start in range(0, len(images), rows):
            batch = images[start:start + rows]
            model = self.model.resized(len(batch))
            logits = backend.to_host(mnist.inference(model, backend.asarray(batch)))
            labels[start:start + len(batch)] = np.argmax(logits, axis=1)
        return labels


def load_checkpoint(path_or_log_dir, backend="auto"):
    """The model saved in a checkpoint file, or in a log_dir's newest valid checkpoint, ready to predict.

    A damaged checkpoint, or one that fails the schema (checkpoint.check), raises CheckpointError naming
    the file and the field; loading never runs code (safetensors).
    """
    checkpoint, _ = checkpoints.resolve(path_or_log_dir)
    model = mnist.Model(get_backend(backend), checkpoint.variables, 1, checkpoint.global_step)
    return Classifier(model, checkpoint.path)
