"""What produced a run: versions, the source checkout, the backend's device, the flags and the start time.

Every checkpoint carries this record in its metadata (key "provenance", a JSON object) and every
run's event file carries it as a text summary, so a file found later can be told apart from
another. The record:

    mnist_gpu      the package version
    git            {"commit": 40 hex digits, "changes": bool} when mnist_gpu runs from a git checkout
                   (an editable install or `python -m mnist_gpu` in the repository); absent otherwise
    python         e.g. "3.11.7"
    libraries      {"numpy": ..., "numba": ..., "numba-cuda": ..., "cupy": ..., "nvmath-python": ...},
                   those this process has loaded
    backend        {"name": "cpu", "processor": "..."}, {"name": "numpy", "processor": "..."}, or
                   {"name": "cuda", "gpu": ..., "compute_capability": "9.0", "cuda_driver": "13.0",
                   "nvidia_driver": ...} (nvidia_driver where Linux's /proc tells it)
    platform       e.g. "Linux 6.1.0 x86_64"
    flags          every flag of the command, as given
    seed           the seed the run used (a random one when --seed was not given)
    started        the run's start, UTC, ISO 8601 to the second ("2026-12-01T12:34:56Z")
    continues      a resumed run's: the runs it continues, oldest first (at most MAX_CONTINUES), each
                   {"checkpoint": the one resumed from, "step", and that run's mnist_gpu, git, backend,
                   flags, seed, started}; absent for a run that started from scratch

Gathering it costs a few milliseconds (two git commands), so the trainer gathers it at the first
checkpoint, after the first step line, never at start-up.
"""
import functools
import os
import sys
import time

from .log import printable_value
from .version import __version__

# {module: package} of the libraries a record lists, when this process has loaded them.
LIBRARIES = (("numpy", "numpy"), ("numba", "numba"), ("numba_cuda", "numba-cuda"), ("cupy", "cupy"),
             ("nvmath", "nvmath-python"))
PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__))


def utc_iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _git(checkout, *arguments):
    import subprocess

    try:
        result = subprocess.run(["git", "-C", checkout, *arguments], capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):  # no git program, or a hung one
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.cache
def git_state():
    """{"commit", "changes"} of the checkout mnist_gpu runs from, or None (an installed copy, or no git).

    Only a checkout whose top folder holds this very package counts: an installed copy in a
    virtual environment inside some other repository is not that repository's code. "changes"
    is true when tracked files differ from the commit or untracked (not ignored) files exist.
    """
    checkout = os.path.dirname(PACKAGE_FOLDER)
    if not os.path.exists(os.path.join(checkout, ".git")):  # a folder, or a worktree's file
        return None
    top_and_commit = (_git(checkout, "rev-parse", "--show-toplevel", "HEAD") or "").splitlines()
    if len(top_and_commit) != 2 or os.path.realpath(top_and_commit[0]) != os.path.realpath(checkout):
        return None
    commit = top_and_commit[1]
    status = _git(checkout, "status", "--porcelain")
    if status is None:
        return None
    return {"commit": commit, "changes": status != ""}


def library_versions():
    """{package: version} of the listed libraries this process has imported."""
    return {package: str(getattr(sys.modules[module], "__version__", "unknown"))
            for module, package in LIBRARIES if module in sys.modules}


def processor_model():
    """The CPU's model name as the OS gives it (Linux: /proc/cpuinfo), else the platform's best guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def nvidia_driver():
    """The NVIDIA kernel driver's version (Linux), or None."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as stream:
            words = stream.readline().split()
    except OSError:
        return None
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Tue Jan ..."
    return next((word for word in words if word[:1].isdigit() and "." in word), None)


def backend_description(backend):
    """{"name", and the device: the CPU's model, or the GPU's name, compute capability and drivers}."""
    if backend.name != "cuda":
        return {"name": backend.name, "processor": processor_model()}
    if getattr(backend, "simulated", False):
        return {"name": "cuda", "gpu": "Numba's CUDA simulator (no GPU)", "processor": processor_model()}
    import cupy  # the cuda backend has it loaded

    runtime = cupy.cuda.runtime
    properties = runtime.getDeviceProperties(runtime.getDevice())
    driver = runtime.driverGetVersion()  # 13000 for CUDA 13.0
    described = {"name": "cuda", "gpu": properties["name"].decode(errors="replace"),
                 "compute_capability": f"{properties['major']}.{properties['minor']}",
                 "cuda_driver": f"{driver // 1000}.{driver % 1000 // 10}"}
    if nvidia_driver() is not None:
        described["nvidia_driver"] = nvidia_driver()
    return described


MAX_CONTINUES = 100
CONTINUED_FIELDS = ("mnist_gpu", "git", "backend", "flags", "seed", "started")


def continues(resumed):
    """The "continues" list of a run resumed from the checkpoint `resumed` (its provenance is a dict read from a
    file: only the listed fields are taken, and at most MAX_CONTINUES parts are kept, the newest)."""
    record = resumed.provenance if isinstance(resumed.provenance, dict) else {}
    earlier = record.get("continues")
    earlier = [part for part in earlier if isinstance(part, dict)] if isinstance(earlier, list) else []
    part = {name: record[name] for name in CONTINUED_FIELDS if name in record}
    part.update(checkpoint=os.path.basename(resumed.path), step=resumed.global_step - 1)
    return (earlier + [part])[-MAX_CONTINUES:]


def gather(flags, backend, seed, started, resumed=None):
    """The provenance record (see the module's docstring) of a run of `flags` on `backend`, started at `started`;
    `resumed` is the checkpoint it continues (None for a run from scratch)."""
    import platform

    record = {"mnist_gpu": __version__}
    git = git_state()
    if git is not None:
        record["git"] = git
    record.update(python=platform.python_version(), libraries=library_versions(), backend=backend_description(backend),
                  platform=f"{platform.system()} {platform.release()} {platform.machine()}",
                  flags={name: value for name, value in sorted(vars(flags).items()) if name != "command"},
                  seed=seed, started=utc_iso(started))
    if resumed is not None:
        record["continues"] = continues(resumed)
    return record


def hparams(record):
    """The run's flags for TensorBoard's HParams tab: the flags as given, with the seed the run used."""
    return {**record.get("flags", {}), "seed": record.get("seed")}


def typed_flag(name, value):
    """A flag as it is typed: `--fake_data` for a switch that is on, else `--name value`."""
    return f"--{printable_value(name)}" if value is True else f"--{printable_value(name)} {printable_value(value)}"


def describe(record):
    """One line saying what made a checkpoint, from its record (a dict read from a file: anything may be missing)."""
    if not record:
        return "made by an mnist_gpu that recorded no provenance"

    def field(mapping, key):
        value = mapping.get(key) if isinstance(mapping, dict) else None
        return None if value is None else printable_value(value)

    parts = [f"mnist_gpu {field(record, 'mnist_gpu') or '(version unknown)'}"]
    git = record.get("git")
    if isinstance(git, dict) and field(git, "commit"):
        parts[0] += f" (git {field(git, 'commit')[:12]}{', with uncommitted changes' if git.get('changes') else ''})"
    backend = record.get("backend")
    device = ", ".join(f"{key.replace('_', ' ')} {field(backend, key)}"
                       for key in ("gpu", "compute_capability", "cuda_driver", "nvidia_driver", "processor")
                       if field(backend, key))
    parts.append(f"backend {field(backend, 'name') or '(unknown)'}" + (f" ({device})" if device else ""))
    versions = [f"Python {field(record, 'python')}"] if field(record, "python") else []
    libraries = record.get("libraries")
    if isinstance(libraries, dict):
        versions += [f"{printable_value(name)} {printable_value(version)}" for name, version in libraries.items()]
    if versions:
        parts.append(", ".join(versions))
    if field(record, "started"):
        parts.append(f"started {field(record, 'started')}")
    if field(record, "seed"):
        parts.append(f"seed {field(record, 'seed')}")
    flags = record.get("flags")
    if isinstance(flags, dict):
        flags = dict(flags)
        population, trial = flags.pop("population_dir", None), flags.pop("trial", None)  # a member's: not flags
        parts.append("flags " + " ".join(typed_flag(name, value) for name, value in flags.items()
                                         if value is not None and value is not False))
        if population is not None:
            parts.append(f"a member of the sweep in {printable_value(population)}"
                         + ("" if trial is None else f", trial {printable_value(trial)}"))
    earlier = record.get("continues")
    if isinstance(earlier, list) and earlier and all(isinstance(part, dict) for part in earlier):
        last, first = earlier[-1], earlier[0]
        resumed = f"resuming {field(last, 'checkpoint') or 'a checkpoint'} of a run started " \
                  f"{field(last, 'started') or '(unknown)'}"
        if len(earlier) > 1:
            resumed += f", which continued {len(earlier) - 1} earlier run{'s' if len(earlier) > 2 else ''} " \
                       f"(the first started {field(first, 'started') or '(unknown)'})"
        parts.append(resumed)
    return "made by " + "; ".join(parts)
