"""Every registered preset builds, takes raw pixels of the dataset's shape and gives probabilities;
the tutorial presets have the tutorials' exact parameter counts."""

import subprocess
import sys

import numpy as np
import pytest

from imgcls.errors import ImgclsError
from imgcls.models import build_model, list_models, model_spec

# Parameter counts of the tutorial notebooks' models (Keras model.summary()).
TUTORIAL_PARAMS = {
    ("dense", (28, 28)): 109_386,
    ("cnn1", (28, 28)): 347_146,
    ("cnn2", (28, 28)): 225_034,
    ("cnn3", (28, 28)): 93_322,
    ("cnn3", (32, 32, 3)): 122_570,  # TensorFlow's CIFAR-10 CNN tutorial
    ("cnn2", (32, 32, 3)): 315_722,
}


@pytest.mark.parametrize("name", list(list_models()))
@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3), (28, 28, 1)])
def test_every_preset_builds_and_outputs_probabilities(name, shape):
    model = build_model(name, shape, 7)
    assert model.output_shape == (None, 7)
    pixels = np.random.default_rng(0).integers(0, 256, (3, *shape), dtype=np.uint8)
    probs = np.asarray(model.predict(pixels, verbose=0))
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(("name", "shape"), list(TUTORIAL_PARAMS))
def test_tutorial_presets_match_tutorial_parameter_counts(name, shape):
    assert build_model(name, shape, 10).count_params() == TUTORIAL_PARAMS[(name, shape)]


def test_unknown_model_lists_valid_names_and_suggests():
    with pytest.raises(ImgclsError, match=r"unknown model 'cnn22'.*Did you mean 'cnn2'.*dense"):
        build_model("cnn22", (28, 28), 10)


def test_airnet_starts_from_whitened_patches_and_identity_convolutions():
    """airbench's data-dependent start: the frozen first layer makes the training images' 2x2
    patches uncorrelated with unit variance, and the other convolutions pass channels through."""
    import keras

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(600, 33, 33, 3))
    correlated = noise[:, 1:, 1:] + noise[:, :-1, 1:] + noise[:, 1:, :-1] + noise[:, 1:, 1:, ::-1]  # neighbours, channels
    images = np.clip(128 + 20 * correlated, 0, 255).astype(np.uint8)
    model = build_model("airnet", (32, 32, 3), 10)
    model_spec("airnet").prepare(model, images)
    whitening = model.get_layer("whitening")
    trainable = {v.path for v in model.trainable_weights}
    assert whitening.kernel.path not in trainable and whitening.bias.path in trainable
    out = keras.ops.convert_to_numpy(keras.Model(model.input, whitening.output)(images[:500]))
    half = out[..., :12].reshape(-1, 12)  # the other half are their negatives
    np.testing.assert_allclose(out[..., 12:], -half.reshape(out[..., 12:].shape), atol=1e-4)
    covariance = np.cov(half, rowvar=False)
    assert np.all(np.abs(covariance - np.diag(np.diag(covariance))) < 0.01)  # uncorrelated
    assert np.all((np.diag(covariance) > 0.9) & (np.diag(covariance) < 1.01))  # unit variance, up to the eps
    assert abs(half.mean()) < 0.05
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer is not whitening]
    for layer in convolutions:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        n = min(kernel.shape[2:])
        identity = np.zeros(kernel.shape[:3] + (n,), np.float32)
        identity[1, 1, np.arange(n), np.arange(n)] = 1
        np.testing.assert_array_equal(kernel[..., :n], identity)


@pytest.mark.parametrize("background", [0, 255])
def test_airnet_small_frames_pictures_in_their_background_colour_before_whitening(background):
    """28x28 pictures reach the whitening layer as 32x32 framed in their background's colour, taken
    from the training pictures: black for Fashion-MNIST's clothes, white for dark things on paper.
    Objects touching the edge then meet the background there, not the features' zero padding."""
    import keras

    rng = np.random.default_rng(0)
    pictures = np.full((40, 28, 28), background, np.uint8)
    pictures[:, 6:22, 6:22] = rng.integers(0, 256, (40, 16, 16))
    pictures[:, 10:18, :3] = 255 - background  # an object that reaches the left edge
    model = build_model("airnet_small", (28, 28), 10)
    model_spec("airnet_small").prepare(model, pictures)
    seen = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("whitening").input)(pictures))
    assert seen.shape == (40, 32, 32, 1)
    np.testing.assert_allclose(seen[:, 2:30, 2:30, 0], pictures / 255, atol=1e-6)
    seen[:, 2:30, 2:30] = background / 255
    np.testing.assert_allclose(seen, background / 255, atol=1e-6)


# A preset's data-dependent start, then the test pictures' predictions, as training on a small folder
# does them; in a fresh process, since TensorFlow warns about retracing at most twice a process.
PREPARE_THEN_PREDICT = """
import numpy as np
from imgcls.models import build_model, model_spec
images = np.random.default_rng(0).integers(0, 256, (72, 32, 32, 3), dtype=np.uint8)
model = build_model("airnet_small", (32, 32, 3), 2)
model_spec("airnet_small").prepare(model, images)
model.predict(images[:20], verbose=0)
"""


def test_a_small_folders_data_dependent_start_leaves_no_retracing_warning():
    """airnet_small read the training pictures through sub-models' predict, each traced afresh for
    its full and its last batch; on a small folder TensorFlow then printed two paragraphs of
    "triggered tf.function retracing" warnings at the end of every training."""
    result = subprocess.run([sys.executable, "-c", PREPARE_THEN_PREDICT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "retracing" not in result.stderr
