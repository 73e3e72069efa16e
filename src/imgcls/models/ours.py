"""Our own networks, measured on a 2-core CPU, where the first convolution at full resolution costs
the most. A 5x5 stride-2 convolution halves the resolution at once; batch norm on the wide dense
layer (not after every convolution, which halved throughput) lets Adam run at a high rate."""

from keras import layers

from imgcls.models import register


def _strided(x, num_classes, widths, dense):
    # Each picture scaled to zero mean and unit variance: faint ink, grey paper, fog and brightness
    # stop mattering (MNIST-C mean +1.0 point, MNIST +0.1-0.2 over 3 seeds, for no parameters).
    x = layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False)(x)
    x = layers.Conv2D(widths[0], 5, strides=2, activation="relu")(x)
    x = layers.Conv2D(widths[1], 3, activation="relu")(x)
    x = layers.Flatten()(layers.MaxPooling2D()(x))
    x = layers.Dense(dense, use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))  # 0.9: eval stats keep up in one epoch
    return layers.Dense(num_classes, activation="softmax")(x)


@register("ours")
def fast(x, num_classes):
    """Ours, the default: per-image normalisation, strided Conv 16, Conv 32, pool, Dense 128 with batch norm."""
    return _strided(x, num_classes, (16, 32), 128)


@register("ours")
def fast_wide(x, num_classes):
    """Ours, for the best preset: the fast network at twice the width."""
    return _strided(x, num_classes, (32, 64), 256)


def _conv_bn(x, filters):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))


@register("ours")
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
