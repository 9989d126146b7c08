"""A verified, decompressed copy of each data file, so a run does not decompress 55 MB of gzip every time.

The gzip files stay the source of truth: a cached array is written only from a file that has
just been decompressed and verified (IDX header, size, MD5), and is used only while

- it records the very source file it is read for among the ones it was verified from (path, size
  and modification time: a replaced or damaged source is read, and verified, again; up to
  MAX_ORIGINS sources are remembered, so a checkout and an installed copy sharing the default
  input_data_dir do not rebuild each other's cache on every run),
- it records the MD5 of the verified data it holds (the same data, whichever copy it came from),
- its bytes still have the CRC-32 recorded when it was written (a truncated, edited or
  bit-flipped cache is never used: it is silently rebuilt from the source),
- its files are regular files (never read through a link: a link to /dev/zero is not a cache)
  that belong to the user running, in folders that do too (an --input_data_dir may be shared: a
  CRC guards against accidents, not against another user who writes a matching record), and of
  the size the expected data makes (checked before anything is mapped or read).

CRC-32 (zlib's) reads the 47 MB training images in about 12 ms, against
0.3 s to decompress and MD5 them; it detects every truncation, every changed byte and every
burst of changed bits up to 32 long: the accidents a cache meets. The array is memory-mapped
(read-only: nothing can change it in memory either), so a warm start reads each page once, for
the check. Writes are atomic (durable.py): a killed run leaves the old cache or none. They are not
fsync'ed: a cache that a power cut left torn fails its CRC and is rebuilt.

Layout: <input_data_dir>/cache/<dataset>/<file>.npy and <file>.npy.json (what it records).
"""
import json
import mmap
import os
import re
import zlib

import numpy as np

from . import locations
from .durable import write_atomically
from .idx_files import IMAGE_COLUMNS, IMAGE_ROWS
from .regular_files import Refused, open_regular, read_at_most

CACHE_FOLDER = "cache"
RECORD_SUFFIX = ".json"
MAX_ORIGINS = 8  # the newest first; more sources than this share one cache only by rebuilding it
MAX_RECORD_BYTES = 64 * 1024  # a record of MAX_ORIGINS origins takes about 2 kB
MAX_NPY_HEADER_BYTES = 4096  # np.save's header for a uint8 array takes 128 bytes


def cache_path(input_data_dir, dataset, expected):
    """Where the decompressed copy of `expected` (an IdxFile) lives."""
    return os.path.join(input_data_dir, CACHE_FOLDER, dataset, expected.name.removesuffix(".gz") + ".npy")


def source_identity(source):
    """What identifies the source file as it is now: its real path, size and modification time."""
    status = os.stat(source)
    return {"source": os.path.realpath(source), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def crc32(array):
    return f"{zlib.crc32(array.data) & 0xFFFFFFFF:08x}"


def open_own(path):
    """A descriptor of `path` and its fstat if it is a regular file of this user's (not a link), else None."""
    try:
        descriptor, status = open_regular(path, follow_links=False)
    except (OSError, Refused):
        return None
    if hasattr(os, "geteuid") and status.st_uid != os.geteuid():  # another user's word counts for nothing
        os.close(descriptor)
        return None
    return descriptor, status


def is_origin(origin):
    """An entry of a record's origins, as source_identity makes them (compared, never opened)."""
    return (isinstance(origin, dict) and set(origin) == {"source", "size", "mtime_ns"}
            and isinstance(origin["source"], str) and os.path.isabs(origin["source"])
            and all(type(origin[field]) is int for field in ("size", "mtime_ns")))


def read_record(path, expected):
    """The record of the cache at `path` if this user wrote it, it is of the expected data and well formed; else None.

    A record is a JSON object of exactly md5 (the expected data's), origins (1 to MAX_ORIGINS
    source identities) and crc32 (8 hex digits); anything else means rebuild, never an error.
    """
    opened = open_own(path + RECORD_SUFFIX)
    if opened is None:
        return None
    try:
        record = json.loads(read_at_most(opened[0], MAX_RECORD_BYTES, "a cache record").decode("utf-8"))
    except (OSError, Refused, ValueError, RecursionError):  # unreadable, too large, not JSON (or nested past Python's
        return None  # stack)
    finally:
        os.close(opened[0])
    if not (isinstance(record, dict) and set(record) == {"md5", "origins", "crc32"} and record["md5"] == expected.md5
            and isinstance(record["origins"], list) and 0 < len(record["origins"]) <= MAX_ORIGINS
            and all(is_origin(origin) for origin in record["origins"])
            and isinstance(record["crc32"], str) and re.fullmatch(r"[0-9a-f]{8}", record["crc32"])):
        return None
    return record


def load(path, source, expected):
    """The cached array if it verifies for this source and this data, else None (never raises for a bad cache)."""
    record = read_record(path, expected)
    if record is None or source_identity(source) not in record["origins"]:
        return None
    shape = (expected.count, IMAGE_ROWS, IMAGE_COLUMNS) if expected.kind == "images" else (expected.count,)
    array = mapped(path, shape)
    if array is None or crc32(array) != record["crc32"]:
        return None
    return array


def mapped(path, shape):
    """The uint8 C-order array of `shape` in the .npy file `path`, memory-mapped read-only, if `path` is a regular file
    of this user's holding exactly that (size checked before anything is mapped); else None."""
    opened = open_own(path)
    if opened is None:
        return None
    descriptor, status = opened
    try:
        if not 0 < status.st_size - int(np.prod(shape)) <= MAX_NPY_HEADER_BYTES:
            return None
        with os.fdopen(os.dup(descriptor), "rb") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return None
            found_shape, fortran_order, dtype = read_header(stream)
            offset = stream.tell()
        if (found_shape != shape or fortran_order or dtype != np.uint8
                or offset + int(np.prod(shape)) != status.st_size):
            return None
        pages = mmap.mmap(descriptor, status.st_size, access=mmap.ACCESS_READ)
    except Exception:  # noqa: BLE001 - a bad cache is rebuilt; a spoiled .npy header raises ValueError, EOFError,
        # SyntaxError and more
        return None
    finally:
        os.close(descriptor)
    # read-only (the mapping is); the mapping lives as long as the array
    return np.frombuffer(pages, np.uint8, count=int(np.prod(shape)), offset=offset).reshape(shape)


def store(path, source, expected, array):
    """Write `array` (just verified from `source`) and its record atomically; any OSError is left to the caller.

    The sources the cache was verified from before stay in its record: the data is the same (its MD5).
    A cache folder that is not a real folder of this user's (a link, another user's) is not written
    into: nothing is cached.
    """
    dataset_folder = os.path.dirname(path)
    cache_folder = os.path.dirname(dataset_folder)
    os.makedirs(os.path.dirname(cache_folder), exist_ok=True)  # the input_data_dir
    try:
        locations.own_folder(cache_folder)
        locations.own_folder(dataset_folder)
    except locations.UntrustedFolder:
        return
    origin = source_identity(source)
    earlier = read_record(path, expected)
    origins = [origin] + [known for known in (earlier["origins"] if earlier else []) if known != origin]
    write_atomically(path, lambda stream: np.save(stream, array, allow_pickle=False), sync=False)
    record = {"md5": expected.md5, "origins": origins[:MAX_ORIGINS], "crc32": crc32(array)}
    write_atomically(path + RECORD_SUFFIX, lambda stream: stream.write(json.dumps(record, indent=1).encode()),
                     sync=False)
