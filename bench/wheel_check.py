"""Checks the wheels bench/gpu_wheels.sh downloaded for the GPU image, and prints their sizes.

    python3 bench/wheel_check.py FOLDER CHECKOUT_BYTES LIMIT_BYTES NAME==VERSION...

Every wheel must install on CPython 3.12, manylinux x86_64 with glibc <= 2.39 (the image's Ubuntu
24.04); there must be exactly one per project asked for, in the version asked for, and nothing
else (pip refuses two versions of one project); and the wheels plus the checkout must fit in
LIMIT_BYTES (what may be copied to the GPU machine). Exit 0 when all hold, else 1 with a line each.
Standard library only.
"""
import glob
import os
import re
import sys

PYTHONS, ABIS = {"cp312", "py3", "py312"}, {"cp312", "abi3", "none"}
PLATFORM = re.compile(r"any|manylinux(1|2010|2014)_x86_64|manylinux_2_(\d+)_x86_64")
NEWEST_GLIBC = 39  # Ubuntu 24.04's 2.39: the image's Python is its 3.12.3


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installable(platform):
    match = PLATFORM.fullmatch(platform)
    return bool(match) and (match[2] is None or int(match[2]) <= NEWEST_GLIBC)


def problems_and_sizes(folder, checkout_bytes, limit_bytes, wanted):
    """(problems, [(file name, bytes)])."""
    problems, projects, sizes = [], {}, []
    for path in sorted(glob.glob(os.path.join(folder, "*.whl"))):
        name = os.path.basename(path)
        parts = name[:-len(".whl")].split("-")
        if len(parts) not in (5, 6):
            problems.append(f"{name}: not a wheel's file name")
            continue
        project, version, (pythons, abis, platforms) = canonical(parts[0]), parts[1], parts[-3:]
        if not (set(pythons.split(".")) & PYTHONS and set(abis.split(".")) & ABIS
                and any(map(installable, platforms.split(".")))):
            problems.append(f"{name}: its tags {pythons}-{abis}-{platforms} do not install on CPython 3.12, "
                            "manylinux x86_64")
        projects.setdefault(project, []).append(version)
        sizes.append((name, os.path.getsize(path)))
    expected = {canonical(spec.split("==")[0]): spec.split("==")[1] for spec in wanted}
    for project, versions in projects.items():
        if versions != [expected.get(project)]:
            problems.append(f"{project}: {', '.join(versions)} in {folder}, expected "
                            f"{expected.get(project, 'no wheel of it')}")
    problems += [f"{project}=={version}: no wheel in {folder}" for project, version in expected.items()
                 if project not in projects]
    total = sum(size for _, size in sizes)
    if total + checkout_bytes > limit_bytes:
        problems.append(f"wheels and checkout together {(total + checkout_bytes) / 2 ** 20:.2f} MiB, over the "
                        f"{limit_bytes / 2 ** 20:.0f} MiB that may be copied to the GPU machine")
    return problems, sizes


def main(argv):
    folder, checkout_bytes, limit_bytes, wanted = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    problems, sizes = problems_and_sizes(folder, checkout_bytes, limit_bytes, wanted)
    for name, size in sizes:
        print(f"  {size / 2 ** 20:6.2f} MiB  {name}")
    total = sum(size for _, size in sizes)
    print(f"wheels: {total / 2 ** 20:.2f} MiB in {len(sizes)} files; checkout {checkout_bytes / 2 ** 20:.2f} MiB; "
          f"together {(total + checkout_bytes) / 2 ** 20:.2f} MiB of the {limit_bytes / 2 ** 20:.0f} MiB allowed")
    for problem in problems:
        print(f"gpu_wheels.sh: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
