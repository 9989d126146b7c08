"""A few full training steps on the CUDA backend give the NumPy backend's weights (float32 tolerance)."""
import numpy as np
import pytest

from mnist_gpu import model as mnist


@pytest.mark.parametrize("batch, hidden1, hidden2", [(3, 5, 4), (1, 33, 5)])
def test_training_steps_match_numpy(cuda_backend, numpy_backend, generator, batch, hidden1, hidden2):
    variables = mnist.initial_variables(hidden1, hidden2, seed=7)
    # Non-zero biases, so that a kernel that ignored them would show.
    for name in variables:
        if name.endswith("biases"):
            variables[name] = (generator.standard_normal(variables[name].shape) * 0.1).astype(np.float32)
    models = [mnist.Model(backend, variables, batch) for backend in (cuda_backend, numpy_backend)]
    for _ in range(3):
        images = generator.random((batch, mnist.IMAGE_PIXELS), dtype=np.float32)
        labels = generator.integers(0, 10, batch).astype(np.int32)
        losses = []
        for model in models:
            backend = model.backend
            device_images = backend.asarray(images)
            logits = mnist.inference(model, device_images)
            losses.append(float(mnist.loss(model, logits, backend.asarray(labels, dtype=np.int32))))
            mnist.training(model, device_images, learning_rate=0.1)
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    got, expected = (model.host_variables() for model in models)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert models[0].global_step == models[1].global_step == 3
