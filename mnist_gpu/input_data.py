"""The tutorial's input pipeline: `read_data_sets` and `DataSet.next_batch`, with TF's semantics.

A DataSet holds its images as the original uint8 pixels [N, D=784] and labels int32 [N]; the
float32 images in [0, 1] that TF's input_data returns are derived from them.
"""
import os
from dataclasses import dataclass

import numpy as np

from . import data_cache, locations
from .errors import DataError
from .idx_files import DATASETS, read_verified
from .model import IMAGE_PIXELS, PIXEL_SCALE

PACKAGED_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FAKE_EXAMPLES = 10000
VALIDATION_SIZE = 5000  # the tutorial's: the first 5000 training images


class DataSet:
    """uint8 pixels [N, 784] and int32 labels [N], with TF's epoch-aware `next_batch` shuffled by its own generator.

    The trainer gathers its batches from the pixels (a quarter of the bytes of float32 images);
    `images`, the float32 [N, 784] in [0, 1] of TF's DataSet, is made on first use and kept
    (converting all of MNIST takes 0.27 s and 220 MB, which a training run never needs).
    """

    def __init__(self, pixels, labels, seed=None):
        if len(pixels) != len(labels):
            raise ValueError(f"pixels and labels differ in length: {len(pixels)} != {len(labels)}")
        self.pixels = pixels.view()
        self.pixels.flags.writeable = False  # a data set is read, never written (and may be a file's mapping)
        self.labels = labels
        self.num_examples = len(pixels)
        self.epochs_completed = 0
        self.index_in_epoch = 0
        self.order = np.arange(self.num_examples)  # row indices of the current epoch, in order
        self.generator = np.random.default_rng(seed)
        self._images = None

    @property
    def images(self):
        """float32 [N, 784] in [0, 1]: pixels * PIXEL_SCALE, exactly as TF scales them."""
        if self._images is None:
            self._images = to_float_images(self.pixels)
        return self._images

    def next_batch_indices(self, batch_size, shuffle=True):
        """Row indices of the next batch; TF's rules for shuffling and crossing an epoch boundary."""
        if not 0 < batch_size <= self.num_examples:
            raise ValueError(f"batch_size must be in 1..{self.num_examples}, got {batch_size}")
        start = self.index_in_epoch
        if self.epochs_completed == 0 and start == 0 and shuffle:
            self.order = self.generator.permutation(self.num_examples)
        if start + batch_size <= self.num_examples:
            self.index_in_epoch = start + batch_size
            return self.order[start:self.index_in_epoch]
        # The batch takes the rest of this epoch and the start of a freshly shuffled next one.
        self.epochs_completed += 1
        rest = self.order[start:]
        if shuffle:
            self.order = self.generator.permutation(self.num_examples)
        self.index_in_epoch = batch_size - len(rest)
        return np.concatenate((rest, self.order[:self.index_in_epoch]))

    def position(self):
        """Where the iterator stands, so a resumed run draws exactly the batches an unbroken one would.

        Returns (order, fields): the current epoch's row order, and JSON-ready scalars plus the
        generator's state.
        """
        fields = {"index_in_epoch": self.index_in_epoch, "epochs_completed": self.epochs_completed,
                  "generator": self.generator.bit_generator.state}
        return self.order, fields

    def draw_batches(self, batch_size, out):
        """Draw len(out) batches ahead: out[i] = the row indices of the i-th next batch, exactly as
        next_batch_indices would give them. Returns the position after each batch (as `position()`).

        The positions are what a checkpoint of step i must save, even though the iterator has
        moved on. The generator only draws permutations, each with a new order, so its state is
        read once per order (a state dict costs microseconds; a window is up to 1000 batches).
        """
        positions, state_order, state = [], None, None
        for batch in out:
            batch[...] = self.next_batch_indices(batch_size)
            if self.order is not state_order:
                state_order, state = self.order, self.generator.bit_generator.state
            positions.append((self.order, {"index_in_epoch": self.index_in_epoch,
                                           "epochs_completed": self.epochs_completed, "generator": state}))
        return positions

    def restore_position(self, order, fields):
        """Undo `position`: continue from a saved order, index, epoch count and generator state."""
        if len(order) != self.num_examples or not np.array_equal(np.sort(order), np.arange(self.num_examples)):
            raise ValueError(f"saved order is not a permutation of this data set's {self.num_examples} rows")
        self.order = np.asarray(order, dtype=np.int64)
        self.index_in_epoch = int(fields["index_in_epoch"])
        self.epochs_completed = int(fields["epochs_completed"])
        self.generator.bit_generator.state = fields["generator"]

    def next_batch(self, batch_size, shuffle=True):
        """The next `batch_size` (images, labels), as new arrays."""
        indices = self.next_batch_indices(batch_size, shuffle)
        return self.images[indices], self.labels[indices]


@dataclass
class DataSets:
    """The three splits of the tutorial, and where their files came from (in words)."""

    train: DataSet
    validation: DataSet
    test: DataSet
    source: str = ""


def train_order_seed(seed):
    """The seed of a run's training order: a run's seed spawns (data, initial variables); the data's seed spawns one
    per split, train first (read_data_sets(seed=...) draws the same)."""
    return np.random.SeedSequence(seed).spawn(2)[0].spawn(3)[0]


def _spawn_seeds(seed, count):
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return sequence.spawn(count)


def fake_data_sets(seed=None):
    """TF's fake sets for unit tests: 10000 examples of an all-ones image with label 0 in each split."""
    seeds = _spawn_seeds(seed, 3)

    def fake(split_seed):
        pixels = np.full((FAKE_EXAMPLES, IMAGE_PIXELS), 255, np.uint8)  # 255 * PIXEL_SCALE == 1.0 exactly
        return DataSet(pixels, np.zeros(FAKE_EXAMPLES, np.int32), split_seed)

    return DataSets(*(fake(split_seed) for split_seed in seeds), source="fake data (--fake_data)")


def read_cached(source, expected, input_data_dir, dataset, verified=None):
    """The verified array of the gzip file `source`: from its decompressed cache when that verifies, else
    decompressed, verified and cached (when input_data_dir can be written; else just used).

    `verified`: the source's array when it has just been verified (a download), to cache as it is.
    """
    path = data_cache.cache_path(input_data_dir, dataset, expected)
    if verified is None:
        cached = data_cache.load(path, source, expected)
        if cached is not None:
            return cached
        verified = read_verified(source, expected)
    try:
        data_cache.store(path, source, expected, verified)
    except OSError:
        pass  # a read-only input_data_dir: no cache, every run decompresses
    return verified


def locate_and_load(train_dir, dataset="mnist", source_url=None, **download_options):
    """The four verified arrays of `dataset`, keyed like DATASETS[dataset], and where they came from.

    For each file: a copy in train_dir is used if valid and refused (never silently reused) if
    not; else the copy shipped in the package; else (or with source_url) a verified download.
    Decompressed copies are cached in train_dir (see data_cache.py).
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    train_dir = locations.checked_input_data_dir(train_dir, dataset)  # the default is this user's alone, or refused
    arrays, sources = {}, []
    for key, expected in DATASETS[dataset].items():
        local = os.path.join(train_dir, expected.name)
        packaged = os.path.join(PACKAGED_DIRECTORY, dataset, expected.name)
        if os.path.exists(local):
            try:
                arrays[key] = read_cached(local, expected, train_dir, dataset)
            except DataError as error:
                raise DataError(f"{error}. {other_datasets_file(local, dataset, expected.name) or ''}Delete or "
                                "replace this file to fetch a good copy.") from None
            source = f"{train_dir} (--input_data_dir)"
        elif source_url is None and os.path.exists(packaged):
            arrays[key] = read_cached(packaged, expected, train_dir, dataset)
            source = f"the copy shipped in the package ({os.path.dirname(packaged)})"
        else:
            from . import download as downloader  # imported only when a file must be fetched

            mirrors = (source_url,) if source_url else downloader.MIRRORS[dataset]
            downloaded = downloader.download(expected, train_dir, mirrors, **download_options)
            arrays[key] = read_cached(local, expected, train_dir, dataset, verified=downloaded)
            source = f"a download into {train_dir}"
        if source not in sources:
            sources.append(source)
    return arrays, " and ".join(sources)


def other_datasets_file(path, dataset, name):
    """"It is X's file ... " when the file at `path` is another dataset's verified file of the same name, else None."""
    for other, files in DATASETS.items():
        for expected in files.values():
            if other != dataset and expected.name == name:
                try:
                    read_verified(path, expected)
                except DataError:
                    continue
                return (f"It is {other}'s {name}, not {dataset}'s: keep each dataset in an --input_data_dir of its "
                        "own. ")
    return None


def to_float_images(images):
    """uint8 [N, 28, 28] or [N, 784] -> float32 [N, 784] in [0, 1], as TF's input_data scales them."""
    return images.reshape(len(images), -1).astype(np.float32) * PIXEL_SCALE


def split_sizes(dataset, fake_data):
    """{split: examples} of the sets read_data_sets makes by default, known without reading a file."""
    if fake_data:
        return {"train": FAKE_EXAMPLES, "validation": FAKE_EXAMPLES, "test": FAKE_EXAMPLES}
    files = DATASETS[dataset]
    return {"train": files["train_images"].count - VALIDATION_SIZE, "validation": VALIDATION_SIZE,
            "test": files["test_images"].count}


def read_data_sets(train_dir, fake_data=False, validation_size=VALIDATION_SIZE, seed=None,
                   dataset="mnist", source_url=None, **download_options):
    """Train / validation / test DataSets: validation is the FIRST `validation_size` training images."""
    if fake_data:
        return fake_data_sets(seed)
    arrays, source = locate_and_load(train_dir, dataset, source_url, **download_options)
    train_pixels = arrays["train_images"].reshape(-1, IMAGE_PIXELS)
    test_pixels = arrays["test_images"].reshape(-1, IMAGE_PIXELS)
    train_labels = arrays["train_labels"].astype(np.int32)
    if not 0 <= validation_size <= len(train_pixels):
        raise ValueError(f"validation_size should be between 0 and {len(train_pixels)}, got {validation_size}")
    seeds = _spawn_seeds(seed, 3)
    return DataSets(
        train=DataSet(train_pixels[validation_size:], train_labels[validation_size:], seeds[0]),
        validation=DataSet(train_pixels[:validation_size], train_labels[:validation_size], seeds[1]),
        test=DataSet(test_pixels, arrays["test_labels"].astype(np.int32), seeds[2]),
        source=f"{dataset} from {source}",
    )
