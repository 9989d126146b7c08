"""Image files as MNIST digits: read with Pillow, then prepared the way MNIST's digits were.

MNIST's digits were grayscale, white ink on black, the ink's bounding box scaled (aspect kept) so
that its longer side is 20 pixels, then placed in a 28 x 28 field with the centre of mass of its
ink at the centre. `prepare` does the same to a picture of any size, colour or background:

1. grayscale (luma); a picture with transparency is its alpha channel, what is drawn being the ink;
2. the background is the median of the border pixels; ink is whichever side of it reaches
   further (dark ink on light paper, or light on dark), scaled so that the strongest ink is 1;
3. cropped to the pixels at least INK_THRESHOLD inked (fainter ones are the background's noise);
4. longer side scaled to 20 pixels (area averaging when shrinking, bicubic when enlarging);
5. pasted into 28 x 28 with the ink's centre of mass at pixel (14, 14), kept inside the field.

Every image file is hostile until read: only a regular file of at most MAX_FILE_BYTES is read (a
FIFO, device, socket or folder is refused unread: regular_files.py), only as a common raster
format (never EPS, which Pillow would hand to Ghostscript), the size in the header is checked
before any pixel is decoded (MAX_PIXELS; Pillow's own decompression-bomb check is made an error),
truncated data is an error (never padded), and any failure is one ImageError naming the file.

JPEG needs two checks of its own. Its header can claim any size: a 1.9 KB file saying 7000 x 7000
took 3.6 s and 428 MB to decode into grey. Huffman-coded JPEG data holds at least a bit per 8 x 8
block of each component (64 pixels a bit, 512 a byte), so a header claiming more than
JPEG_PIXELS_PER_BYTE pixels per byte of the file is refused before decoding. And a JPEG cut short
with an end marker appended decodes without any error, libjpeg filling what is missing with flat
grey: so the file is decoded a second time with bytes that are not a marker inserted before its
end marker (`jpeg_is_cut_short`). A whole image never reads them (libjpeg skips extraneous bytes
after the last scan) and decodes the same; an image cut short reads them as its missing data and
decodes differently. That costs one more decode of a JPEG (the size check bounds it).
"""
import io
import os
import struct
import warnings

import numpy as np

from .errors import ImageError
from .model import IMAGE_SIZE
from .regular_files import Refused, read_bounded

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # Pillow's names; PPM covers PGM and PBM
MAX_PIXELS = 50_000_000  # larger images are refused from their header (a 50 MP photo decodes to 150 MB)
MAX_FILE_BYTES = 8 * MAX_PIXELS  # 8 bytes a pixel (16-bit RGBA), uncompressed: larger files are refused unread
WORKING_SIDE = 2048  # larger pictures are first reduced (box filter) so that no side passes this
INK_THRESHOLD = 0.25  # of the strongest ink: pixels this inked or more are the digit; fainter, background
DIGIT_BOX = 20  # MNIST's digits fill a 20 x 20 box inside the 28 x 28 field
JPEG_PIXELS_PER_BYTE = 1024  # twice the most that Huffman-coded JPEG data can describe (see above)
NOT_A_MARKER = b"\x55\xaa" * 8 + bytes((index * 37 + 11) % 255 for index in range(240))  # no 0xFF: not a marker


def read_image(path):
    """The first frame of the image file at `path`, decoded (a PIL Image); ImageError naming the file otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = os.fspath(path)
    data = read_image_file(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageError(f"{name}: {image.width} x {image.height} pixels is more than this reads "
                                     f"({MAX_PIXELS // 1_000_000} megapixels)")
                data = data if image.format in ("JPEG", "MPO") else None  # MPO: JPEG frames, the first one read
                if data is not None and image.width * image.height > JPEG_PIXELS_PER_BYTE * len(data):
                    raise ImageError(f"{name}: its header says {image.width} x {image.height} pixels, more than its "
                                     f"{len(data)} bytes of JPEG data can hold (at most {JPEG_PIXELS_PER_BYTE} "
                                     "pixels a byte); the file is damaged")
                image.load()  # decode now: a truncated file fails here, not later
                if data is not None and jpeg_is_cut_short(image, data):
                    raise ImageError(f"{name}: the JPEG data ends before the image does (a file cut short, with an "
                                     "end marker after the cut); its missing part would be made up")
                return ImageOps.exif_transpose(image)  # a phone's photo as it was held
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or not one of {', '.join(FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name}: refused as a decompression bomb ({error})") from None
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many types (OSError, SyntaxError, ...)
        raise ImageError(f"{name}: not a readable image ({type(error).__name__}: {error})") from None


def read_image_file(name):
    """The bytes of the image file `name`: a regular file of at most MAX_FILE_BYTES (regular_files.py), not empty."""
    try:
        data = read_bounded(name, MAX_FILE_BYTES, "an image file")
    except Refused as error:
        raise ImageError(f"{name}: {error}") from None
    except OSError as error:
        raise ImageError(f"{name}: cannot be read: {error.strerror or error}") from None
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    return data


def jpeg_end(data):
    """(offset, restarts): where the end marker (EOI) that ends the JPEG image in `data` starts, with the 0xFF
    bytes before it, and how many restart markers its last scan holds; None if its segments do not lead there."""
    if data[:2] != b"\xff\xd8":
        return None
    offset, restarts = 2, 0
    while offset + 2 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
        elif marker == 0xD9:
            while data[offset - 1] == 0xFF:  # fill bytes before it (or a cut that left half a stuffed 0xFF 0x00)
                offset -= 1
            return offset, restarts
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            offset += 2
        else:
            if offset + 4 > len(data):
                return None
            offset += 2 + struct.unpack(">H", data[offset + 2:offset + 4])[0]
            if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker that is not a restart
                restarts = 0
                while True:  # in that data 0xFF is only ever a stuffed 0xFF 0x00, a restart, or the next marker
                    offset = data.find(b"\xff", offset)
                    if offset < 0 or offset + 1 >= len(data):
                        return None
                    following = data[offset + 1]
                    if following != 0 and not 0xD0 <= following <= 0xD7:
                        break
                    restarts += following != 0
                    offset += 2
    return None


def jpeg_is_cut_short(image, data):
    """Whether the loaded JPEG `image` decoded from `data` had data missing that libjpeg made up (see the module).

    The bytes inserted before the end marker are not a marker, then the restart marker the last scan
    would expect next, then more such bytes: whether the cut fell inside a restart interval or at
    its end, the decoder reads them as the missing data.
    """
    from PIL import Image

    found = jpeg_end(data)
    if found is None:  # its segments do not lead to an end marker: a cut inside a segment, say
        return True
    end, restarts = found
    inserted = NOT_A_MARKER + bytes((0xFF, 0xD0 + restarts % 8)) + NOT_A_MARKER
    try:
        with Image.open(io.BytesIO(data[:end] + inserted + data[end:]), formats=("JPEG",)) as padded:
            padded.load()
            return padded.size != image.size or padded.mode != image.mode or \
                not np.array_equal(np.asarray(padded), np.asarray(image))
    except Exception:  # noqa: BLE001 - a whole JPEG never fails on bytes after its last scan: this one is damaged
        return True


def ink(image, name="the image"):
    """float32 [H, W] in [0, 1]: how much ink each pixel holds (1 the strongest), whatever the colours."""
    # One of three modes first, each of which Pillow can reduce (it cannot reduce palette, 1-bit or 16-bit images):
    # RGBA where there is transparency, F for 16- and 32-bit grayscale (their full depth), else 8-bit luma.
    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = image.convert("F")
    else:
        image = image.convert("L")
    if max(image.size) > WORKING_SIDE:
        image = image.reduce(-(-max(image.size) // WORKING_SIDE))
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"), np.float32) / 255
        if alpha.min() < alpha.max():  # drawn on a transparent background: what is drawn is the ink
            return alpha / alpha.max()
        image = image.convert("L")
    gray = np.asarray(image, np.float32)
    if not np.isfinite(gray).all():  # a floating-point TIFF can hold anything
        raise ImageError(f"{name}: holds NaN or infinite pixel values")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = np.float32(np.median(border))
    darker, lighter = background - gray.min(), gray.max() - background
    inked = (background - gray) / darker if darker > lighter else (gray - background) / max(lighter, 1e-30)
    return np.clip(inked, 0, 1, out=inked)


def prepare(image, name="the image"):
    """uint8 [28, 28], white ink on black: the digit in `image` (a PIL Image) prepared as MNIST's were."""
    from PIL import Image

    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name}: no pixels ({image.width} x {image.height})")
    level = ink(image, name)
    rows, columns = np.nonzero(level >= INK_THRESHOLD)
    if len(rows) == 0:
        raise ImageError(f"{name}: no digit in it (the picture is blank: one colour)")
    level = np.ascontiguousarray(level[rows.min():rows.max() + 1, columns.min():columns.max() + 1])
    height, width = level.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    scaled = np.clip(np.asarray(Image.fromarray(level, mode="F").resize(size, resample)), 0, 1)
    digit = np.round(scaled * 255).astype(np.uint8)  # the pixels as they will be: their centre of mass is placed
    # The centre of mass in pixel indices, moved to index 14 by a whole-pixel shift: MNIST's digits
    # have theirs at 14.0 +- 0.5 in both directions (measured over its test set).
    if not digit.any():  # ink too thin to survive the scaling
        raise ImageError(f"{name}: no digit in it (its ink vanishes at 20 pixels)")
    mass = digit.astype(np.float64)
    centre_y = (mass.sum(axis=1) @ np.arange(digit.shape[0])) / mass.sum()
    centre_x = (mass.sum(axis=0) @ np.arange(digit.shape[1])) / mass.sum()
    top = min(max(round(IMAGE_SIZE / 2 - centre_y), 0), IMAGE_SIZE - digit.shape[0])
    left = min(max(round(IMAGE_SIZE / 2 - centre_x), 0), IMAGE_SIZE - digit.shape[1])
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    field[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return field


def load_digit(path):
    """The digit in the image file at `path`, prepared as MNIST's were: uint8 [28, 28]; ImageError otherwise."""
    image = read_image(path)
    return prepare(image, os.fspath(path))
