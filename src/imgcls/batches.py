"""Images to Keras a batch at a time, for folder datasets kept on disk or streamed from their
files (imgcls.data.lazy); arrays in memory go to Keras as they are.

Batches is a keras.utils.PyDataset, which every Keras backend runs: worker threads read batches
ahead of the model (decoding in parallel, and prefetching at most QUEUE batches), and a training
set is read in a new random order each epoch. That order is a permutation of all the image
numbers, not a bounded shuffle buffer as over a tf.data stream: any image can be read at any
time, and the permutation costs 8 bytes an image. Threads, not processes: Pillow decodes and
resizes outside the GIL, and threads share the files, the labels and the memory they are counted in.
"""

import math

import keras
import numpy as np

from imgcls.data.lazy import THREADS, LazyImages

QUEUE = 2 * THREADS  # batches read ahead: enough to keep the model busy while a worker decodes


class Batches(keras.utils.PyDataset):
    """Batches of images `x` (with labels `y`, if given); shuffled anew each epoch from `seed`, or
    in order; `view`, if given, transforms each batch of images (a test-time augmentation's view of
    them). At most QUEUE + THREADS batches are held at once."""

    def __init__(self, x, y=None, batch_size=64, shuffle=False, seed=0, view=None):
        super().__init__(workers=THREADS, use_multiprocessing=False, max_queue_size=QUEUE)
        self.x, self.y, self.batch_size, self.view = x, y, batch_size, view
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.order = self._order()

    def _order(self):
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x)) if self.shuffle else None

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = np.arange(index * self.batch_size, min((index + 1) * self.batch_size, len(self.x)))
        if self.order is not None:
            rows = self.order[rows]
        x = self.x[rows]
        if self.view:
            x = self.view(x)
        return (x,) if self.y is None else (x, self.y[rows])

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()


def fit_data(x, y, validation, batch_size, seed):
    """model.fit's data arguments: arrays in memory as they are; lazy images as Batches, shuffled
    here, reproducibly from `seed`."""
    if not isinstance(x, LazyImages):
        return {"x": x, "y": y, "batch_size": batch_size, "validation_data": validation}
    return {"x": Batches(x, y, batch_size, shuffle=True, seed=seed),
            "validation_data": Batches(*validation, batch_size=batch_size) if validation else None,
            "shuffle": False}
