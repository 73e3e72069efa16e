"""Data-parallel training on several processes or machines, with Keras's own engine: `keras.distribution`
(`DataParallel`) on the JAX backend, the processes joined by `jax.distributed` with CPU collectives
over gloo. JAX only: Keras 3's `fit` under TensorFlow's MultiWorkerMirroredStrategy has been broken
since TF 2.16 (keras-team/keras#20585) and Keras's TensorFlow distribution module is marked not for
use, and Keras's torch backend has no multi-process distribution.

Every worker runs the same program on the same data. Each shuffles the training set the same way
(from the seed) and feeds its own equal slice of every global batch; the compiled step sees the
whole global batch (batch norm statistics included) and averages the gradients across workers, so
all workers hold the same weights after every step. Worker 0, the chief, alone writes the run folder.
"""

import hashlib

import jax
import keras
import numpy as np

from imgcls.errors import ImgclsError, first_line


def join(config):
    """Join the other workers (this blocks until all of --workers have started, for up to 5
    minutes) and return the DataParallel distribution to build, compile and fit the model under."""
    addresses = config.worker_addresses()
    # Before any JAX computation: without it, CPU processes cannot exchange gradients.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize(",".join(addresses), len(addresses), config.worker_index)
    except Exception as e:  # JAX raises several types for an unreachable or busy coordinator
        raise ImgclsError(f"worker {config.worker_index} could not join the workers through the chief at "
                          f"{addresses[0]}: {first_line(e)}") from e
    # The data is already split here, one share of each batch per worker, so Keras must not split it again.
    return keras.distribution.DataParallel(auto_shard_dataset=False)


class BatchShare(keras.utils.PyDataset):
    """Share `index` of `shares` of every global batch of (x, y): the same order on every worker
    (shuffled each epoch from `seed` when `shuffle`), each batch cut into equal, consecutive parts.
    A last batch smaller than the number of shares is dropped, as are the few images of a ragged
    last batch that do not split evenly. (Not named `workers`: PyDataset's own `workers` is its
    number of loading threads, and more than one would read ahead of a reshuffle.)"""

    def __init__(self, x, y, batch_size, shares, index, shuffle=False, seed=0):
        super().__init__()
        self.x, self.y, self.batch_size, self.shares, self.index = x, y, batch_size, shares, index
        self.rng = np.random.default_rng(seed) if shuffle else None
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self):
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (rest >= self.shares)

    def __getitem__(self, step):
        batch = self.order[step * self.batch_size:(step + 1) * self.batch_size]
        size = len(batch) // self.shares
        rows = np.sort(batch[self.index * size:(self.index + 1) * size])  # sorted: faster to gather
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        if self.rng is not None:
            self.order = self.rng.permutation(len(self.x))


def batch_shares(config, x, y, validation):
    """fit()'s data arguments on this worker: its share of the training and validation batches."""
    workers, index = len(config.worker_addresses()), config.worker_index
    share = BatchShare(x, y, config.batch_size, workers, index, shuffle=True, seed=config.seed)
    held_out = BatchShare(*validation, config.batch_size, workers, index) if validation else None
    return {"x": share, "validation_data": held_out, "shuffle": False}  # BatchShare shuffles, the same on every worker


def weights_digest(model):
    """SHA-256 of every weight, in order: equal on every worker when they trained together."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()
