"""Where mnist_gpu keeps what it makes without being told where: in folders of the user's own, never a shared one.

- The data (`--input_data_dir`'s default, with the decompressed cache inside it) is a cache:
  `$XDG_CACHE_HOME/mnist-gpu/input_data`, `~/.cache/mnist-gpu/input_data` when XDG_CACHE_HOME is
  unset, as pip, Hugging Face and torchvision keep theirs.
- The runs made without --log_dir are the user's data: `$XDG_DATA_HOME/mnist-gpu/runs`,
  `~/.local/share/mnist-gpu/runs` when XDG_DATA_HOME is unset. One place for every run of the
  user's, wherever the command is started: `--resume`, `eval` and `predict` find them from any
  folder, as the tutorial's fixed log_dir was found.

(The XDG Base Directory rules: a variable that is empty or not an absolute path is ignored.) The
folder is named like the command, `mnist-gpu`, which no Python import can mistake for the
package (a folder named `mnist_gpu` in the working directory shadows the installed package).

Nothing in these folders is trusted because of where it is: each time a command uses one, the
folders from `mnist-gpu` down are made if missing (mode 0700: only this user may list, read or
write them) and checked: a real folder, not a link, owned by the user running, not writable by
group or others. Their parent (the cache or data home) must be the user's own or sticky (as /tmp
is). Anything else is refused in one line naming the folder (UntrustedFolder, exit 1), never used:
inside folders only this user can write, no other user can plant a link or a file.
"""
import os
import stat

from .durable import failure_reason
from .errors import WriteError

APP_FOLDER = "mnist-gpu"
INPUT_DATA = "input_data"
RUNS = "runs"


class UntrustedFolder(WriteError):
    """A default folder that is not this user's alone (a link, another user's, writable by others); never used."""


def xdg_home(variable, fallback):
    """$variable when it is an absolute path (the XDG rule), else ~/fallback."""
    value = os.environ.get(variable, "")
    return value if os.path.isabs(value) else os.path.join(os.path.expanduser("~"), fallback)


def cache_home():
    return xdg_home("XDG_CACHE_HOME", ".cache")


def data_home():
    return xdg_home("XDG_DATA_HOME", os.path.join(".local", "share"))


def default_input_data_dir():
    """--input_data_dir's default (a path: nothing is made or checked here)."""
    return os.path.join(cache_home(), APP_FOLDER, INPUT_DATA)


def default_runs_root():
    """The folder holding one folder per run made without --log_dir (a path: nothing is made or checked here)."""
    return os.path.join(data_home(), APP_FOLDER, RUNS)


def user_name(uid):
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} ({uid})"
    except (ImportError, KeyError):
        return f"user {uid}"


def distrust(status, uid, private=True):
    """Why a folder with this lstat cannot be trusted by user `uid`, or None if it can.

    private: not writable by group or others either (folders made here are 0700).
    """
    if stat.S_ISLNK(status.st_mode):
        return "it is a link"
    if not stat.S_ISDIR(status.st_mode):
        return "it is not a folder"
    if status.st_uid != uid:
        return f"it belongs to {user_name(status.st_uid)}, not to this {user_name(uid)}"
    if private and status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"others can write in it (mode {stat.S_IMODE(status.st_mode):04o})"
    return None


def check_home(home, what):
    """The cache or data home must be this user's own folder, or a sticky one (as /tmp is): else no one else could
    replace what is made in it."""
    status = os.stat(home)  # a link here is the user's own choice (a cache moved to another disk)
    uid = os.geteuid()
    sticky = status.st_mode & stat.S_ISVTX
    if not stat.S_ISDIR(status.st_mode):
        raise UntrustedFolder(f"{what}: {home} is not a folder")
    if not sticky and (status.st_uid != uid or status.st_mode & stat.S_IWOTH):
        why = f"it belongs to {user_name(status.st_uid)}, not to this {user_name(uid)}" if status.st_uid != uid \
            else f"others can write in it (mode {stat.S_IMODE(status.st_mode):04o}, not sticky)"
        raise UntrustedFolder(f"{what}: {home} is not used: {why}; {hint(what)}")


def private_folder(home, names, what, create=True):
    """home/names[0]/names[1]/...: each made if missing (mode 0700) and checked; returns the path.

    UntrustedFolder names the first folder that fails its check and why; an OSError is left to the
    caller when a folder cannot be made (create) or looked at. create=False: a missing folder ends
    the walk (nothing below it exists to be trusted or not), and the path is returned.
    """
    target = os.path.join(home, *names)
    if create:
        os.makedirs(home, mode=0o700, exist_ok=True)
    elif not os.path.isdir(home):
        return target
    check_home(home, what)
    path, uid = home, os.geteuid()
    for name in names:
        path = os.path.join(path, name)
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            if create:
                raise
            return target
        why = distrust(status, uid)
        if why:
            link = f" (to {os.readlink(path)})" if stat.S_ISLNK(status.st_mode) else ""
            raise UntrustedFolder(f"{what}: {path} is not used: {why}{link}; only a folder of this user's alone is: "
                                  f"remove it, or {hint(what)}")
    return target


def hint(what):
    return "pass --log_dir, or set XDG_DATA_HOME" if what == RUNS_WHAT else \
        "pass --input_data_dir, or set XDG_CACHE_HOME"


RUNS_WHAT = "the folder of the runs made without --log_dir"
INPUT_DATA_WHAT = "the default --input_data_dir"


def runs_root(create=True):
    """The checked folder of the runs made without --log_dir (made if missing when `create`).

    UntrustedFolder when it is not this user's alone; a WriteError when it cannot be made.
    """
    try:
        return private_folder(data_home(), [APP_FOLDER, RUNS], RUNS_WHAT, create)
    except OSError as error:
        raise WriteError(f"{RUNS_WHAT}, {default_runs_root()}, cannot be made: {failure_reason(error)}; pass "
                         "--log_dir, or set XDG_DATA_HOME") from None


def checked_input_data_dir(input_data_dir, dataset="mnist"):
    """Where `dataset`'s files are: `input_data_dir`, or when it is the default, its folder for that dataset (MNIST's
    is the default itself; another's a folder inside it, named by the dataset: Fashion-MNIST's files have MNIST's
    names), checked and made first: UntrustedFolder if it is not this user's alone. A default that cannot be made (no
    home) is left missing: the data then comes from the package's copy."""
    if os.path.abspath(input_data_dir) != os.path.abspath(default_input_data_dir()):
        return input_data_dir  # named by the user: a folder of their choosing, maybe shared and read-only
    inside = [] if dataset == "mnist" else [dataset]
    try:
        private_folder(cache_home(), [APP_FOLDER, INPUT_DATA, *inside], INPUT_DATA_WHAT)
    except OSError:
        pass
    return os.path.join(input_data_dir, *inside)


def own_folder(path):
    """Make `path` if missing (one level, the umask's mode) and check it is a real folder of this user's (any mode);
    UntrustedFolder otherwise. For the data cache's folders inside any input_data_dir."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    why = distrust(os.lstat(path), os.geteuid(), private=False)
    if why:
        raise UntrustedFolder(f"{path} is not used: {why}")
    return path
