"""The open-file limit a population needs: each member keeps its TensorBoard event file open while it trains.

Linux's usual soft limit (`ulimit -n`) is 1024, often with a far higher hard limit: a population of
about 1000 members would fail at its first save ("Too many open files"), after its folders were made.
Before anything is written, the soft limit is raised as far as the population needs (a process may
raise its own soft limit up to the hard one), or the population is refused (exit 2) naming the
limit and the largest population it allows.
"""
from .errors import FlagError

SPARE = 64  # descriptors beside the event files: data, checkpoints being saved (on up to 16 threads), libraries


def allow_open_files(members):
    try:
        import resource
    except ImportError:  # not a Unix: no such limit to raise here
        return
    needed = members + SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise refusal(members, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError):  # a system whose real ceiling is below the hard limit it reports (macOS)
        raise refusal(members, soft) from None


def refusal(members, limit):
    if members == 1:
        return FlagError(f"a run needs about {1 + SPARE} open files (its event file, the data, the libraries), but "
                         f"this process may open at most {limit} (ulimit -Hn); raise the limit")
    return FlagError(f"a population of {members} members keeps {members} event files open, but this process may "
                     f"open at most {limit} files (ulimit -Hn): at most {max(limit - SPARE, 0)} members; raise the "
                     "limit or train fewer")
