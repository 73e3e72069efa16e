"""A tiny real training run on a slice of MNIST writes every file of the run folder, and its model
files load in plain Keras and reproduce the reported accuracy."""

import csv
import dataclasses
import json

import keras
import numpy as np
import pytest

from imgcls.config import resolve_config
from imgcls.train import train

RUN_FILES = {"config.json", "model.keras", "model.h5", "checkpoint.keras", "history.csv", "metrics.json",
             "curves.png", "confusion_matrix.png", "predictions.png", "misclassified.png", "report.md"}


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, x_train=mnist.x_train[:2000], y_train=mnist.y_train[:2000],
                               x_test=mnist.x_test[:500], y_test=mnist.y_test[:500])


@pytest.fixture(scope="module")
def run(small_mnist, tmp_path_factory):
    config = resolve_config(model="cnn1", epochs=2, batch_size=64, lr=3e-3, seed=1,
                            out=str(tmp_path_factory.mktemp("run")))
    return train(config, dataset=small_mnist, progress=False)


def test_run_folder_holds_every_artifact(run):
    assert {p.name for p in run.folder.iterdir()} == RUN_FILES
    for png in RUN_FILES:
        if png.endswith(".png"):
            assert (run.folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run.folder / "report.md").read_text()
    for png in ("curves.png", "confusion_matrix.png", "predictions.png", "misclassified.png"):
        assert f"]({png})" in report


def test_metrics_and_history_describe_the_run(run):
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist" and metrics["model"] == "cnn1" and metrics["epochs"] == 2
    assert metrics["test_accuracy"] > 0.8  # 2 epochs on 2000 digits; chance is 0.1
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert sum(c["support"] for c in metrics["per_class"].values()) == 500
    assert metrics["backend"] == keras.backend.backend() and "keras" in metrics["versions"]
    assert metrics["train_size"] == 1800 and metrics["validation_size"] == 200
    rows = list(csv.DictReader((run.folder / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    config = json.loads((run.folder / "config.json").read_text())
    assert config["model"] == "cnn1" and config["epochs"] == 2 and "out" not in config


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_saved_models_reproduce_reported_accuracy_in_plain_keras(run, small_mnist, name):
    metrics = json.loads((run.folder / "metrics.json").read_text())
    model = keras.saving.load_model(run.folder / name)
    loss, accuracy = model.evaluate(small_mnist.x_test, small_mnist.y_test, verbose=0)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-3)


def test_same_seed_same_history(small_mnist, tmp_path):
    def history(out):
        config = resolve_config(model="dense", epochs=1, batch_size=128, seed=5, out=str(out))
        train(config, dataset=small_mnist, progress=False)
        return (out / "history.csv").read_text()
    assert history(tmp_path / "a") == history(tmp_path / "b")


def test_interrupt_keeps_checkpoint_and_writes_results(small_mnist, tmp_path):
    class CtrlCInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    run = train(resolve_config(model="dense", epochs=3, out=str(tmp_path)), dataset=small_mnist,
                progress=False, callbacks=[CtrlCInSecondEpoch()])
    assert run.metrics["interrupted"] and run.metrics["epochs"] == 1
    assert {p.name for p in tmp_path.iterdir()} == RUN_FILES
    assert "interrupted" in (tmp_path / "report.md").read_text()
    assert 0 < run.metrics["test_accuracy"] <= 1
    assert np.isfinite(run.metrics["test_loss"])


def test_photo_recipe_path_saves_models_that_evaluate_on_integer_labels(small_mnist, tmp_path):
    """Label smoothing trains on one-hot labels; the saved model must still evaluate on the
    dataset's integer labels in plain Keras, and the mirror-image TTA accuracy is reported."""
    config = resolve_config(model="cnn1", epochs=1, optimizer="sgd", lr=0.05, weight_decay=1e-3,
                            label_smoothing=0.2, validation_split=0.0, tta=True, out=str(tmp_path))
    run = train(config, dataset=small_mnist, progress=False)
    assert run.metrics["validation_size"] == 0 and 0 <= run.metrics["test_accuracy_tta"] <= 1
    model = keras.saving.load_model(tmp_path / "model.keras")
    _, accuracy = model.evaluate(small_mnist.x_test, small_mnist.y_test, verbose=0)
    assert accuracy == pytest.approx(run.metrics["test_accuracy"], abs=1e-6)
