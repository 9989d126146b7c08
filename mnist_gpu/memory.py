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


def check_memory(backend, flags, members=1):
    """Refuse, before allocating anything, hidden or batch sizes (or a population) whose buffers cannot fit."""
    needed = mnist.memory_needed(flags.hidden1, flags.hidden2, flags.batch_size, members)
    available = backend.free_memory()
    if needed <= available:
        return
    shapes = f"--hidden1 {flags.hidden1} --hidden2 {flags.hidden2} --batch_size {flags.batch_size}"
    if members == 1:
        raise FlagError(f"{shapes} need about {format_bytes(needed)} for the model and its buffers; the "
                        f"{backend.name} backend has {format_bytes(available)} free")
    fits = largest_population(flags, available)
    raise FlagError(f"a population of {members} members with {shapes} needs about {format_bytes(needed)}; the "
                    f"{backend.name} backend has {format_bytes(available)} free, enough for "
                    f"{fits} member{'' if fits == 1 else 's'}: sweep fewer seeds or learning rates")


def largest_population(flags, available):
    """The most members whose model and buffers fit in `available` bytes (0 if not even one)."""
    low, high = 0, 1
    while mnist.memory_needed(flags.hidden1, flags.hidden2, flags.batch_size, high) <= available:
        low, high = high, high * 2
    while high - low > 1:  # memory_needed grows with the members: the largest that fits, by bisection
        middle = (low + high) // 2
        if mnist.memory_needed(flags.hidden1, flags.hidden2, flags.batch_size, middle) <= available:
            low = middle
        else:
            high = middle
    return low


def format_bytes(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
