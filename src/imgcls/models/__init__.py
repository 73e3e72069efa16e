"""Model presets, registered by name with their spec and built through one factory.

Every model takes raw uint8 pixels shaped like the dataset's arrays (a greyscale MNIST batch is
(N, 28, 28), as `keras.datasets` gives it) and rescales inside, so a saved model accepts the same
pixels at prediction time, in plain Keras, without this package. Saved models are pure inference:
random augmentation lives in a training wrapper (imgcls.augment), never in the model.

A preset may need a fixed input (a pretrained backbone takes 224x224 colour pictures): its spec says
so, and the model resizes the dataset's pixels and repeats grey ones to three channels inside
itself, so the saved model still takes the dataset's own raw pixels.

A new preset is one decorated function in `tutorial.py`, `ours.py` or `backbones.py` (or a new
module imported at the bottom of this file): the CLI, `imgcls models` and the tests find it in the
registry.
"""

import dataclasses
from pathlib import Path
from typing import Callable

import keras
from keras import layers

from imgcls.errors import InvalidValue, unknown


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a preset is and what it expects, for the factory and for `imgcls models`."""
    name: str
    body: Callable       # (rescaled (H, W, C) tensor, num_classes) -> class probabilities; for a
                         # pretrained preset (raw 0-255 tensor, num_classes, weights file or None, frozen)
    about: str           # one line for `imgcls models`
    family: str          # "tutorial" (faithful to a notebook), "ours" or "pretrained"
    input_size: tuple | None = None  # (H, W) the body needs; None: any size, the dataset's own
    channels: int | None = None      # channels the body needs; None: the dataset's own
    pretrained: str | None = None    # URL of the ImageNet weights file; None: trained from scratch
    weights_hash: str | None = None  # "md5:<hex>" of that file, as Keras publishes it
    prepare: Callable | None = None  # (model, training images) -> None: a start that depends on the data


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


def check_weights(name, weights):
    """Fail fast on weights that cannot apply: a pretrained preset takes "imagenet", "none" or a
    weights file, the others "none" only."""
    if weights == "none":
        return
    if not model_spec(name).pretrained:
        pretrained = ", ".join(n for n, spec in PRESETS.items() if spec.pretrained)
        raise InvalidValue("weights", f"{weights} applies only to the pretrained presets ({pretrained}); {name} "
                                      f"starts from random weights (--init-from RUN starts from an earlier run's)")
    if weights != "imagenet" and not Path(weights).expanduser().is_file():
        raise InvalidValue("weights", f"must be imagenet, none or a weights file; {weights} is not a file")


def build_model(name, input_shape, num_classes, input_size=None, weights="none", frozen=False):
    """Build preset `name` for raw pixel arrays of `input_shape` ((H, W) or (H, W, C)).

    input_size: side the pictures are resized to inside the model (default: the preset's own size,
    else the dataset's). For a pretrained preset, weights is "imagenet" (downloaded once), "none"
    or a weights file, and `frozen` keeps its backbone fixed, batch norm in inference mode, while
    a new head trains (see imgcls.transfer for unfreezing its top later).
    """
    spec = model_spec(name)
    check_weights(name, weights)
    input_shape = tuple(input_shape)
    inputs = keras.Input(shape=input_shape)
    x = inputs if len(input_shape) == 3 else layers.Reshape((*input_shape, 1))(inputs)
    size = (input_size, input_size) if input_size else spec.input_size
    if size and tuple(x.shape[1:3]) != tuple(size):
        x = layers.Resizing(*size)(x)
    if spec.channels == 3 and x.shape[-1] == 1:
        x = layers.Concatenate()([x, x, x])  # grey pictures as colour ones
    if spec.pretrained:  # raw pixels: each backbone normalises them as its weights expect
        from imgcls.models.backbones import weights_file

        path = weights_file(spec, weights)
        outputs = spec.body(x, num_classes, str(path) if path else None, frozen)
    else:
        outputs = spec.body(layers.Rescaling(1.0 / 255)(x), num_classes)
    return keras.Model(inputs, outputs, name=name)


from imgcls.models import ours, tutorial  # noqa: E402,F401  (registers the presets)
from imgcls.models import backbones  # noqa: E402,F401  (after ours: listed last)
