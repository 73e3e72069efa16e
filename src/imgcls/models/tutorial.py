"""The tutorials' networks, layer for layer: their parameter counts match the notebooks'."""

from keras import layers

from imgcls.models import register


def _stack(x, hidden):
    for layer in hidden:
        x = layer(x)
    return x


@register("tutorial")
def dense(x, num_classes):
    """Tutorial dense network: Flatten, Dense 128, Dense 64, softmax."""
    return _stack(x, [
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register("tutorial")
def cnn1(x, num_classes):
    """Tutorial one-block CNN: Conv 32, pool, Dense 64, softmax."""
    return _stack(x, [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register("tutorial")
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


@register("tutorial")
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
