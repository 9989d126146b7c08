"""Fetching MNIST-format files from mirrors: retries, a progress bar, and verify-then-rename.

A download goes to a temporary file in the destination folder and is renamed into place
only after it has been decompressed and verified, so a partial or corrupt download is
never left where it could be read as good. A failure to write it (a full disk) is a
WriteError at once: no mirror can help.
"""
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

from .durable import ensure_writable_folder, failure_reason, replace_durably, temporary_beside
from .errors import DataError, WriteError
from .idx_files import gzip_limit, read_verified

# CVDF's mirror is TensorFlow's default since 2017; ossci's is torchvision's.
MIRRORS = {
    "mnist": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

CHUNK_BYTES = 1 << 16


def _is_transient(error):
    """Worth retrying the same URL: server errors and network failures, not 4xx answers."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500
    return isinstance(error, (urllib.error.URLError, TimeoutError, ConnectionError))


@contextmanager
def _writing(destination):
    """An OSError while writing the download to disk is a WriteError naming it, not a network failure to retry."""
    try:
        yield
    except OSError as error:
        raise WriteError(f"saving the download {destination} failed: {failure_reason(error)}; nothing was "
                         "left in its place") from None


def _fetch_to(url, stream, timeout, destination, limit):
    """Write what `url` serves into `stream`, refusing (DataError) more than `limit` bytes: announced, or as they come
    (a server that never stops would fill the disk)."""
    from tqdm import tqdm  # imported only when something is downloaded

    too_large = f"the server sends more than {limit} bytes, the most a gzip file of this data takes"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        if total is not None and total > limit:
            raise DataError(f"{too_large} ({total} announced)")
        written = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=None,
                  leave=False) as progress:
            while chunk := response.read(CHUNK_BYTES):
                written += len(chunk)
                if written > limit:
                    raise DataError(too_large)
                with _writing(destination):
                    stream.write(chunk)
                progress.update(len(chunk))
        with _writing(destination):
            stream.flush()


def download(expected, directory, mirrors, attempts=3, retry_wait=1.0, timeout=30.0):
    """Fetch `expected` into `directory` from the first mirror that serves a verified copy.

    Returns the parsed array. Raises DataError listing every URL tried and why it failed, or
    WriteError if the file cannot be written where it belongs.
    """
    try:
        ensure_writable_folder(directory, f"{expected.name} must be downloaded, but --input_data_dir")
    except WriteError as error:
        raise DataError(str(error)) from None
    destination = os.path.join(directory, expected.name)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + expected.name
        for attempt in range(attempts):
            try:
                with temporary_beside(destination) as temporary:
                    with open(temporary, "wb") as stream:
                        _fetch_to(url, stream, timeout, destination, gzip_limit(expected.size))
                    data = read_verified(temporary, expected)
                    with _writing(destination):
                        replace_durably(temporary, destination)
                return data
            except WriteError:
                raise
            except DataError as error:
                failures.append(f"{url}: downloaded file is bad ({error})")
                break  # the mirror serves a bad file; retrying it will not help
            except Exception as error:  # noqa: BLE001 - every network failure is reported below
                if not _is_transient(error) or attempt + 1 == attempts:
                    failures.append(f"{url}: {error}")
                    break
                time.sleep(retry_wait * 2 ** attempt)
    raise DataError(
        f"{destination}: not present and could not be downloaded; tried "
        + "; ".join(failures)
        + f". Put a verified copy of {expected.name} in {directory} or pass --source_url."
    )

