"""Train a model into a run folder: config, checkpoints, history, model files, metrics and plots."""

import csv
import dataclasses
import io
import time
from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from imgcls import reports
from imgcls.artifacts import write_json, write_text
from imgcls.config import TrainConfig
from imgcls.data import load_dataset, short_name
from imgcls.evaluate import environment, evaluate
from imgcls.models import build_model, check_model_name
from imgcls.saving import save_model


@dataclasses.dataclass
class Run:
    folder: Path
    metrics: dict
    model: keras.Model


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch, write the model so far and the history so far, each atomically,
    so an interrupted or crashed run keeps both."""

    def __init__(self, folder, metadata):
        super().__init__()
        self.folder, self.metadata, self.rows = folder, metadata, []

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        save_model(self.model, self.folder / "checkpoint.keras", self.metadata)
        write_history(self.folder / "history.csv", self.rows)

    def history(self):
        """Column name -> per-epoch values, as keras.callbacks.History has it."""
        keys = [k for k in (self.rows[0] if self.rows else {}) if k != "epoch"]
        return {k: [row[k] for row in self.rows] for k in keys}


def write_history(path, rows):
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["epoch"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def run_folder(config: TrainConfig, root="runs"):
    """--out, or a new runs/<dataset>-<model>-<timestamp>/ that does not exist yet."""
    if config.out:
        folder = Path(config.out)
    else:
        dataset = short_name(config.dataset)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = Path(root) / f"{dataset}-{config.model}-{stamp}"
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = Path(root) / f"{dataset}-{config.model}-{stamp}-{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class OneCycle(keras.callbacks.Callback):
    """Learning rate rising linearly from peak/25 over the first 20% of steps, then falling linearly
    to zero: a large rate early and a small one late let one epoch do the work of several.

    A callback rather than a LearningRateSchedule, so the saved optimizer stays plain Keras and the
    model files load without imgcls.
    """

    def __init__(self, peak, warmup):
        super().__init__()
        self.peak, self.warmup_fraction = peak, warmup

    def on_train_begin(self, logs=None):
        self.steps_per_epoch = self.params["steps"]
        self.total = max(2, self.params["epochs"] * self.steps_per_epoch)
        self.warmup = max(1, int(self.warmup_fraction * self.total))

    def rate(self, step):
        if step < self.warmup:
            return self.peak * (0.04 + 0.96 * step / self.warmup)
        return self.peak * max(0.0, (self.total - step) / (self.total - self.warmup))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.rate(self.epoch * self.steps_per_epoch + batch)


def optimizer(config: TrainConfig):
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None)
    return keras.optimizers.Adam(config.lr, weight_decay=config.weight_decay or None)


def split_validation(x, y, fraction):
    """Hold out the last `fraction` of the training set, exactly as Keras's validation_split does."""
    n_val = int(round(len(x) * fraction))
    if n_val == 0:
        return (x, y), None
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


def train(config: TrainConfig, dataset=None, progress=True, callbacks=()) -> Run:
    """Train as `config` says and write the whole run folder; Ctrl-C stops early but still writes it.

    `dataset` overrides loading `config.dataset`; `callbacks` are extra Keras callbacks.
    """
    config.validate()
    check_model_name(config.model)
    keras.utils.set_random_seed(config.seed)
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir, progress=progress)
    y_train = np.asarray(dataset.y_train).reshape(-1)
    (x_fit, y_fit), validation = split_validation(dataset.x_train, y_train, config.validation_split)

    folder = run_folder(config)
    saved_config = {k: v for k, v in dataclasses.asdict(config).items() if k != "out"}
    write_json(folder / "config.json", saved_config)

    model = build_model(config.model, dataset.x_train.shape[1:], len(dataset.class_names),
                        augment=config.augment)
    if config.label_smoothing:  # Keras smooths only one-hot labels
        y_fit = keras.utils.to_categorical(y_fit, len(dataset.class_names))
        if validation:
            validation = (validation[0], keras.utils.to_categorical(validation[1], len(dataset.class_names)))
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing) \
        if config.label_smoothing else "sparse_categorical_crossentropy"
    model.compile(optimizer=optimizer(config), loss=loss, metrics=["accuracy"],
                  steps_per_execution=config.steps_per_execution)
    metadata = {"class_names": list(dataset.class_names), "dataset": dataset.name, "model": config.model}
    checkpoint = RunCheckpoint(folder, metadata)
    callbacks = [checkpoint, *callbacks]
    if config.schedule == "onecycle":
        callbacks.append(OneCycle(config.lr, config.warmup))
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss" if validation else "loss", patience=config.early_stopping,
            restore_best_weights=True))

    interrupted = False
    start = time.perf_counter()
    try:
        model.fit(x_fit, y_fit, batch_size=config.batch_size, epochs=config.epochs,
                  validation_data=validation, callbacks=callbacks, verbose=1 if progress else 0)
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: keeping the last checkpoint and writing the results so far.")
    seconds = time.perf_counter() - start

    # Saved models are compiled for what their users do: evaluate on integer labels, one batch a call.
    model.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for name in ("model.keras", "model.h5"):
        save_model(model, folder / name, metadata)
    metrics, probs = evaluate(model, dataset.x_test, dataset.y_test, dataset.class_names, tta=config.tta)
    metrics = {
        "dataset": dataset.name, "model": config.model, **metrics,
        "training_seconds": round(seconds, 2), "epochs": len(checkpoint.rows),
        "interrupted": interrupted, "parameters": model.count_params(),
        "train_size": len(x_fit), "validation_size": len(validation[0]) if validation else 0,
        **environment(),
    }
    reports.write_results(folder, metrics, dataset, probs, history=checkpoint.history(), config=saved_config)
    return Run(folder, metrics, model)
