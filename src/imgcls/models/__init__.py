"""Model presets, registered by name with their spec and built through one factory.

Every model takes raw uint8 pixels shaped like the dataset's arrays (a greyscale MNIST batch is
(N, 28, 28), as `keras.datasets` gives it) and rescales inside, so a saved model accepts the same
pixels at prediction time, in plain Keras, without this package. Saved models are pure inference:
random augmentation lives in a training wrapper (imgcls.augment), never in the model.

A new preset is one decorated function in `tutorial.py` or `ours.py` (or a new module imported at
the bottom of this file): the CLI, `imgcls models` and the tests find it in the registry.
"""

import dataclasses
from typing import Callable

import keras
from keras import layers

from imgcls.errors import unknown


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a preset is and what it expects, for the factory and for `imgcls models`."""
    name: str
    body: Callable       # (rescaled (H, W, C) tensor, num_classes) -> class probabilities
    about: str           # one line for `imgcls models`
    family: str          # "tutorial" (faithful to a notebook) or "ours"
    input_size: tuple | None = None  # (H, W) the body needs; None: any size, the dataset's own
    channels: int | None = None      # channels the body needs; None: the dataset's own
    pretrained: str | None = None    # where pretrained weights come from; None: trained from scratch


PRESETS: dict[str, ModelSpec] = {}


def register(family, **spec):
    """Decorator adding a model body `fn(pixels, num_classes) -> outputs` under its own name; the
    first line of its docstring describes it."""
    def add(fn):
        about = fn.__doc__.strip().splitlines()[0]
        PRESETS[fn.__name__] = ModelSpec(fn.__name__, fn, about, family, **spec)
        return fn
    return add


def list_models():
    """Name -> one-line description."""
    return {name: spec.about for name, spec in PRESETS.items()}


def model_spec(name) -> ModelSpec:
    """The preset called `name`; fails fast, before any data is fetched, on any other name."""
    if name not in PRESETS:
        raise unknown("model", name, PRESETS)
    return PRESETS[name]


def build_model(name, input_shape, num_classes):
    """Build preset `name` for raw pixel arrays of `input_shape` ((H, W) or (H, W, C))."""
    spec = model_spec(name)
    input_shape = tuple(input_shape)
    inputs = keras.Input(shape=input_shape)
    x = inputs if len(input_shape) == 3 else layers.Reshape((*input_shape, 1))(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    return keras.Model(inputs, spec.body(x, num_classes), name=name)


from imgcls.models import ours, tutorial  # noqa: E402,F401  (registers the presets)
