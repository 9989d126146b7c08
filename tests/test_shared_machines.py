"""Two real users on one machine: nothing another user plants where the defaults would go is used or touched.

Root and `nobody`, run through `runuser` (the test needs root, as CI has; elsewhere it is skipped with the
reason). `nobody` plants links, junk data files and folders of its own in a shared sticky folder that is both the
users' $TMPDIR and their working folder (as /tmp is), under the names every earlier default had
(`mnist_gpu/input_data`, its cache, `mnist_gpu/logs/fully_connected_feed`, `./runs`, `mnist-gpu`, `.cache`,
`.local`). Root's default train, eval and predict then succeed without touching any of it; root's defaults
pointed into the shared folder (XDG_CACHE_HOME, XDG_DATA_HOME) refuse in one line naming the planted folder; and
each user's default run succeeds after the other's. Each user has a HOME of its own (`nobody`'s, /nonexistent,
would leave Numba and the defaults nowhere to write: another matter).
"""
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
import pytest
from PIL import Image

OTHER = "nobody"
RUNNER = shutil.which("runuser")
FAST = ["--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--max_steps", "20"]
# The installed command line (as the other tests, the installed package), with the packages of this test's
# environment, also for a user who cannot run this venv's interpreter (it may live in root's home). -I keeps the
# working folder, where anything may be planted, off sys.path.
BOOT = "import site, sys; site.addsitedir(sys.argv.pop(1)); from mnist_gpu.entry import main_exit; main_exit()"


def other_uid():
    import pwd

    try:
        return pwd.getpwnam(OTHER).pw_uid
    except KeyError:
        return None


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a second real user needs root to switch to (CI runs as root)"),
    pytest.mark.skipif(RUNNER is None, reason="runuser is not installed"),
    pytest.mark.skipif(other_uid() is None, reason=f"there is no user {OTHER!r}"),
]


def as_other(*command):
    return [RUNNER, "-u", OTHER, "--", *command]


def interpreter_for_other():
    """This Python, or another of its version that the other user can run (this one may lie in root's home), and
    with which it can import the installed mnist_gpu."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = BOOT.replace("from mnist_gpu.entry import main_exit; main_exit()",
                         "import mnist_gpu.cli; print(sys.version_info[:2])")
    for candidate in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}",
                      shutil.which(f"python{version}")):
        if candidate and os.path.exists(candidate):
            found = subprocess.run(as_other(candidate, "-I", "-c", probe, sysconfig.get_path("purelib")),
                                   capture_output=True, text=True, cwd="/")
            if found.returncode == 0 and found.stdout.strip() == str(sys.version_info[:2]):
                return candidate
    pytest.skip(f"no Python {version} with which user {OTHER} can import the installed mnist_gpu (this one is "
                f"{sys.executable})")


@pytest.fixture
def machine(tmp_path):
    """A shared sticky folder (the users' /tmp and working folder), a HOME for each user, a picture of a digit."""
    shared = tempfile.mkdtemp(prefix="mnist-gpu-shared-")
    os.chmod(shared, 0o1777)
    other_home = tempfile.mkdtemp(prefix="mnist-gpu-other-home-")
    os.chown(other_home, other_uid(), -1)
    trap = os.path.join(other_home, "trap")  # where the planted links lead: a folder anyone can write
    root_home = tmp_path / "root-home"
    root_home.mkdir(mode=0o700)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    picture = os.path.join(shared, "one.png")
    Image.fromarray(digit).save(picture)
    try:
        yield {"shared": shared, "other_home": other_home, "trap": trap, "root_home": str(root_home),
               "picture": picture, "python": interpreter_for_other()}
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(other_home, ignore_errors=True)


PLANT = r"""
set -e
cd "$1"
mkdir -m 777 "$2"
mkdir -p mnist_gpu/input_data/cache/mnist mnist_gpu/logs junk/mnist-gpu/input_data junk/mnist-gpu/runs
printf '<html>not found</html>' > mnist_gpu/input_data/train-images-idx3-ubyte.gz
ln -s /dev/zero mnist_gpu/input_data/cache/mnist/train-images-idx3-ubyte.npy
ln -s "$2" mnist_gpu/logs/fully_connected_feed
printf '<html>not found</html>' > junk/mnist-gpu/input_data/train-images-idx3-ubyte.gz
chmod -R 777 junk
chmod 1777 junk
for name in runs mnist-gpu .cache .local; do ln -s "$2" "$name"; done
"""


def environment(home, shared, **more):
    """A login's environment: nothing of the test session's (no XDG variables), $TMPDIR the shared folder."""
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": shared, "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1",
            "NUMBA_CACHE_DIR": os.path.join(home, "numba"), **more}


def mnist_gpu(machine, user, *arguments, **variables):
    """Run the command line as `user` ("root" or OTHER) in the shared folder; (exit code, stdout, stderr lines)."""
    home = machine["root_home"] if user == "root" else machine["other_home"]
    settings = [f"{name}={value}" for name, value in environment(home, machine["shared"], **variables).items()]
    command = ["env", "-i", *settings, sys.executable if user == "root" else machine["python"], "-I", "-c", BOOT,
               sysconfig.get_path("purelib")]
    if user != "root":
        command = as_other(*command)
    done = subprocess.run(command + list(arguments), capture_output=True, text=True, cwd=machine["shared"],
                          timeout=600)
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()


def listing(folder):
    """Every path under folder (links not followed) with its kind and owner: what was planted stays as it was."""
    found = {}
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(parent, name)
            status = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(status.st_mode) else None
            size = status.st_size if stat.S_ISREG(status.st_mode) else None
            found[os.path.relpath(path, folder)] = (stat.S_IFMT(status.st_mode), status.st_uid, target, size)
    return found


def log_dir_of(errors):
    first = errors[0]
    assert ", log_dir " in first, errors
    return first.split(", log_dir ")[1]


@pytest.mark.slow
def test_another_users_plants_are_neither_used_nor_touched_and_each_users_default_runs_succeed(machine):
    shared, trap = machine["shared"], machine["trap"]
    planted = subprocess.run(as_other("sh", "-c", PLANT, "sh", shared, trap), capture_output=True, text=True)
    assert planted.returncode == 0, planted.stderr
    before = listing(shared)
    assert before["runs"][1] == other_uid() and before["mnist_gpu/logs/fully_connected_feed"][2] == trap

    root_runs = os.path.join(machine["root_home"], ".local", "share", "mnist-gpu", "runs")
    other_runs = os.path.join(machine["other_home"], ".local", "share", "mnist-gpu", "runs")
    for round_ in range(2):  # each user's default commands, then again after the other's
        for user, runs in (("root", root_runs), (OTHER, other_runs)):
            code, lines, errors = mnist_gpu(machine, user, *FAST, "--seed", str(round_))
            assert code == 0, (user, errors)
            log_dir = log_dir_of(errors)
            assert os.path.dirname(log_dir) == runs and "data: mnist from the copy shipped in the package" in errors[0]
            code, lines, errors = mnist_gpu(machine, user, "eval", "--backend", "numpy")
            assert code == 0 and lines[0] == f"Evaluating {log_dir}/model.ckpt-19.safetensors (step 19)", \
                (user, lines, errors)
            code, lines, errors = mnist_gpu(machine, user, "predict", "--backend", "numpy", machine["picture"])
            assert code == 0 and len(lines) == 1 and lines[0].startswith(f"{machine['picture']}: "), (user, errors)
            assert errors == [f"mnist-gpu: predicting with {log_dir}/model.ckpt-19.safetensors (step 19)"]
    assert listing(shared) == before and os.listdir(trap) == []  # nothing planted was used, followed or changed

    for home, uid in ((machine["root_home"], 0), (machine["other_home"], other_uid())):
        cache = os.path.join(home, ".cache", "mnist-gpu")
        for folder in (cache, os.path.join(home, ".local", "share", "mnist-gpu")):
            status = os.lstat(folder)
            assert stat.S_ISDIR(status.st_mode) and status.st_uid == uid and stat.S_IMODE(status.st_mode) == 0o700
        assert sorted(os.listdir(os.path.join(cache, "input_data", "cache", "mnist"))) == sorted(
            f"{name}-ubyte.npy{suffix}" for name in ("t10k-images-idx3", "t10k-labels-idx1", "train-images-idx3",
                                                    "train-labels-idx1") for suffix in ("", ".json"))


def test_defaults_pointed_into_a_shared_folder_refuse_what_another_user_planted_in_one_line(machine):
    """XDG_CACHE_HOME or XDG_DATA_HOME set to a shared folder: the planted `mnist-gpu` there is refused, naming it."""
    shared, trap = machine["shared"], machine["trap"]
    planted = subprocess.run(as_other("sh", "-c", PLANT, "sh", shared, trap), capture_output=True, text=True)
    assert planted.returncode == 0, planted.stderr
    before = listing(shared)
    link = os.path.join(shared, "mnist-gpu")
    folder = os.path.join(shared, "junk", "mnist-gpu")
    cases = [
        (["eval", "--backend", "numpy"], {"XDG_DATA_HOME": shared},
         f"the folder of the runs made without --log_dir: {link} is not used: it is a link (to {trap}); only a folder "
         "of this user's alone is: remove it, or pass --log_dir, or set XDG_DATA_HOME"),
        (FAST, {"XDG_DATA_HOME": shared},
         f"the folder of the runs made without --log_dir: {link} is not used: it is a link (to {trap}); only a folder "
         "of this user's alone is: remove it, or pass --log_dir, or set XDG_DATA_HOME"),
        (FAST, {"XDG_CACHE_HOME": shared},
         f"the default --input_data_dir: {link} is not used: it is a link (to {trap}); only a folder of this user's "
         "alone is: remove it, or pass --input_data_dir, or set XDG_CACHE_HOME"),
        (FAST, {"XDG_CACHE_HOME": os.path.dirname(folder)},  # a sticky folder, as /tmp: its own check passes
         f"the default --input_data_dir: {folder} is not used: it belongs to user {OTHER} ({other_uid()}), not to "
         "this user root (0); only a folder of this user's alone is: remove it, or pass --input_data_dir, or set "
         "XDG_CACHE_HOME"),
        (["eval", "--backend", "numpy"], {"XDG_DATA_HOME": folder},  # another user's folder, not sticky
         f"the folder of the runs made without --log_dir: {folder} is not used: it belongs to user {OTHER} "
         f"({other_uid()}), not to this user root (0); pass --log_dir, or set XDG_DATA_HOME"),
    ]
    for arguments, variables, message in cases:
        code, lines, errors = mnist_gpu(machine, "root", *arguments, **variables)
        assert code == 1 and lines == [] and errors[-1:] == [f"mnist-gpu: error: {message}"], (variables, errors)
    assert listing(shared) == before and os.listdir(trap) == []
    runs = os.path.join(machine["root_home"], ".local", "share", "mnist-gpu", "runs")
    assert not os.path.exists(runs) or os.listdir(runs) == []  # the refused runs left no run folder
