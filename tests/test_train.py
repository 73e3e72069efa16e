"""A tiny real training run on a slice of MNIST writes every file of the run folder, and its model
files load in plain Keras and reproduce the reported accuracy."""

import csv
import dataclasses
import json
import os
import re
import signal
import time

import keras
import numpy as np
import pytest

from imgcls.config import resolve_config
from imgcls.errors import ImgclsError
from imgcls.runs import new_run_folder
from imgcls.train import OneCycle, settle_epochs, train

RUN_FILES = {"config.json", "model.keras", "model.h5", "checkpoint.keras", "history.csv", "steps.csv", "metrics.json",
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
    steps = list(csv.DictReader((run.folder / "steps.csv").open()))
    epochs = [float(r["epoch"]) for r in steps]  # every tenth of an epoch, or every compiled call if rarer
    assert epochs == sorted(epochs) and {1.0, 2.0} <= set(epochs) and len(epochs) >= 8
    assert float(steps[-1]["loss"]) < float(steps[0]["loss"]) and 0 < float(steps[-1]["accuracy"]) <= 1


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
    assert run.metrics["weights"] == "after epoch 1"
    assert {p.name for p in tmp_path.iterdir()} == RUN_FILES | {"resume.weights.h5"}  # what --resume continues from
    saved, checkpoint = (keras.saving.load_model(tmp_path / name) for name in ("model.keras", "checkpoint.keras"))
    for a, b in zip(saved.get_weights(), checkpoint.get_weights()):  # the finished epoch, not half the next
        np.testing.assert_array_equal(a, b)
    assert "interrupted" in (tmp_path / "report.md").read_text()
    assert 0 < run.metrics["test_accuracy"] <= 1
    assert np.isfinite(run.metrics["test_loss"])


def test_photo_recipe_path_saves_models_that_evaluate_on_integer_labels(small_mnist, tmp_path):
    """Label smoothing trains on one-hot labels; the saved model must still evaluate on the
    dataset's integer labels in plain Keras, and the mirror-image TTA accuracy is reported. Trained
    as CIFAR-10's recipe trains, with Muon, which must learn."""
    config = resolve_config(model="cnn1", epochs=1, optimizer="muon", lr=0.05, kernel_lr=0.2, weight_decay=1e-3,
                            label_smoothing=0.2, validation_split=0.0, tta=True, out=str(tmp_path))
    run = train(config, dataset=small_mnist, progress=False)
    assert run.metrics["validation_size"] == 0 and 0 <= run.metrics["test_accuracy_tta"] <= 1
    assert run.metrics["test_accuracy"] > 0.5  # 0.77 here; ten classes
    model = keras.saving.load_model(tmp_path / "model.keras")
    _, accuracy = model.evaluate(small_mnist.x_test, small_mnist.y_test, verbose=0)
    assert accuracy == pytest.approx(run.metrics["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("images, epochs", [(120, 20), (6_000, 10), (12_000, 5), (60_000, 1), (1_000_000, 1)])
def test_a_folder_trains_for_about_400_steps_unless_told(images, epochs):
    """One pass over a few hundred pictures is a handful of steps, far from learnt; twenty over a big
    folder would take hours (batch 128, 10% held out for validation)."""
    config = resolve_config(dataset="folder:photos")
    assert config.epochs is None and settle_epochs(config, images).epochs == epochs
    assert settle_epochs(dataclasses.replace(config, epochs=3), images).epochs == 3  # --epochs wins
    assert resolve_config(dataset="mnist").epochs == 3  # a built-in keeps its recipe's


def test_a_folder_left_to_its_size_trains_and_records_those_epochs(shapes_folder, tmp_path):
    run = train(resolve_config(dataset=f"folder:{shapes_folder}", out=str(tmp_path / "run")), progress=False)
    history = list(csv.DictReader(open(run.folder / "history.csv")))
    assert json.loads((run.folder / "config.json").read_text())["epochs"] == len(history) == 20
    assert run.metrics["test_accuracy"] > 0.95  # `fast` in the one epoch (2 steps) it had: 93.3%, 2 of 30 wrong


def test_one_cycle_rate_at_given_steps():
    schedule = OneCycle(peak=0.01, total_steps=100, warmup_steps=20)
    rates = {step: float(schedule(step)) for step in (0, 10, 20, 60, 100, 120)}
    assert rates == pytest.approx({0: 0.0004, 10: 0.0052, 20: 0.01, 60: 0.005, 100: 0.0, 120: 0.0})
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)),
                      OneCycle)


def test_one_cycle_without_warm_up_decays_linearly_from_the_peak():
    """warmup=0, as CIFAR-10's recipe (and airbench94_muon) trains: the first step is at the peak
    and the rest fall straight to zero."""
    schedule = OneCycle(peak=0.01, total_steps=100, warmup_steps=0)
    rates = {step: float(schedule(step)) for step in (0, 1, 50, 100)}
    assert rates == pytest.approx({0: 0.01, 1: 0.01 * 99 / 100, 50: 0.005, 100: 0.0})


def test_schedule_changes_the_rate_every_step_inside_multi_step_calls(small_mnist, tmp_path):
    """With 8 steps per compiled call, a callback could only change the rate every 8 steps; the
    schedule is evaluated by the optimizer itself, so Adam's step count drives it exactly."""
    seen = []

    class Rates(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            optimizer = self.model.optimizer
            seen.append((int(optimizer.iterations), float(optimizer.learning_rate)))

    config = resolve_config(model="dense", epochs=1, batch_size=100, steps_per_execution=4, out=str(tmp_path))
    train(config, dataset=small_mnist, progress=False, callbacks=[Rates()])
    schedule = OneCycle(config.lr, 18, config.warmup * 18)  # 1800 training images / 100
    assert [step for step, _ in seen] == [4, 8, 12, 16, 18]
    assert [rate for _, rate in seen] == pytest.approx([float(schedule(step)) for step, _ in seen], rel=1e-5)


def test_progress_bar_counts_no_further_than_the_epochs_steps(small_mnist, tmp_path, capsys):
    """Keras reports each multi-step call by its last step as if every call were full, so 18 steps
    run 4 at a time showed "20/18" (keras-team/keras#20861)."""

    class Slow(keras.callbacks.Callback):  # the bar redraws at most every 50 ms
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.06)

    config = resolve_config(model="dense", epochs=1, batch_size=100, steps_per_execution=4, out=str(tmp_path))
    train(config, dataset=small_mnist, callbacks=[Slow()])
    counts = re.findall(r"(\d+)/18\b", capsys.readouterr().out)
    assert "16" in counts and "18" in counts
    assert max(int(count) for count in counts) == 18


def test_augmented_training_saves_a_pure_inference_model(small_mnist, tmp_path):
    config = resolve_config(model="cnn1", epochs=1, augment="shift", out=str(tmp_path))
    run = train(config, dataset=small_mnist, progress=False)
    for name in ("model.keras", "model.h5", "checkpoint.keras"):
        model = keras.saving.load_model(tmp_path / name)
        kinds = {type(layer).__name__ for layer in model.layers}
        assert not any(kind.startswith("Random") for kind in kinds) and "Sequential" not in kinds, kinds
    assert run.metrics["test_accuracy"] > 0.5


def test_a_diverging_run_fails_with_one_line_and_writes_no_metrics(small_mnist, tmp_path):
    config = resolve_config(model="dense", epochs=2, optimizer="sgd", lr=1e30, schedule="constant",
                            out=str(tmp_path))
    with pytest.raises(ImgclsError, match="training diverged.*lower learning rate"):
        train(config, dataset=small_mnist, progress=False)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "model.keras").exists()


def test_runs_started_together_get_their_own_folders(tmp_path):
    folders = [new_run_folder("folder:~/my photos", "fast", root=tmp_path) for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() for f in folders)
    assert folders[0].name.startswith("my-photos-fast-") and folders[2].name.endswith("-3")


def test_sigterm_stops_training_like_ctrl_c_and_keeps_the_results(small_mnist, tmp_path):
    class TermInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    run = train(resolve_config(model="dense", epochs=3, out=str(tmp_path)), dataset=small_mnist,
                progress=False, callbacks=[TermInSecondEpoch()])
    assert run.metrics["interrupted"] and run.metrics["epochs"] == 1
    assert {p.name for p in tmp_path.iterdir()} == RUN_FILES | {"resume.weights.h5"}
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_a_folder_holding_a_run_is_refused_unless_overwritten(small_mnist, tmp_path):
    config = resolve_config(model="dense", epochs=1, out=str(tmp_path / "run"))
    first = train(config, dataset=small_mnist, progress=False)
    before = (first.folder / "metrics.json").read_text()
    with pytest.raises(ImgclsError, match="already holds a run"):
        train(dataclasses.replace(config, seed=7), dataset=small_mnist, progress=False)
    assert (first.folder / "metrics.json").read_text() == before  # nothing of the first run was touched
    (first.folder / ".model.keras.x7k2.keras").write_bytes(b"half a file from a killed run")
    second = train(dataclasses.replace(config, seed=7), dataset=small_mnist, progress=False, overwrite=True)
    assert json.loads((second.folder / "config.json").read_text())["seed"] == 7
    assert {p.name for p in second.folder.iterdir()} == RUN_FILES  # the stale temporary is gone
    with pytest.raises(ImgclsError, match="is a file, not a folder"):
        train(dataclasses.replace(config, out=str(second.folder / "report.md")), dataset=small_mnist, progress=False)


def test_a_folder_another_run_is_writing_into_is_refused(small_mnist, tmp_path):
    """The lock is held while a run writes: a second run into the same folder stops at once."""
    outcome = {}

    class TryASecondRun(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            try:
                train(resolve_config(model="dense", epochs=1, out=str(tmp_path)), dataset=small_mnist,
                      progress=False, overwrite=True)
            except ImgclsError as e:
                outcome["error"] = str(e)

    train(resolve_config(model="dense", epochs=1, out=str(tmp_path)), dataset=small_mnist, progress=False,
          callbacks=[TryASecondRun()])
    assert "another run is writing into" in outcome["error"]
    assert not (tmp_path / ".lock").exists()


def test_offset_boost_moves_batch_norm_offsets_that_many_times_further():
    """airbench trains batch norm's offsets at 64 times the rate: one step of the same gradient moves
    beta 64 times as far as plain SGD does, and every other weight as far."""
    from imgcls.train import OffsetBoostSGD

    def one_step(boost):
        layer = keras.layers.BatchNormalization()
        layer.build((None, 3))
        dense = keras.layers.Dense(3)
        dense.build((None, 3))
        variables = [layer.beta, dense.kernel]
        before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
        OffsetBoostSGD(0.01, momentum=0.9, nesterov=True, boost=boost).apply(
            [keras.ops.ones((3,)), keras.ops.ones((3, 3))], variables)
        return [keras.ops.convert_to_numpy(v) - b for v, b in zip(variables, before)]

    (beta_plain, kernel_plain), (beta_boosted, kernel_boosted) = one_step(1), one_step(64)
    np.testing.assert_allclose(beta_boosted, 64 * beta_plain, rtol=1e-5)
    np.testing.assert_allclose(kernel_boosted, kernel_plain, rtol=1e-5)
    assert np.all(beta_plain < 0)


def test_whitening_bias_learns_at_the_offsets_rate_early_in_the_run_then_stops():
    """airbench94_muon's whitening bias: its first step moves it as far as batch norm's offsets (64
    times the base rate), its rate then falls to zero over its share of the run and it stays put,
    while the offsets go on learning. The recipe's setting reaches the optimizer."""
    from imgcls.train import OffsetBoostSGD, OneCycle, optimizer

    whitening, norm = keras.layers.Conv2D(4, 2, name="whitening"), keras.layers.BatchNormalization()
    whitening.build((None, 4, 4, 1))
    norm.build((None, 4))
    variables = [whitening.bias, norm.beta]
    sgd = OffsetBoostSGD(0.01, momentum=0.0, boost=64, whitening_rate=OneCycle(0.64, 2, 0))
    moves = []
    for _ in range(3):
        before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
        sgd.apply([keras.ops.ones((4,)), keras.ops.ones((4,))], variables)
        moves.append([keras.ops.convert_to_numpy(v) - b for v, b in zip(variables, before)])
    np.testing.assert_allclose(moves[0][0], moves[0][1], rtol=1e-5)  # both at 0.64
    np.testing.assert_allclose(moves[1][0], moves[1][1] / 2, rtol=1e-5)  # halfway down its decay
    np.testing.assert_allclose(moves[2][0], 0)  # its share of the run is over
    np.testing.assert_allclose(moves[2][1], -0.64, rtol=1e-5)

    config = resolve_config(dataset="cifar10", optimizer="muon", epochs=2, whitening_span=0.375)
    rate = optimizer(config, steps_per_epoch=100).whitening_rate
    assert (rate.peak, rate.total_steps) == (config.lr * config.offset_lr, 75)
    assert optimizer(dataclasses.replace(config, whitening_span=0.0), 100).whitening_rate is None


@pytest.mark.parametrize("shape", [(16, 27), (27, 16), (4, 300)])
def test_orthogonalised_brings_every_singular_value_near_one(shape):
    """Muon's Newton-Schulz steps: whatever the gradient's scale, singular values within a factor
    ten of each other (here 100 to 1000) all end between about 0.6 and 1.2."""
    from imgcls.train import orthogonalised

    rng = np.random.default_rng(0)
    u, _, vt = np.linalg.svd(rng.normal(size=shape), full_matrices=False)
    spread = np.logspace(2, 3, min(shape))
    singular = np.linalg.svd(keras.ops.convert_to_numpy(orthogonalised(
        keras.ops.convert_to_tensor((u * spread @ vt).astype("float32")))), compute_uv=False)
    assert singular.min() > 0.55 and singular.max() < 1.25


def test_muon_steps_kernels_by_their_orthogonalised_gradient_and_the_rest_as_sgd():
    """One Muon step: a convolution kernel is rescaled to norm sqrt(filters) and moves by the same
    amount whatever its gradient's scale; a dense kernel and batch norm's offsets move exactly as
    OffsetBoostSGD moves them."""
    from imgcls.train import Muon, OffsetBoostSGD

    def one_step(kind, gradient_scale):
        keras.utils.set_random_seed(0)
        conv, dense, norm = keras.layers.Conv2D(8, 3), keras.layers.Dense(3), keras.layers.BatchNormalization()
        conv.build((None, 6, 6, 4))
        dense.build((None, 3))
        norm.build((None, 3))
        variables = [conv.kernel, dense.kernel, norm.beta]
        rng = np.random.default_rng(1)
        gradients = [gradient_scale * rng.normal(size=v.shape).astype("float32") for v in variables]
        before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
        options = dict(momentum=0.9, nesterov=True, boost=64)
        optimizer = Muon(0.01, kernel_ratio=20.0, **options) if kind == "muon" else OffsetBoostSGD(0.01, **options)
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], variables)
        return before, [keras.ops.convert_to_numpy(v) for v in variables]

    (kernel, *_), (stepped, dense_muon, beta_muon) = one_step("muon", 1.0)
    _, (stepped_big, *_) = one_step("muon", 1000.0)
    _, (_, dense_sgd, beta_sgd) = one_step("sgd", 1.0)
    np.testing.assert_allclose(dense_muon, dense_sgd, rtol=1e-5)
    np.testing.assert_allclose(beta_muon, beta_sgd, rtol=1e-5)
    rescaled = kernel * np.sqrt(8) / np.linalg.norm(kernel)
    step = (rescaled - stepped).transpose(3, 0, 1, 2).reshape(8, -1) / (0.01 * 20.0)
    singular = np.linalg.svd(step, compute_uv=False)
    assert singular.min() > 0.5 and singular.max() < 1.5  # an orthogonalised step, at the kernel rate
    np.testing.assert_allclose(stepped_big, stepped, atol=1e-4)  # the gradient's scale does not matter
