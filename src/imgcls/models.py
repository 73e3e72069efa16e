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
    """Add a model body `fn(pixels, num_classes) -> outputs` under its own name; `pixels` is the
    rescaled (H, W, C) image tensor, so every preset shares the same input handling."""
    _PRESETS[fn.__name__] = fn
    return fn


def list_models():
    """Name -> first line of the preset's docstring."""
    return {name: fn.__doc__.strip().splitlines()[0] for name, fn in _PRESETS.items()}


def check_model_name(name):
    """Fail fast, before any data is fetched, on a name that is not a preset."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, _PRESETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ImgclsError(f"unknown model '{name}'.{hint} Valid models: {', '.join(_PRESETS)}")


def build_model(name, input_shape, num_classes, augment=None):
    """Build preset `name` for raw pixel arrays of `input_shape` ((H, W) or (H, W, C)).

    `augment` ("shift", "flip", "shift,flip" or "auto": shift, and flip for colour images) puts
    random augmentation after the rescaling; Keras applies it only in training, so the saved model
    predicts as usual.
    """
    check_model_name(name)
    input_shape = tuple(input_shape)
    inputs = keras.Input(shape=input_shape)
    x = inputs if len(input_shape) == 3 else layers.Reshape((*input_shape, 1))(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    if augment:
        x = augmentation(augment, x.shape[-1])(x)
    return keras.Model(inputs, _PRESETS[name](x, num_classes), name=name)


def augmentation(kinds, channels):
    kinds = set(kinds.split(","))
    if "auto" in kinds:
        kinds = {"shift", "flip"} if channels == 3 else {"shift"}
    steps = []
    if "flip" in kinds:
        steps.append(layers.RandomFlip("horizontal"))
    if "shift" in kinds:  # up to 1/8 of the side: 4 pixels of CIFAR's 32, as the fast CIFAR recipes do
        steps.append(layers.RandomTranslation(0.125, 0.125, fill_mode="constant"))
    return keras.Sequential(steps, name="augmentation")


def _stack(x, hidden):
    for layer in hidden:
        x = layer(x)
    return x


# The tutorials' networks, layer for layer: their parameter counts match the notebooks'.


@register
def dense(x, num_classes):
    """Tutorial dense network: Flatten, Dense 128, Dense 64, softmax."""
    return _stack(x, [
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register
def cnn1(x, num_classes):
    """Tutorial one-block CNN: Conv 32, pool, Dense 64, softmax."""
    return _stack(x, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register
def cnn2(x, num_classes):
    """Tutorial two-block CNN (the seed recipe's network): Conv 32, pool, Conv 64, pool, Dense 128."""
    return _stack(x, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register
def cnn3(x, num_classes):
    """Tutorial three-conv CNN: Conv 32, pool, Conv 64, pool, Conv 64, Dense 64."""
    return _stack(x, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


# Our own networks: measured on a 2-core CPU, where the first convolution at full resolution costs
# the most. A 5x5 stride-2 convolution halves the resolution at once; batch norm on the wide dense
# layer (not after every convolution, which halved throughput) lets Adam run at a high rate.


def _strided(x, num_classes, widths, dense):
    x = layers.Conv2D(widths[0], 5, strides=2, activation="relu")(x)
    x = layers.Conv2D(widths[1], 3, activation="relu")(x)
    x = layers.Flatten()(layers.MaxPooling2D()(x))
    x = layers.Dense(dense, use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))  # 0.9: eval stats keep up in one epoch
    return layers.Dense(num_classes, activation="softmax")(x)


@register
def fast(x, num_classes):
    """Ours, the default: strided Conv 16, Conv 32, pool, Dense 128 with batch norm."""
    return _strided(x, num_classes, (16, 32), 128)


@register
def fast_wide(x, num_classes):
    """Ours, for the best preset: the fast network at twice the width."""
    return _strided(x, num_classes, (32, 64), 256)


def _conv_bn(x, filters):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))


@register
def convnet(x, num_classes):
    """Ours, for photos and clothes: a stem and three conv-pool-conv blocks with batch norm."""
    # After the fast CIFAR-10 scripts (airbench): pool right after each block's first
    # convolution, batch norm everywhere, global max pooling instead of a wide dense layer.
    x = _conv_bn(x, 16)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(layers.MaxPooling2D()(x)))
        x = _conv_bn(x, filters)
    x = layers.GlobalMaxPooling2D()(x)
    return layers.Dense(num_classes, activation="softmax")(x)
