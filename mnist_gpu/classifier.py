"""A trained network that labels digits: `load_checkpoint(path).predict(images)`, and `mnist-gpu predict`."""
import os

import numpy as np

from . import model as mnist
from . import runs
from .errors import CheckpointError, ImageError
from .numba_cache import get_backend


def is_picture(item):
    """An image file's path, or a PIL image (Pillow is imported only if one may be)."""
    if isinstance(item, (str, bytes, os.PathLike)):
        return True
    return type(item).__module__.startswith("PIL.") and hasattr(item, "getbands")


def prepared_digits(pictures):
    """uint8 [N, 28, 28]: each image file or PIL image prepared as MNIST's digits were (images.py)."""
    from .images import load_digit, prepare

    return np.stack([prepare(picture) if hasattr(picture, "getbands") else load_digit(picture)
                     for picture in pictures]).reshape(-1, mnist.IMAGE_SIZE, mnist.IMAGE_SIZE)


class Classifier:
    """A trained network that labels images: `predict`, `probabilities`. Made by load_checkpoint.

    `provenance` is what made the checkpoint (versions, commit, device, flags, start time; {} for a
    checkpoint that records none).
    """

    def __init__(self, model, path, provenance=None):
        self.model, self.path, self.provenance = model, path, provenance or {}
        self.global_step = model.global_step

    def predict(self, images):
        """int32 labels [N] for images float32 [N, 784] in [0, 1], or uint8 [N, 784] or [N, 28, 28]; any N.

        Or image files (a path, or a list of paths) or PIL images, of any size, colour or
        background: each is prepared as MNIST's digits were (grayscale, ink made white on black,
        cropped to the ink, longer side scaled to 20 pixels, centred by its centre of mass in 28 x 28;
        see images.py); a file that is not a readable image, or holds no digit, raises ImageError
        naming it. The label is the class with the largest logit; of equal largest logits, the first.
        """
        return np.argmax(self.logits(images), axis=1).astype(np.int32)

    def probabilities(self, images):
        """float32 [N, 10]: the softmax of each image's logits (the images as `predict` takes them)."""
        from .confusion import softmax

        return softmax(self.logits(images)).astype(np.float32)

    def logits(self, images):
        """float32 [N, 10]: the network's logits for the images (as `predict` takes them)."""
        if is_picture(images):
            images = [images]
        if isinstance(images, (list, tuple)) and images and all(is_picture(item) for item in images):
            images = prepared_digits(images)
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
        logits = np.empty((len(images), mnist.NUM_CLASSES), np.float32)
        backend, rows = self.model.backend, mnist.evaluation_rows(1, *self.model.hidden_units)
        for start in range(0, len(images), rows):
            batch = images[start:start + rows]
            model = self.model.resized(len(batch))
            logits[start:start + len(batch)] = backend.to_host(mnist.inference(model, backend.asarray(batch)))[0]
        return logits


def load_checkpoint(path_or_log_dir=None, backend="auto"):
    """The model saved in a checkpoint file, or in a log_dir's newest valid checkpoint, ready to predict.

    Without a path, the newest valid checkpoint of the runs made without log_dir (as `mnist-gpu eval`
    and `predict` without --checkpoint). A damaged checkpoint, or one that fails the schema
    (checkpoint.check), raises CheckpointError naming the file and the field; loading never runs
    code (safetensors).
    """
    return classifier(runs.find_checkpoint(path_or_log_dir, note=lambda text: None), backend)


def classifier(checkpoint, backend="auto", note=None):
    """A Classifier of the checkpoint's network (a model of one member); a diverged member's is refused."""
    if not all(np.isfinite(value).all() for value in checkpoint.variables.values()):
        raise CheckpointError(f"{checkpoint.path}: a member that stopped at step {checkpoint.stopped['step']} "
                              f"({checkpoint.stopped['why']}); its variables are not finite, so it predicts nothing")
    model = mnist.Model(get_backend(backend, note), mnist.stacked([checkpoint.variables]), 1,
                        [checkpoint.flags["learning_rate"]], checkpoint.global_step)
    return Classifier(model, checkpoint.path, checkpoint.provenance)


def run_prediction(flags, log):
    """`mnist-gpu predict`: one stdout line per image, "IMAGE: LABEL (probability P)"; returns the exit code.

    A file that cannot be read as a digit, or whose logits are not finite (finite weights can still overflow
    float32), gets one error line naming it (the others are still predicted) and makes the exit code 1.
    """
    from .confusion import softmax
    from .images import load_digit

    checkpoint = runs.find_checkpoint(flags.checkpoint, log.note)
    log.note(f"predicting with {checkpoint.path} ({runs.checkpoints.step_words(checkpoint.global_step)})")
    model = classifier(checkpoint, flags.backend, log.note)
    digits, names, failed = [], [], 0
    for name in flags.images:
        try:
            digits.append(load_digit(name))
            names.append(name)
        except ImageError as error:
            log.note(f"error: {error}")
            failed += 1
    if digits:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is said per image below, not as a warning
            logits = model.logits(np.stack(digits))
        for name, row, label, probability in zip(names, logits, np.argmax(logits, axis=1), softmax(logits),
                                                 strict=True):
            if np.isfinite(row).all():
                log.line(f"{name}: {label} (probability {probability[label]:.4f})")
            else:
                log.note(f"error: {name}: the model's logits for it are not finite (its weights overflow float32); "
                         "no label")
                failed += 1
    return 1 if failed else 0
