"""How much memory a run may use, checked before anything is allocated: refused in one line, never a traceback.

On the host, what a process may still take is the least of three limits: the memory the machine
has available (Linux's MemAvailable), the process's own address-space limit (RLIMIT_AS, `ulimit
-v`, less what it maps already), and its control group's limit (cgroup v2 memory.max, v1
memory.limit_in_bytes, at every level up to the root, less what the group uses that cannot be
reclaimed). A host run needs its model and buffers (model.memory_needed) and RUN_HOST_BYTES for
the rest: the data, and the libraries that load at the first checkpoint and evaluation.
"""
import os

from . import model as mnist
from .errors import Flag, FlagError

# What a default run maps beyond the model after the memory check: the data sets, TensorBoard's and Pillow's
# libraries, the pictures. Measured as the growth of VmSize from the check to the run's end (VmPeak): 136 MB on
# the numpy backend, 131 MB on cpu (2026-12-02, the 2-core VM); the rest is margin.
RUN_HOST_BYTES = 192 * 2 ** 20
UNLIMITED = 2 ** 60  # a cgroup v1 "no limit" is 9223372036854771712; anything this large is no limit


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            return stream.read()
    except OSError:
        return None


def _status_bytes(key):
    """A /proc/self/status field in bytes (VmSize: what this process maps), or None."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def available_memory():
    """(bytes, why): the host's available memory (MemAvailable; elsewhere free physical pages)."""
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024, "the host's available memory (MemAvailable)"
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "the host's free memory"


def address_space_limit():
    """(bytes left, why) under this process's RLIMIT_AS (`ulimit -v`), or None when it has none."""
    try:
        import resource
    except ImportError:  # not Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = _status_bytes("VmSize") or 0
    return max(soft - used, 0), (f"this process's address-space limit of {format_bytes(soft)} (ulimit -v "
                                 f"{soft // 1024}), {format_bytes(used)} of it mapped already")


def share_one_malloc_arena():
    """Under an address-space limit, have every thread allocate from glibc's one main arena.

    glibc gives threads arenas of their own, each reserving 64 MB of address space: a population's
    16 save threads reserved up to 1 GB that `ulimit -v` counts and the check cannot foresee (a
    population that fitted crashed in its first save: out of memory, or a segfault in a library
    that met a failed allocation; measured: VmPeak 1.77 GB, 0.82 GB with one arena, for 28 members
    of 1024 x 512). Without a limit, or without glibc, nothing changes.
    """
    if address_space_limit() is None:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    M_ARENA_MAX = -8  # glibc's malloc.h
    mallopt(M_ARENA_MAX, 1)


def cgroup_folders():
    """[(folder, version)] of this process's memory control group and each of its parents, deepest first."""
    folders = []
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and controllers == "":
            base, version = "/sys/fs/cgroup", 2
        elif "memory" in controllers.split(","):
            base, version = "/sys/fs/cgroup/memory", 1
        else:
            continue
        folder = os.path.join(base, path.lstrip("/"))
        if not os.path.isdir(folder):  # a cgroup namespace: the mount shows this group as its root
            folder = base
        while True:
            folders.append((folder, version))
            if os.path.normpath(folder) == os.path.normpath(base):
                break
            folder = os.path.dirname(folder)
    return folders


def cgroup_limit():
    """(bytes left, why) under the tightest memory limit of this process's control groups, or None."""
    tightest = None
    for folder, version in cgroup_folders():
        limit_file, usage_file, inactive = (("memory.max", "memory.current", "inactive_file") if version == 2 else
                                            ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
        limit, usage = (_read(os.path.join(folder, name)) for name in (limit_file, usage_file))
        try:
            limit, usage = int(limit), int(usage)
        except (TypeError, ValueError):  # "max", or no such file (no memory controller here)
            continue
        if limit >= UNLIMITED:
            continue
        reclaimable = 0
        for line in (_read(os.path.join(folder, "memory.stat")) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive and value.strip().isdigit():
                reclaimable = int(value)
        used = max(usage - reclaimable, 0)
        left = max(limit - used, 0)
        if tightest is None or left < tightest[0]:
            tightest = left, (f"the control group {folder}'s limit of {format_bytes(limit)} ({limit_file}), "
                              f"{format_bytes(used)} of it in use")
    return tightest


def host_limits():
    """[(bytes this process may still take, why)] for each limit that applies on the host."""
    return [limit for limit in (available_memory(), address_space_limit(), cgroup_limit()) if limit is not None]


def host_free_memory():
    """What this process may still allocate on the host: the least of host_limits()."""
    return min(left for left, _ in host_limits())


def check_memory(backend, flags, members=1):
    """Refuse, before allocating anything, hidden or batch sizes (or a population) whose buffers cannot fit.

    On the host the whole run counts (RUN_HOST_BYTES beyond the model), against the tightest of
    the host's limits (host_limits), which the message names; on a GPU, its free memory. A
    population's message names how many members would fit.
    """
    needed = mnist.memory_needed(flags.hidden1, flags.hidden2, flags.batch_size, members)
    available, extra, why = room(backend)
    rest = ", with the rest of the run" if extra else ""
    if needed + extra <= available:
        return
    shapes = (Flag("hidden1", flags.hidden1), " ", Flag("hidden2", flags.hidden2), " ",
              Flag("batch_size", flags.batch_size))
    if members == 1:
        raise FlagError(*shapes, f" need about {format_bytes(needed + extra)} for the model and its buffers{rest}; "
                        + why.format(format_bytes(available)))
    fits = largest_population(flags, available - extra)  # members_that_fit's, from the room measured above
    raise FlagError(f"a population of {members} members with ", *shapes,
                    f" needs about {format_bytes(needed + extra)}{rest}; " + why.format(format_bytes(available)) +
                    f", enough for {fits} member{'' if fits == 1 else 's'}: sweep fewer seeds or learning rates")


def room(backend):
    """(bytes available, bytes the rest of the run takes of them, what limits them: a format string for the first):
    on a GPU its free memory; on the host the tightest of its limits (host_limits), RUN_HOST_BYTES of it for the
    rest of the run."""
    if backend.name == "cuda":
        return backend.free_memory(), 0, f"the {backend.name} backend has {{}} free"
    available, limit = min(host_limits())
    return available, RUN_HOST_BYTES, f"this process may take {{}} more: {limit}"


def members_that_fit(backend, flags):
    """The most members of flags' shape whose model and buffers fit on `backend`, by check_memory's rule."""
    available, extra, _ = room(backend)
    return largest_population(flags, available - extra)


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


def out_of_memory(error):
    """One line for a MemoryError that got past the checks: what could not be allocated, and the tightest limit."""
    left, limit = min(host_limits())
    return f"out of memory ({error}); this process may take {format_bytes(left)} more: {limit}"


def format_bytes(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
