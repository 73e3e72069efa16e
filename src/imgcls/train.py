"""Train a model into a run folder: config, checkpoints, history, model files, metrics and plots."""

import contextlib
import csv
import dataclasses
import functools
import io
import math
import signal
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from imgcls import reports
from imgcls.augment import augmentation, epoch_callbacks
from imgcls.batches import fit_data
from imgcls.data.lazy import LazyImages
from imgcls.config import TrainConfig
from imgcls.data import load_dataset
from imgcls.data.console import say
from imgcls.errors import ImgclsError
from imgcls.evaluate import evaluate
from imgcls.models import build_model, model_spec
from imgcls.resume import (STATE_FILE, check_resumable, check_same_data, data_digest, finished_rows, restore_state,
                           save_state)
from imgcls.runs import environment, hold_run_folder, new_run_folder, write_json, write_text
from imgcls.saving import save_model
from imgcls.tracking import check_installed, mlflow_run, tensorboard_logger
from imgcls.transfer import FINETUNE_RATE, balanced_class_weights, check_class_sizes, starting_model, unfreeze_top


@dataclasses.dataclass
class Run:
    folder: Path | None  # None on a worker other than the chief, which writes no run folder
    metrics: dict
    model: keras.Model


@keras.saving.register_keras_serializable(package="imgcls")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from peak/25 over the warm-up steps (none: it starts at the
    peak), then falling linearly to zero at the last step: a large rate early and a small one late
    let one epoch do the work of several. Evaluated by the optimizer at every step, from its own
    step counter, so it is right inside compiled multi-step calls and when training continues from
    saved optimizer state."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rising = self.peak * (0.04 + 0.96 * step / max(1, self.warmup_steps))
        falling = self.peak * ops.maximum(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))
        return ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


class OffsetBoostSGD(keras.optimizers.SGD):
    """Nesterov SGD whose batch-norm offsets (beta) take `boost` times the learning rate, as airbench
    trains them; their weight decay stays the others'. A plain SGD when `boost` is 1. The offsets are
    found by their Keras names when the optimizer is built: inside the update, TensorFlow hands over
    its own variables, named "<layer>/beta:0". Given a `whitening_rate` schedule, the bias of the
    layer named "whitening" follows it instead (airbench94_muon's: the offsets' rate, falling to zero
    early in the run, so the frozen patch filters get their offsets early and then keep them)."""

    def __init__(self, *args, boost=1.0, whitening_rate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.boost, self.whitening_rate = boost, whitening_rate

    def build(self, variables):
        super().build(variables)
        self.boosted = {self._var_key(v) for v in variables if v.name == "beta"} if self.boost != 1 else set()
        self.whitening = {self._var_key(v) for v in variables
                          if v.path == "whitening/bias"} if self.whitening_rate else set()

    def update_step(self, gradient, variable, learning_rate):
        key = self._var_key(variable)
        if key in self.whitening:
            learning_rate = ops.cast(self.whitening_rate(self.iterations), variable.dtype)
        elif key in self.boosted:
            learning_rate = ops.multiply(learning_rate, self.boost)
        super().update_step(gradient, variable, learning_rate)


class Muon(OffsetBoostSGD):
    """OffsetBoostSGD whose convolution kernels step along their orthogonalised Nesterov momentum
    (Muon, as airbench94_muon trains its filters): every direction of a kernel's update moves at the
    same rate, however small its gradient. On CIFAR-10's airnet for 3 epochs it lifted accuracy from
    85.0 to 86.6% (mirror TTA, seed 0). Each kernel is rescaled to norm sqrt(filters) before its step,
    which stands in for weight decay, and steps at `kernel_ratio` times the schedule's rate."""

    KERNEL_MOMENTUM = 0.6  # airbench's

    def __init__(self, *args, kernel_ratio=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kernel_ratio = kernel_ratio

    def build(self, variables):
        super().build(variables)
        self.kernels = {self._var_key(v) for v in variables if len(v.shape) == 4}

    def update_step(self, gradient, variable, learning_rate):
        if self._var_key(variable) not in self.kernels:
            return super().update_step(gradient, variable, learning_rate)
        momentum = self.momentums[self._get_variable_index(variable)]
        momentum.assign(momentum * self.KERNEL_MOMENTUM + gradient)
        step = gradient + self.KERNEL_MOMENTUM * momentum
        height, width, channels, filters = variable.shape  # as (filters, everything else) matrices
        step = ops.reshape(ops.transpose(step, (3, 0, 1, 2)), (filters, height * width * channels))
        step = ops.transpose(ops.reshape(orthogonalised(step), (filters, height, width, channels)), (1, 2, 3, 0))
        kernel = variable * (filters ** 0.5 / ops.sqrt(ops.sum(ops.square(variable))))
        variable.assign(kernel - ops.cast(learning_rate * self.kernel_ratio, variable.dtype) * step)


def orthogonalised(matrix, steps=3):
    """`matrix` with its singular values pushed towards 1 (those within a factor ten of the largest
    end between about 0.6 and 1.2): three steps of the quintic Newton-Schulz iteration airbench's
    Muon uses, matrix products only, where an SVD would cost far more."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix / (ops.sqrt(ops.sum(ops.square(matrix))) + 1e-7)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else ops.transpose(x)
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return x if wide else ops.transpose(x)


def optimizer(config: TrainConfig, steps_per_epoch):
    rate, total = config.lr, max(2, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        rate = OneCycle(config.lr, total, config.warmup * total)
    whitening_rate = OneCycle(config.lr * config.offset_lr, max(1, int(config.whitening_span * total)), 0) \
        if config.whitening_span else None
    sgd = dict(momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None, boost=config.offset_lr,
               whitening_rate=whitening_rate)
    if config.optimizer == "sgd":
        return OffsetBoostSGD(rate, **sgd)
    if config.optimizer == "muon":
        return Muon(rate, kernel_ratio=config.kernel_lr / config.lr, **sgd)
    return keras.optimizers.Adam(rate, weight_decay=config.weight_decay or None)


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch, write the model so far, the history so far and, last, the state that
    --resume continues from (resume.py), each atomically, so an interrupted or crashed run keeps
    them. An epoch whose loss is not finite is not written: the last good checkpoint stays.
    `data` is the training data's digest; `rows` and `seconds` are those of the epochs a resumed run
    had finished."""

    def __init__(self, folder, model, metadata, data, rows=(), seconds=0.0):
        super().__init__()
        self.folder, self.inference_model, self.metadata, self.rows = folder, model, metadata, list(rows)
        self.data, self.seconds_before = data, seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        if not all(math.isfinite(v) for v in values.values()):
            return
        self.rows.append({"epoch": epoch + 1, **values})
        save_model(self.inference_model, self.folder / "checkpoint.keras", self.metadata)
        write_csv(self.folder / "history.csv", self.rows)
        seconds = self.seconds_before + time.perf_counter() - self.start
        save_state(self.model, self.folder, len(self.rows), seconds, self.data)

    def history(self):
        """Column name -> per-epoch values, as keras.callbacks.History has it."""
        keys = [k for k in (self.rows[0] if self.rows else {}) if k != "epoch"]
        return {k: [row[k] for row in self.rows] for k in keys}


def steps_done(batch, steps):
    """Steps of the epoch done when Keras reports `batch` to a callback. With steps_per_execution > 1
    Keras reports each call by its last step as if every call were full, so past the epoch's end
    when the calls do not divide it (keras-team/keras#20861): 98 steps run 4 at a time end at 100."""
    return min(batch + 1, steps) if steps else batch + 1


class TrainingCurve(keras.callbacks.Callback):
    """Training loss and accuracy over each tenth of an epoch (steps.csv), so even a one-epoch run
    has a curve. Keras logs running means since the epoch began; differences of their running sums
    give the mean over each stretch."""

    def __init__(self, folder, points_per_epoch=10, rows=()):
        super().__init__()
        self.folder, self.points_per_epoch, self.rows = folder, points_per_epoch, list(rows)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.done, self.sums, self.next_point = epoch, 0, {}, 1

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution.
        steps = self.params["steps"]
        done = steps_done(batch, steps)
        if done < self.next_point * steps / self.points_per_epoch and done < steps:
            return
        sums = {k: float(logs[k]) * done for k in ("loss", "accuracy") if k in (logs or {})}
        row = {"epoch": round(self.epoch + done / steps, 4)}
        row.update({k: (v - self.sums.get(k, 0.0)) / (done - self.done) for k, v in sums.items()})
        if all(math.isfinite(v) for v in row.values()):
            self.rows.append(row)
        self.sums, self.done = sums, done
        while self.next_point * steps / self.points_per_epoch <= done:
            self.next_point += 1

    def on_epoch_end(self, epoch, logs=None):
        write_csv(self.folder / "steps.csv", self.rows)


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, its count held to the epoch's steps (`steps_done`): Keras's own showed
    "100/98" on CIFAR-10's epochs."""

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(steps_done(batch, self.target) - 1, logs)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras's TerminateOnNaN, remembering where it stopped, so the run fails with one clear line."""

    epoch, batch = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and self.batch is None:
            self.batch = batch


def write_csv(path, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["epoch"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def held_out(size, fraction):
    """How many of `size` training images a validation split of `fraction` holds out."""
    return int(round(size * fraction))


def split_validation(x, y, fraction, seed=None):
    """Hold out the last `fraction` of the training set, exactly as Keras's validation_split does; with
    a `seed`, a random share stratified by class instead (a small folder's classes then all appear in
    validation in their proportions). A folder streamed from disk keeps the tail: its images already
    come in a seeded random order, and picking rows would read them all."""
    n_val = held_out(len(x), fraction)
    if n_val == 0:
        return (x, y), None
    if seed is None or isinstance(x, LazyImages):
        return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])
    from sklearn.model_selection import train_test_split

    stratify = y if len(np.unique(y)) <= min(n_val, len(y) - n_val) else None  # else too few to stratify
    kept, held = train_test_split(np.arange(len(y)), test_size=n_val, random_state=seed, stratify=stratify)
    return (x[kept], y[kept]), (x[held], y[held])


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM (what containers and schedulers send) stops training as Ctrl-C does, so the run still
    writes its results; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# The folders' recipe on 1,500 and 2,000 pictures (seed 0): 20 epochs (220-280 steps) within a point of
# 30; `fast` there was level from 220 steps to 580, a point lower at 880-1,160, and 7-9 points lower
# in the one epoch (22-29 steps) it had by default
FOLDER_STEPS = 400


def settle_epochs(config, train_size):
    """`config` with the epochs left to the data (None, your own folders' default) set: enough passes
    for about FOLDER_STEPS steps, from 1 to 20. One pass over a few hundred pictures is a handful of
    steps, far from learnt; twenty over a big folder would take hours."""
    if config.epochs is not None:
        return config
    steps = math.ceil((train_size - held_out(train_size, config.validation_split)) / config.batch_size)
    return dataclasses.replace(config, epochs=min(20, max(1, math.ceil(FOLDER_STEPS / steps))))


def train(config: TrainConfig, dataset=None, progress=True, callbacks=(), overwrite=False) -> Run:
    """Train as `config` says and write the whole run folder; Ctrl-C or SIGTERM stops early but
    still writes it, with the weights of the last finished epoch.

    `dataset` overrides loading `config.dataset`; `callbacks` are extra Keras callbacks; `overwrite`
    lets the run replace a run already in `config.out`. With `config.resume`, the run in that folder
    goes on from its last finished epoch (see resume.py).
    """
    config.validate()
    check_installed(config)
    if config.resume:
        check_resumable(config)
    if config.backend and config.backend != keras.backend.backend():
        raise ImgclsError(f"--backend {config.backend}: Keras already runs on {keras.backend.backend()} in this "
                          f"process; the backend is chosen before Keras is first imported ('imgcls train "
                          f"--backend {config.backend}', or KERAS_BACKEND={config.backend})")
    if config.workers and keras.backend.backend() != "jax":
        raise ImgclsError(f"several workers need the JAX backend (--backend jax), not {keras.backend.backend()}: "
                          f"Keras distributes training over processes on JAX alone")
    keras.utils.set_random_seed(config.seed)
    if dataset is None:
        size = config.input_size or model_spec(config.model).input_size  # folders read at the model's size
        options = {"image_size": size} if size and config.dataset.startswith("folder:") else {}
        dataset = load_dataset(config.dataset, data_dir=config.data_dir, progress=progress,
                               cache_mode=config.cache_mode, memory_budget=config.memory_budget, **options)
    check_class_sizes(dataset.y_train, dataset.class_names, dataset.name)
    if config.epochs is None:
        config = settle_epochs(config, len(dataset.x_train))
        say(f"{dataset.name}: {len(dataset.x_train)} training images, {config.epochs} epochs of batch "
            f"{config.batch_size} (about {FOLDER_STEPS} steps; --epochs to choose)", progress)
    if config.worker_index:  # the chief alone writes the run folder; the others' checkpoints go to scratch
        with tempfile.TemporaryDirectory() as scratch:
            return _train(config, dataset, Path(scratch), progress, callbacks)
    folder = Path(config.resume or config.out or new_run_folder(dataset.name, config.model))
    # A resumed run goes on in its folder, which holds a run by definition.
    with hold_run_folder(folder, overwrite or bool(config.resume)), \
            mlflow_run(config, folder, recorded(config)) as mlflow:
        loggers = [logger for logger in (tensorboard_logger(config, folder), mlflow) if logger]
        return _train(config, dataset, folder, progress, [*callbacks, *loggers])


def recorded(config):
    """The config as config.json keeps it: without the folder it went into, so it reruns anywhere, and
    with the backend it ran on, so it reruns there."""
    values = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "resume")}
    return {**values, "backend": keras.backend.backend()}


def _train(config, dataset, folder, progress, callbacks):
    num_classes = len(dataset.class_names)
    y_train = np.asarray(dataset.y_train).reshape(-1)
    seed = config.seed if dataset.name.startswith("folder:") else None
    (x_fit, y_fit), validation = split_validation(dataset.x_train, y_train, config.validation_split, seed)
    training_images = np.bincount(y_fit, minlength=num_classes)
    class_weight = balanced_class_weights(y_fit, num_classes) if config.class_weight else None
    data = data_digest(x_fit, y_fit)
    if config.resume:
        check_same_data(folder, data)
    saved_config = recorded(config)
    write_json(folder / "config.json", saved_config)
    replicas = 1
    if config.workers:
        from imgcls import workers  # JAX only

        distribution = workers.join(config)
        replicas = distribution.num_model_replicas
        keras.distribution.set_distribution(distribution)  # the model built next, and its batches, span the workers
    input_shape = dataset.x_train.shape[1:]
    model = starting_model(config, input_shape, dataset.class_names, progress, images=x_fit)
    # Augmentation wraps the model for training only; the model saved is the inner, pure-inference one.
    augmenter = augmentation(config.augment, input_shape) if config.augment else None
    trainee = keras.Sequential([augmenter, model]) if augmenter else model
    if config.label_smoothing:  # Keras smooths only one-hot labels
        y_fit = keras.utils.to_categorical(y_fit, num_classes)
        if validation:
            validation = (validation[0], keras.utils.to_categorical(validation[1], num_classes))
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing) \
        if config.label_smoothing else "sparse_categorical_crossentropy"
    inputs = fit_data(x_fit, y_fit, validation, config.batch_size, config.seed)
    steps_per_epoch = math.ceil(len(x_fit) / config.batch_size)
    if config.workers:  # each worker feeds its share of every global batch
        inputs = workers.batch_shares(config, x_fit, y_fit, validation)
        steps_per_epoch = len(inputs["x"])
    # Keras's torch trainer runs one step per call
    steps_per_execution = 1 if keras.backend.backend() == "torch" else config.steps_per_execution

    def compile_for(recipe):
        trainee.compile(optimizer=optimizer(recipe, steps_per_epoch), loss=loss,
                        metrics=["accuracy"], steps_per_execution=steps_per_execution)

    compile_for(config)
    metadata = {"class_names": list(dataset.class_names), "dataset": dataset.name, "model": config.model}
    if config.tta:  # predict, evaluate and serve can then average the same views (imgcls.views)
        metadata["tta_views"] = config.tta_views
    if config.resume:
        done, seconds_before = restore_state(trainee, folder)
    else:
        done, seconds_before = 0, 0.0
        (folder / STATE_FILE).unlink(missing_ok=True)  # an overwritten run's, not this one's
    checkpoint = RunCheckpoint(folder, model, metadata, data, finished_rows(folder / "history.csv", done),
                               seconds_before)
    curve, divergence = TrainingCurve(folder, rows=finished_rows(folder / "steps.csv", done)), StopOnNaN()
    # The checkpoint's state last: it comes back whole.
    callbacks = [*(epoch_callbacks(augmenter) if augmenter else ()), divergence, curve, checkpoint, ProgressBar(),
                 *callbacks]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss" if validation else "loss", patience=config.early_stopping,
            restore_best_weights=True))

    interrupted = False
    start = time.perf_counter()
    try:
        with stop_on_sigterm():
            fit = functools.partial(trainee.fit, **inputs, callbacks=callbacks, verbose=1 if progress else 0,
                                    class_weight=class_weight)
            fit(initial_epoch=done, epochs=config.epochs)
            if config.finetune_epochs and divergence.batch is None:  # the second phase of fine-tuning
                unfreeze_top(model)
                compile_for(dataclasses.replace(config, epochs=config.finetune_epochs, lr=config.lr * FINETUNE_RATE,
                                                kernel_lr=config.kernel_lr * FINETUNE_RATE))
                finished = len(checkpoint.rows)
                fit(initial_epoch=finished, epochs=finished + config.finetune_epochs)
    except KeyboardInterrupt:
        interrupted = True
        if checkpoint.rows:  # the weights of the last finished epoch, not a half-trained one
            model.set_weights(keras.saving.load_model(folder / "checkpoint.keras").get_weights())
        print(f"\nInterrupted: writing the results of the last finished epoch ({len(checkpoint.rows)}).")
    seconds = seconds_before + time.perf_counter() - start
    if divergence.batch is not None:
        raise ImgclsError(f"training diverged: the loss stopped being a finite number in epoch "
                          f"{divergence.epoch + 1}, batch {divergence.batch + 1}; try a lower learning rate "
                          f"(lr was {config.lr}). {folder} keeps the config and the last good checkpoint, if any")
    if config.workers:  # evaluate and save in this process alone, on a copy of the weights
        keras.distribution.set_distribution(None)
        trained = build_model(config.model, input_shape, num_classes)
        trained.set_weights(model.get_weights())
        model = trained
        if config.worker_index:
            return Run(None, {"worker_index": config.worker_index, "workers": len(config.worker_addresses()),
                              "weights_sha256": workers.weights_digest(model)}, model)

    # Saved models are compiled for what their users do: evaluate on integer labels with plain Keras
    # (a plain optimizer, built so that loading finds the variables it expects, and no imgcls classes).
    # A clone is compiled and built as loading will do it: there a weight frozen by hand in training
    # (airnet's whitening kernel) is trainable again, and an optimizer built without it made loads warn.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    saved = keras.models.clone_model(model)
    saved.set_weights(model.get_weights())
    for name in ("model.keras", "model.h5"):
        save_model(saved, folder / name, metadata)
    metrics, probs = evaluate(model, dataset.x_test, dataset.y_test, dataset.class_names,
                              views=config.tta_views if config.tta else None)
    metrics = {
        "dataset": dataset.name, "model": config.model, **metrics,
        "training_seconds": round(seconds, 2), "epochs": len(checkpoint.rows),
        "interrupted": interrupted, "parameters": model.count_params(),
        "train_size": len(x_fit), "validation_size": len(validation[0]) if validation else 0,
        "workers": max(1, len(config.worker_addresses())), "replicas": replicas, **environment(),
    }
    if config.workers:  # equal on every worker: each prints its own
        metrics["weights_sha256"] = workers.weights_digest(model)
    for name, count in zip(dataset.class_names, training_images):  # the imbalance, beside the test results
        metrics["per_class"][name]["training_images"] = int(count)
    if interrupted:  # what the saved model files hold
        metrics["weights"] = f"after epoch {len(checkpoint.rows)}" if checkpoint.rows else "part of epoch 1 (none finished)"
    if config.resume:
        metrics["resumed_after_epoch"] = done
    reports.write_results(folder, metrics, dataset, probs, history=checkpoint.history(), steps=curve.rows,
                          config=saved_config)
    if not interrupted:  # finished: nothing left to resume
        (folder / STATE_FILE).unlink(missing_ok=True)
    return Run(folder, metrics, model)
