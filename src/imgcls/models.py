"""Model presets, registered by name and built through one factory.

Every model takes raw uint8 pixels shaped like the dataset arrays (a greyscale MNIST batch is
(N, 28, 28), as `keras.datasets` gives it) and rescales inside the model, so a saved model accepts
the same pixels at prediction time, in plain Keras, without this package.
"""

import difflib

import keras
from keras import layers

from imgcls.errors import ImgclsError

_PRESETS = {}


def register(fn):
    """Add a model builder `fn(input_shape, num_classes) -> keras.Model` under its own name."""
    _PRESETS[fn.__name__] = fn
    return fn


def list_models():
    """Name -> first line of the builder's docstring."""
    return {name: fn.__doc__.strip().splitlines()[0] for name, fn in _PRESETS.items()}


def build_model(name, input_shape, num_classes):
    """Build the preset `name` for images of `input_shape` ((H, W) or (H, W, C))."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, _PRESETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ImgclsError(f"unknown model '{name}'.{hint} Valid models: {', '.join(_PRESETS)}")
    model = _PRESETS[name](tuple(input_shape), num_classes)
    model.name = name
    return model


def _pixels(input_shape):
    """Input for raw pixels, with a channel axis added for (H, W) greyscale arrays."""
    inputs = keras.Input(shape=input_shape)
    x = inputs if len(input_shape) == 3 else layers.Reshape((*input_shape, 1))(inputs)
    return inputs, layers.Rescaling(1.0 / 255)(x)


def _sequential(input_shape, hidden):
    inputs, x = _pixels(input_shape)
    for layer in hidden:
        x = layer(x)
    return keras.Model(inputs, x)


# The tutorials' networks, layer for layer: their parameter counts match the notebooks'.


@register
def dense(input_shape, num_classes):
    """Tutorial dense network: Flatten, Dense 128, Dense 64, softmax."""
    return _sequential(input_shape, [
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register
def cnn1(input_shape, num_classes):
    """Tutorial one-block CNN: Conv 32, pool, Dense 64, softmax."""
    return _sequential(input_shape, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register
def cnn2(input_shape, num_classes):
    """Tutorial two-block CNN (the seed recipe's network): Conv 32, pool, Conv 64, pool, Dense 128."""
    return _sequential(input_shape, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register
def cnn3(input_shape, num_classes):
    """Tutorial three-conv CNN: Conv 32, pool, Conv 64, pool, Conv 64, Dense 64."""
    return _sequential(input_shape, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])
