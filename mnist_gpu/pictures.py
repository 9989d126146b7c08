"""The pictures of an evaluation, drawn with Pillow as PNGs: the confusion matrix and the misclassified digits.

TensorBoard's Images tab shows them at each evaluation (summaries.py) and `mnist-gpu eval
--report DIR` writes them as files (report.py): the same bytes either way. Pillow draws the
text (its bundled FreeType font) and encodes the PNGs; it is imported when the first picture
is drawn, never at start-up.
"""
import functools
import io
from dataclasses import dataclass

import numpy as np

from .model import IMAGE_SIZE, NUM_CLASSES

GRID_COLUMNS = 8  # digits per row of the misclassified grid; up to 64 digits make 8 x 8
DIGIT_SCALE = 2  # each 28 x 28 digit drawn at 56 x 56
CELL = 40  # pixels per confusion-matrix cell
BACKGROUND, INK, MUTED = (255, 255, 255), (20, 20, 20), (110, 110, 110)
GRAY_BACKGROUND, GRAY_INK, GRAY_MUTED = 255, 20, 110  # the same, in the grayscale grid of digits


@dataclass
class Picture:
    """A PNG and its size (TensorBoard's image summary records both)."""

    png: bytes
    width: int
    height: int
    channels: int  # 1 grayscale, 3 RGB


@dataclass
class Pictures:
    confusion_matrix: Picture
    misclassified: Picture


@functools.cache
def _font(size):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _png(image):
    buffer = io.BytesIO()
    # zlib's fastest level: a third of level 6's time here, for files about a quarter larger.
    image.save(buffer, format="PNG", compress_level=1)
    return Picture(buffer.getvalue(), image.width, image.height, len(image.getbands()))


@functools.lru_cache(maxsize=4096)
def _text_mask(text, size):
    """`text` drawn once at `size` as a mask ("L", 255 where the ink is) and kept: the same numbers and
    captions recur at every evaluation, and drawing text is most of what a picture costs."""
    from PIL import Image, ImageDraw

    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    return mask


def _centred(image, box, text, size, fill):
    """Draw `text` at `size`, in colour `fill`, centred in box = (left, top, right, bottom) of `image`."""
    mask = _text_mask(text, size)
    x, y = round((box[0] + box[2] - mask.width) / 2), round((box[1] + box[3] - mask.height) / 2)
    image.paste(fill, (x, y, x + mask.width, y + mask.height), mask)


def _blend(colour, share):
    """White blended towards `colour` by `share` in [0, 1]."""
    return tuple(round(255 + (channel - 255) * share) for channel in colour)


def confusion_matrix_picture(matrix, title):
    """Rows true classes, columns predicted; each cell its count. Diagonal cells are shaded blue by the
    share of their row they hold, the others red by their share relative to the largest such share, so
    the worst confusions stand out however few they are."""
    from PIL import Image, ImageDraw

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(matrix / rows)
    off_diagonal = share * (1 - np.eye(NUM_CLASSES))
    worst = off_diagonal.max() or 1.0
    left, top = 70, 70
    size = CELL * NUM_CLASSES
    small, label, heading = 12, 14, 15  # font sizes
    image = Image.new("RGB", (max(left + size + 20, int(_font(heading).getlength(title)) + 20), top + size + 20),
                      BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, font=_font(heading), fill=INK)
    _centred(image, (left, 30, left + size, 48), "predicted", label, MUTED)
    vertical = Image.new("RGB", (size, 18), BACKGROUND)
    _centred(vertical, (0, 0, size, 18), "true", label, MUTED)
    image.paste(vertical.rotate(90, expand=True), (8, top))
    for index in range(NUM_CLASSES):
        _centred(image, (left + index * CELL, 48, left + (index + 1) * CELL, top), str(index), label, INK)
        _centred(image, (30, top + index * CELL, left, top + (index + 1) * CELL), str(index), label, INK)
    for row in range(NUM_CLASSES):
        for column in range(NUM_CLASSES):
            if row == column:
                strength, colour = share[row, column], (31, 90, 180)
            else:
                strength, colour = off_diagonal[row, column] / worst, (200, 40, 40)
            box = (left + column * CELL, top + row * CELL, left + (column + 1) * CELL - 1, top + (row + 1) * CELL - 1)
            draw.rectangle(box, fill=_blend(colour, float(strength)), outline=(225, 225, 225))
            text_colour = BACKGROUND if strength > 0.55 else INK
            _centred(image, box, str(int(matrix[row, column])), small, text_colour)
    return _png(image)


GRID_CELL = (IMAGE_SIZE * DIGIT_SCALE + 14, IMAGE_SIZE * DIGIT_SCALE + 34)  # a digit and its two caption lines
GRID_TOP = 34  # below the title


def digit_position(index):
    """(x, y) of the top left corner of the index-th digit (row by row) in the misclassified grid."""
    return 13 + index % GRID_COLUMNS * GRID_CELL[0], GRID_TOP + index // GRID_COLUMNS * GRID_CELL[1]


def misclassified_picture(digits, labels, predicted, probability, title):
    """A grid of digits (uint8 [K, 28, 28], white ink on black as in MNIST), each captioned
    "<true> as <predicted>" and the probability the model gave its prediction."""
    from PIL import Image, ImageDraw

    side = IMAGE_SIZE * DIGIT_SCALE
    rows = max(1, -(-len(digits) // GRID_COLUMNS))
    caption, heading = 12, 15  # font sizes
    width = max(GRID_COLUMNS * GRID_CELL[0] + 12, int(_font(heading).getlength(title)) + 16)
    image = Image.new("L", (width, GRID_TOP + rows * GRID_CELL[1] + 6), GRAY_BACKGROUND)  # grayscale: a third the bytes
    ImageDraw.Draw(image).text((8, 8), title, font=_font(heading), fill=GRAY_INK)
    if len(digits) == 0:
        _centred(image, (0, GRID_TOP, image.width, image.height), "no misclassified digits", caption, GRAY_MUTED)
    for index, digit in enumerate(digits):
        x, y = digit_position(index)
        picture = Image.fromarray(np.ascontiguousarray(digit, dtype=np.uint8), mode="L")
        image.paste(picture.resize((side, side), Image.Resampling.NEAREST), (x, y))
        _centred(image, (x - 7, y + side + 1, x + side + 7, y + side + 16), f"{labels[index]} as {predicted[index]}",
                 caption, GRAY_INK)
        _centred(image, (x - 7, y + side + 15, x + side + 7, y + side + 30), f"{probability[index]:.0%}", caption,
                 GRAY_MUTED)
    return _png(image)


def draw(confusion, pixels, when, split="test"):
    """Both pictures of one evaluation: `confusion` (confusion.Confusion) of the split whose uint8 pixels
    [N, 784] are `pixels` (row i is the example confusion describes at i); `when` ("at step 999") goes
    into their titles."""
    when = f" {when}" if when else ""
    wrong = confusion.misclassified()
    total = int(np.count_nonzero(confusion.predicted != confusion.labels))
    digits = np.asarray(pixels)[wrong].reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    shown = f"the {len(wrong)} most confident of {total}" if total > len(wrong) else f"all {total}"
    return Pictures(
        confusion_matrix=confusion_matrix_picture(confusion.matrix, f"Confusion matrix, {split} set{when}: "
                                                  f"{confusion.correct} of {len(confusion.labels)} right"),
        misclassified=misclassified_picture(digits, confusion.labels[wrong], confusion.predicted[wrong],
                                            confusion.probability[wrong],
                                            f"Misclassified {split} digits{when}: {shown} (true as predicted)"))
