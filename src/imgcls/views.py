"""Test-time views of a batch of images (NHWC or NHW), and a model that averages over them.

Training's `--tta` reports the accuracy of predictions averaged over views of each test image;
`ViewAveraged` gives `imgcls predict`, `evaluate` and `serve` those same predictions, so the
accuracy a run reports with TTA is the accuracy a user gets.
"""

import numpy as np


def mirrored(images):
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def shifted(pixels):
    """A view moving images `pixels` (1 or -1) down and right, the edge reflected into the gap."""
    def view(images):
        images = np.asarray(images)
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1)) + ((0, 0),) * (images.ndim - 3), mode="reflect")
        return padded[:, 1 - pixels:1 - pixels + images.shape[1], 1 - pixels:1 - pixels + images.shape[2]]
    return view


def tta_views(count):
    """(weight, view) pairs after the plain images' weight, for test-time augmentation: 2 views, each
    image and its mirror; 6 (airbench's), those two at half the weight and the other half spread over
    both shifted a pixel diagonally each way, and their mirrors."""
    if count == 2:
        return 1 / 2, [(1 / 2, mirrored)]
    return 1 / 4, [(1 / 4, mirrored)] + [(1 / 8, view) for move in (shifted(1), shifted(-1))
                                         for view in (move, lambda images, move=move: mirrored(move(images)))]


class ViewAveraged:
    """`model` (Keras or an exported runtime: `.predict_on_batch`, `.input_shape`) predicting the
    weighted average of its probabilities over `count` views of each image, as `--tta` measured it.
    All views of a batch go to the model in one call: one call's overhead, not `count`."""

    def __init__(self, model, count):
        self.model, self.input_shape, self.views = model, model.input_shape, count
        self.weight, self.others = tta_views(count)

    def stack(self, batch):
        """The batch, then each of its other views: one batch for one model call."""
        batch = np.asarray(batch)
        return np.concatenate([batch, *(view(batch) for _, view in self.others)])

    def average(self, probs):
        """The weighted average of probabilities shaped (views, images, classes) over the views."""
        return self.weight * probs[0] + sum(share * p for (share, _), p in zip(self.others, probs[1:]))

    def predict_on_batch(self, batch):
        probs = np.asarray(self.model.predict_on_batch(self.stack(batch)))
        return self.average(probs.reshape(self.views, len(batch), -1))
