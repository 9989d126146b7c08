"""mnist_gpu.train(**flags) and load_checkpoint(...).predict(images): the command line's behaviour from Python."""
import numpy as np
import pytest

import mnist_gpu
from mnist_gpu import model as mnist
from mnist_gpu.errors import FlagError
from mnist_gpu.flags import build_parser, parse_flags
from mnist_gpu.input_data import read_data_sets


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    log_dir = tmp_path_factory.mktemp("run")
    result = mnist_gpu.train(input_data_dir=mnist_dir, log_dir=str(log_dir), backend="numpy", seed=3,
                             max_steps=1000, verbose=False)
    return result, log_dir


def test_train_returns_what_the_run_printed_and_prints_nothing(trained, capsys):
    result, _ = trained
    assert capsys.readouterr() == ("", "")
    assert sorted(result.losses) == list(range(0, 1000, 100)) and 2.0 < result.losses[0] < 2.6
    assert list(result.evaluations) == [999]
    assert result.evaluations[999]["test"][0] == 10000
    assert set(result.precision) == {"train", "validation", "test"}
    assert result.precision["test"] == result.evaluations[999]["test"][1] / 10000
    assert 0.84 <= result.precision["test"] <= 0.89


def test_keywords_get_the_command_lines_defaults_and_checks():
    assert vars(parse_flags()) == {name: value for name, value in vars(build_parser().parse_args(["train"])).items()
                                   if name != "command"}
    with pytest.raises(TypeError, match="unknown flag 'hiden1'"):
        mnist_gpu.train(hiden1=5)
    with pytest.raises(FlagError, match="^argument learning_rate: expected a finite number > 0, got '-1'$"):
        mnist_gpu.train(learning_rate=-1)
    with pytest.raises(TypeError, match="fake_data must be True or False"):
        mnist_gpu.train(fake_data="yes")
    assert issubclass(FlagError, ValueError)


def test_predict_labels_images_in_every_accepted_form(trained, mnist_dir):
    _, log_dir = trained
    classifier = mnist_gpu.load_checkpoint(str(log_dir), backend="numpy")
    assert classifier.global_step == 1000
    test = read_data_sets(mnist_dir).test
    expected = mnist_gpu.load_checkpoint(str(log_dir), backend="numpy")
    reference = mnist.Model(expected.model.backend, expected.model.host_variables(), 10000, [0.01])
    logits = mnist.inference(reference, test.images)[0]
    labels = classifier.predict(test.images)
    assert labels.dtype == np.int32 and labels.shape == (10000,)
    np.testing.assert_array_equal(labels, np.argmax(logits, axis=1))
    np.testing.assert_array_equal(classifier.predict(test.pixels), labels)
    np.testing.assert_array_equal(classifier.predict(test.pixels.reshape(-1, 28, 28)), labels)
    for count in (1, 3, 5001):  # any N, across the internal batches
        np.testing.assert_array_equal(classifier.predict(test.pixels[:count]), labels[:count])
    assert classifier.predict(test.pixels[:0]).shape == (0,)
    # The same model's evaluation counts what predict gets right (no exact ties in float logits).
    assert int(np.count_nonzero(labels == test.labels)) == \
        mnist.evaluation(reference, logits[None], test.labels)[0]


def test_predict_refuses_what_it_cannot_read(trained):
    classifier = mnist_gpu.load_checkpoint(str(trained[1]), backend="numpy")
    with pytest.raises(ValueError, match="must be \\[N, 784\\] or \\[N, 28, 28\\], got shape \\(3, 100\\)"):
        classifier.predict(np.zeros((3, 100), np.float32))
    with pytest.raises(ValueError, match="float images must be in \\[0, 1\\]"):
        classifier.predict(np.full((2, 784), 255.0, np.float32))
    with pytest.raises(TypeError, match="got int64"):
        classifier.predict(np.zeros((2, 784), np.int64))


def test_load_checkpoint_names_a_damaged_file(tmp_path):
    from mnist_gpu.errors import CheckpointError

    path = tmp_path / "model.ckpt-1.safetensors"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="model.ckpt-1.safetensors"):
        mnist_gpu.load_checkpoint(str(path))


def test_a_keyword_value_that_starts_with_a_dash_is_a_value(tmp_path, monkeypatch):
    """log_dir="-run" is the folder -run, as `--log_dir=-run` is on the command line (it was "argument log_dir:
    expected one argument")."""
    from mnist_gpu.flags import parse_flags

    assert parse_flags(log_dir="-run", source_url="-x").log_dir == "-run"
    monkeypatch.chdir(tmp_path)
    result = mnist_gpu.train(log_dir="-run", fake_data=True, backend="numpy", max_steps=1, hidden1=4, hidden2=3,
                             verbose=False)
    assert result.log_dir == "-run" and (tmp_path / "-run" / "checkpoint").is_file()
