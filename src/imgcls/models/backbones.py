"""Pretrained backbones from keras.applications, for photos of your own: a few hundred pictures
per class are enough to train a new head on features learnt from ImageNet, where training from
scratch is not.

Each takes raw 0-255 RGB pixels at its own input size (imgcls.models.build_model resizes and
recolours the dataset's inside the model) and normalises them itself, as its ImageNet weights
expect, with built-in Keras layers only: a saved model loads in plain Keras, in safe mode.
The weights are Keras's own files, fetched once into the imgcls cache and checked against the
hashes Keras publishes (keras/src/applications/*.py of Keras 3.15.1).
"""

import os
import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

from imgcls.data.cache import cache_dir
from imgcls.data.console import say
from imgcls.data.sources import download, verify
from imgcls.errors import ImgclsError
from imgcls.models import register

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_SIZE = (224, 224)


def weights_file(spec, weights):
    """The weights file for `weights` ("imagenet", "none" or a path): None for "none"; ImageNet's
    downloaded into the cache (with a progress line) unless a verified copy is there already."""
    if weights == "none":
        return None
    if weights != "imagenet":
        return Path(weights).expanduser()
    path = cache_dir() / "weights" / spec.pretrained.rsplit("/", 1)[-1]
    if path.is_file():
        try:
            verify(path.parent, {path.name: spec.weights_hash})
            return path
        except ImgclsError as e:
            say(f"{e}; downloading it again")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".fetch-weights-", dir=path.parent) as scratch:
            download(spec.pretrained, Path(scratch) / path.name)
            verify(Path(scratch), {path.name: spec.weights_hash})
            os.replace(Path(scratch) / path.name, path)
    except ImgclsError as e:
        raise ImgclsError(f"{e} from {spec.pretrained}; without internet, download that file elsewhere and "
                          f"pass it with --weights FILE (or train from scratch with --weights none)") from None
    return path


def _classifier(net, x, num_classes, frozen):
    """`net` on `x`, then a new head. A frozen backbone runs in inference mode (training=False), so
    its batch norm keeps ImageNet's statistics even once its top is unfrozen for fine-tuning."""
    net.trainable = not frozen
    features = net(x, training=False) if frozen else net(x)
    features = layers.Dropout(0.2)(features)  # as keras.applications' own heads
    return layers.Dense(num_classes, activation="softmax")(features)


@register("pretrained", input_size=IMAGENET_SIZE, channels=3,
          pretrained=KERAS_WEIGHTS + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
          weights_hash="md5:d3e8ec802a04aa4fc771ee12a9a9b836")
def mobilenet_v3_small(x, num_classes, weights, frozen):
    """Pretrained MobileNetV3 Small (ImageNet; 0.9M parameters, 0.1 GFLOP an image): the quickest on a CPU."""
    net = keras.applications.MobileNetV3Small(input_shape=tuple(x.shape[1:]), include_top=False, weights=weights,
                                              pooling="avg", include_preprocessing=True)
    return _classifier(net, x, num_classes, frozen)


# EfficientNet's own normalisation; with weights="imagenet", and only then, Keras divides once more
# by the square root of these (keras/src/applications/efficientnet.py). imgcls passes the file
# itself, so that division is folded into the normalisation layer's variance instead.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


@register("pretrained", input_size=IMAGENET_SIZE, channels=3,
          pretrained="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
          weights_hash="md5:50bc09e76180e00e4465e1a485ddc09d")
def efficientnet_b0(x, num_classes, weights, frozen):
    """Pretrained EfficientNet-B0 (ImageNet; 4.0M parameters, 0.7 GFLOP): more accurate, for the finetune recipe."""
    net = keras.applications.EfficientNetB0(input_shape=tuple(x.shape[1:]), include_top=False, weights=weights,
                                            pooling="avg")
    if weights is not None:
        normalization = next(layer for layer in net.layers if isinstance(layer, layers.Normalization))
        normalization.adapt_variance.assign(normalization.adapt_variance * np.array(IMAGENET_STDDEV_RGB))
        normalization.finalize_state()
    return _classifier(net, x, num_classes, frozen)


IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_preprocessing(x):
    """keras.applications.resnet50.preprocess_input inside the model: RGB to BGR and ImageNet's mean
    subtracted, as a fixed 1x1 convolution (a built-in layer: no Lambda, nothing of ours to register)."""
    conv = layers.Conv2D(3, 1, trainable=False, name="rgb_to_bgr_minus_imagenet_mean")
    y = conv(x)
    conv.set_weights([np.eye(3)[::-1].reshape(1, 1, 3, 3), -np.array(IMAGENET_MEAN_BGR)])
    return y


@register("pretrained", input_size=IMAGENET_SIZE, channels=3,
          pretrained=KERAS_WEIGHTS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
          weights_hash="md5:4d473c1dd8becc155b73f8504c6f6626")
def resnet50(x, num_classes, weights, frozen):
    """Pretrained ResNet-50 (ImageNet; 23.6M parameters, 7.7 GFLOP): the classic, 80x MobileNet's work."""
    net = keras.applications.ResNet50(input_shape=tuple(x.shape[1:]), include_top=False, weights=weights,
                                      pooling="avg")
    return _classifier(net, caffe_preprocessing(x), num_classes, frozen)
