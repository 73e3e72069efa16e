"""Every registered preset builds, takes raw pixels of the dataset's shape and gives probabilities;
the tutorial presets have the tutorials' exact parameter counts."""

import numpy as np
import pytest

from imgcls.errors import ImgclsError
from imgcls.models import build_model, list_models

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
