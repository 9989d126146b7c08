"""The default folders are the user's own (locations.py): where they are, how they are made, what is refused."""
import os
import stat

import pytest

from mnist_gpu import data_cache, input_data, locations
from mnist_gpu.flags import build_parser
from mnist_gpu.idx_files import DATASETS

from helpers import one_error_line, run_main

FAST = ["--fake_data", "--backend", "numpy", "--hidden1", "8", "--hidden2", "4", "--max_steps", "1"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME of the test's own, with no XDG variables."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return tmp_path


@pytest.mark.parametrize("value", ["", "relative/cache", None])
def test_an_xdg_variable_counts_only_when_it_is_an_absolute_path(home, monkeypatch, value):
    if value is not None:
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        monkeypatch.setenv("XDG_DATA_HOME", value)
    monkeypatch.setenv("TEST_TMPDIR", "")  # the tutorial's convention is no longer read (it meant the working folder)
    assert locations.default_input_data_dir() == str(home / ".cache" / "mnist-gpu" / "input_data")
    assert locations.default_runs_root() == str(home / ".local" / "share" / "mnist-gpu" / "runs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "c"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "d"))
    assert locations.default_input_data_dir() == str(home / "c" / "mnist-gpu" / "input_data")
    assert locations.default_runs_root() == str(home / "d" / "mnist-gpu" / "runs")
    train = build_parser().parse_args(["train"])
    assert train.input_data_dir == str(home / "c" / "mnist-gpu" / "input_data")


def test_a_default_run_makes_its_folders_private(home, capsys):
    previous = os.umask(0)  # the most permissive umask: the folders are 0700 all the same
    try:
        assert run_main(capsys, *FAST)[0] == 0
    finally:
        os.umask(previous)
    for folder in (home / ".local" / "share" / "mnist-gpu", home / ".local" / "share" / "mnist-gpu" / "runs"):
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700, folder
    assert len(os.listdir(home / ".local" / "share" / "mnist-gpu" / "runs")) == 1


@pytest.mark.parametrize("planted", ["link", "group-writable", "another user's"])
def test_a_default_folder_that_is_not_this_users_alone_is_refused_in_one_line_naming_it(home, tmp_path, capsys,
                                                                                       planted):
    folder = home / ".local" / "share" / "mnist-gpu"
    folder.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if planted == "link":
        folder.symlink_to(elsewhere)
        why = f"it is a link (to {elsewhere})"
    elif planted == "group-writable":
        folder.mkdir()
        os.chmod(folder, 0o770)
        why = "others can write in it (mode 0770)"
    else:
        if os.geteuid() != 0:
            pytest.skip("making a folder of another user's needs root")
        folder.mkdir(mode=0o700)
        os.chown(folder, 12345, 12345)
        why = "it belongs to user 12345, not to this user root (0)"
    expected = (f"mnist-gpu: error: the folder of the runs made without --log_dir: {folder} is not used: {why}; only a "
                "folder of this user's alone is: remove it, or pass --log_dir, or set XDG_DATA_HOME")
    for arguments in (FAST, ["eval", "--backend", "numpy"], [*FAST, "--resume"]):
        code, lines, error = run_main(capsys, *arguments)
        assert code == 1 and lines == [] and one_error_line(error) == expected, arguments
    assert os.listdir(elsewhere) == []


def test_a_home_that_others_can_write_is_refused_unless_sticky(home, tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("XDG_DATA_HOME", str(shared))
    code, _, error = run_main(capsys, *FAST)
    assert code == 1 and one_error_line(error) == (
        f"mnist-gpu: error: the folder of the runs made without --log_dir: {shared} is not used: others can write "
        "in it (mode 0777, not sticky); pass --log_dir, or set XDG_DATA_HOME")
    os.chmod(shared, 0o1777)  # as /tmp: no one can remove or replace another's folder in it
    assert run_main(capsys, *FAST)[0] == 0
    assert stat.S_IMODE(os.lstat(shared / "mnist-gpu").st_mode) == 0o700


def test_a_default_input_data_dir_that_cannot_be_made_leaves_the_data_to_the_package(home, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))  # under a file: nothing can be made there
    data = input_data.read_data_sets(locations.default_input_data_dir())
    assert "the copy shipped in the package" in data.source and data.train.num_examples == 55000


def test_the_cache_is_never_written_through_a_link(tmp_path, mnist_dir):
    """In any --input_data_dir (shared or not), a `cache` folder that is a link is not written into: no cache."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for expected in DATASETS["mnist"].values():
        os.symlink(os.path.join(mnist_dir, expected.name), data_dir / expected.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data_dir / data_cache.CACHE_FOLDER).symlink_to(elsewhere)
    data = input_data.read_data_sets(str(data_dir))
    assert data.train.num_examples == 55000 and os.listdir(elsewhere) == []
    os.remove(data_dir / data_cache.CACHE_FOLDER)
    input_data.read_data_sets(str(data_dir))  # a real folder: cached
    assert len(os.listdir(data_dir / data_cache.CACHE_FOLDER / "mnist")) == 8


def test_each_dataset_has_its_own_default_folder(home, http_server, mnist_dir):
    """Fashion-MNIST's files have MNIST's names: in the default --input_data_dir each dataset other than MNIST has a
    folder of its own inside it. (Fashion-MNIST read MNIST's verified files there and called them damaged: "checksum
    mismatch ... Delete or replace this file".) In a folder the user names, another dataset's file is named as such."""
    import shutil

    from mnist_gpu.errors import DataError

    folder, url, _ = http_server
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(mnist_dir, name), folder / name)
    default = locations.default_input_data_dir()
    input_data.read_data_sets(default, source_url=url, retry_wait=0)  # MNIST, downloaded into the default
    mnist_files = sorted(name for name in os.listdir(default) if name.endswith(".gz"))
    assert len(mnist_files) == 4
    with pytest.raises(DataError) as refused:  # the server has no Fashion-MNIST: MNIST's bytes under its names
        input_data.read_data_sets(default, dataset="fashion_mnist", source_url=url, retry_wait=0)
    assert "downloaded file is bad" in str(refused.value) and "Delete or replace" not in str(refused.value)
    assert stat.S_IMODE(os.stat(os.path.join(default, "fashion_mnist")).st_mode) == 0o700
    assert sorted(name for name in os.listdir(default) if name.endswith(".gz")) == mnist_files
    with pytest.raises(DataError, match=r"It is mnist's train-images-idx3-ubyte.gz, not fashion_mnist's: keep each "
                                        r"dataset in an --input_data_dir of its own. Delete or replace this file"):
        input_data.read_data_sets(mnist_dir, dataset="fashion_mnist")
