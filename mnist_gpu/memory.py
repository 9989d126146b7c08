"""How much memory a run may use, checked before anything is allocated: refused in one line, never a traceback."""
import os

from . import model as mnist
from .errors import FlagError


def host_free_memory():
    """The host's available memory (Linux's MemAvailable; elsewhere free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(backend, flags):
    """Refuse, before allocating anything, hidden or batch sizes whose buffers cannot fit."""
    needed = mnist.memory_needed(flags.hidden1, flags.hidden2, flags.batch_size)
    available = backend.free_memory()
    if needed > available:
        raise FlagError(f"--hidden1 {flags.hidden1} --hidden2 {flags.hidden2} --batch_size {flags.batch_size} "
                        f"need about {format_bytes(needed)} for the model and its buffers; the {backend.name} backend "
                        f"has {format_bytes(available)} free")


def format_bytes(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
