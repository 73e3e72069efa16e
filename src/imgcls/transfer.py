"""Training that starts from learnt weights, and training sets too small or unbalanced to trust.

- The starting model: a pretrained backbone (--weights) kept frozen while its new head trains,
  and/or an earlier run's weights (--init-from), layer by layer where the shapes match.
- Fine-tuning's second phase: the top of the frozen backbone unfrozen, at a lower rate.
- Class weights for unbalanced sets, and the checks that refuse a set too small to learn from.
"""

import keras
import numpy as np

from imgcls.data.console import say
from imgcls.errors import ImgclsError
from imgcls.models import build_model, model_spec

UNFREEZE_SHARE = 0.25  # of the backbone's layers, from the top, trained in the second phase
FINETUNE_RATE = 0.1    # the second phase's learning rate, as a share of the first's: small steps keep the
                       # pretrained features from being wrecked by the new head's early gradients
MIN_IMAGES_PER_CLASS = 5  # fewer leaves nothing to validate on, or almost nothing to learn from


def starting_model(config, input_shape, class_names, progress=True, images=None):
    """The model training starts from, as `config` says: its preset built for `input_shape`, with
    pretrained backbone weights (default ImageNet, none with --init-from), the preset's start from
    the training `images` if it has one and they are given, and the earlier run's weights copied in. A backbone
    starting from learnt weights is frozen (see imgcls.models)."""
    spec = model_spec(config.model)
    weights = config.weights or ("imagenet" if spec.pretrained and not config.init_from else "none")
    frozen = spec.pretrained is not None and (weights != "none" or bool(config.init_from))
    model = build_model(config.model, input_shape, len(class_names), input_size=config.input_size,
                        weights=weights, frozen=frozen)
    if spec.prepare and images is not None:
        spec.prepare(model, images)
    if config.init_from:
        copied, total = copy_matching_layers(config.init_from, model, class_names)
        say(f"--init-from {config.init_from}: {copied} of {total} layers copied, the rest start afresh", progress)
    return model


def _weighted_layers(model):
    """The layers holding weights, in order, looking inside nested models (a backbone)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def copy_matching_layers(run, model, class_names):
    """Copy into `model` every layer of the model in `run` (a run folder or model file) whose weights
    have the same shapes, pairing the layers in order; the head (the last layer) only when the class
    names are the same too. Returns (layers copied, layers with weights)."""
    from imgcls.saving import load_model

    source, metadata, path = load_model(run)
    if metadata["model"] != model.name:
        raise ImgclsError(f"--init-from {run} holds a {metadata['model']} model; train it with --model "
                          f"{metadata['model']} to start from its weights")
    pairs = list(zip(_weighted_layers(source), _weighted_layers(model)))
    same_classes = list(metadata["class_names"]) == list(class_names)
    copied = 0
    for i, (old, new) in enumerate(pairs):
        is_head = i == len(pairs) - 1
        if [w.shape for w in old.weights] == [w.shape for w in new.weights] and (same_classes or not is_head):
            new.set_weights(old.get_weights())
            copied += 1
    if not copied:
        raise ImgclsError(f"--init-from {path}: no layer's weights have the shapes this model needs")
    return copied, len(pairs)


def unfreeze_top(model, share=UNFREEZE_SHARE):
    """Let the top `share` of each frozen backbone's layers train, batch norm layers excepted (they
    also stay in inference mode, with the pretrained statistics). Recompile afterwards."""
    for net in [layer for layer in model.layers if isinstance(layer, keras.Model) and not layer.trainable]:
        net.trainable = True
        first = int(len(net.layers) * (1 - share))
        for i, layer in enumerate(net.layers):
            layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)


def balanced_class_weights(labels, num_classes):
    """class index -> weight, the inverse of the class's share of `labels` (scikit-learn's "balanced"):
    each class then counts as much in the loss as if the classes were the same size."""
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return {i: float(w) for i, w in enumerate(weights)}


def check_class_sizes(labels, class_names, where):
    """Refuse, before any training, a training set with fewer than two classes or with a class of
    fewer than MIN_IMAGES_PER_CLASS images, naming the classes and their counts."""
    if len(class_names) < 2:
        raise ImgclsError(f"{where} has {len(class_names)} class; a classifier needs at least 2")
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=len(class_names))
    small = [f"{name} ({count})" for name, count in zip(class_names, counts) if count < MIN_IMAGES_PER_CLASS]
    if small:
        raise ImgclsError(f"{where}: too few training images in {', '.join(small)}; each class needs at least "
                          f"{MIN_IMAGES_PER_CLASS} (add pictures, or remove the class)")
