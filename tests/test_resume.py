"""`--resume` continues a killed or interrupted run from its last finished epoch to the result the
run would have had uninterrupted, and a kill while the results are written leaves the previous
files whole. The child processes train a slice of MNIST that the parent slices the same way."""

import csv
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import keras
import pytest

from imgcls.cli import main
from imgcls.config import resolve_config
from imgcls.resume import STATE_FILE
from imgcls.tracking import tracking_uri
from imgcls.train import train

TRAIN, TEST = 2000, 1000  # images of MNIST's training and test sets used
CHILD = f"""
import dataclasses, sys, threading
from pathlib import Path
import keras
from imgcls.config import resolve_config
from imgcls.data import load_dataset
from imgcls.train import train

mnist = load_dataset("mnist", progress=False)
small = dataclasses.replace(mnist, x_train=mnist.x_train[:{TRAIN}], y_train=mnist.y_train[:{TRAIN}],
                            x_test=mnist.x_test[:{TEST}], y_test=mnist.y_test[:{TEST}])
"""


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, x_train=mnist.x_train[:TRAIN], y_train=mnist.y_train[:TRAIN],
                               x_test=mnist.x_test[:TEST], y_test=mnist.y_test[:TEST])


def history(folder):
    with open(folder / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_child(code, marker=None):
    """Run `code` after CHILD in a subprocess. With `marker`, SIGKILL it once that file appears
    (the child makes it and then waits to be killed). Returns the exit code and the end of stderr."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe nobody reads while the child runs
        child = subprocess.Popen([sys.executable, "-c", CHILD + textwrap.dedent(code)], stderr=log, text=True)
        if marker:
            deadline = time.monotonic() + 300
            while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if marker.exists():
                child.send_signal(signal.SIGKILL)
        child.wait(timeout=300)
        log.seek(0)
        return child.returncode, log.read()[-2000:]


@pytest.fixture(scope="module")
def uninterrupted(small_mnist, tmp_path_factory):
    config = resolve_config(model="dense", epochs=3, out=str(tmp_path_factory.mktemp("uninterrupted")))
    return train(config, dataset=small_mnist, progress=False)


@pytest.fixture(scope="module")
def interrupted(small_mnist, tmp_path_factory):
    """A run of 2 epochs stopped by Ctrl-C as its second epoch began: its results say so."""
    class CtrlCInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    config = resolve_config(model="dense", epochs=2, out=str(tmp_path_factory.mktemp("interrupted")))
    run = train(config, dataset=small_mnist, progress=False, callbacks=[CtrlCInSecondEpoch()])
    assert run.metrics["interrupted"] and (run.folder / STATE_FILE).exists()
    return run.folder


def test_a_run_killed_in_epoch_2_resumes_to_the_uninterrupted_result(small_mnist, uninterrupted, tmp_path):
    folder, marker, store = tmp_path / "run", tmp_path / "in-epoch-2", tmp_path / "mlruns"
    returncode, stderr = run_child(f"""
        class WaitInSecondEpoch(keras.callbacks.Callback):
            '''Some steps into epoch 2 (unsaved progress), tell the parent, and wait to be killed.'''
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == 1:
                    Path({str(marker)!r}).touch()
                    threading.Event().wait()

        config = resolve_config(model="dense", epochs=3, mlflow={str(store)!r}, out={str(folder)!r})
        train(config, dataset=small, progress=False, callbacks=[WaitInSecondEpoch()])
        """, marker)
    assert returncode == -signal.SIGKILL and marker.exists(), stderr
    assert [row["epoch"] for row in history(folder)] == ["1"] and not (folder / "metrics.json").exists()

    resumed = train(resolve_config(resume=str(folder)), dataset=small_mnist, progress=False)
    assert [row["epoch"] for row in history(folder)] == ["1", "2", "3"]
    assert resumed.metrics["epochs"] == 3 and resumed.metrics["resumed_after_epoch"] == 1
    assert not resumed.metrics["interrupted"] and not (folder / STATE_FILE).exists()
    # within 3 of the 1,000 test pictures, counted as pictures: 0.829 - 0.826 is 0.0030000000000000027
    differ = abs(resumed.metrics["test_accuracy"] - uninterrupted.metrics["test_accuracy"]) * TEST
    assert round(differ) <= 3
    for name in ("model.keras", "model.h5"):
        _, accuracy = keras.saving.load_model(folder / name).evaluate(small_mnist.x_test, small_mnist.y_test, verbose=0)
        assert accuracy == pytest.approx(resumed.metrics["test_accuracy"], abs=1e-6)
    keras.saving.load_model(folder / "checkpoint.keras")
    for name in ("config.json", "metrics.json", "mlflow.json"):
        json.loads((folder / name).read_text())
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left over

    # The MLflow run the child began goes on: one run, each epoch logged once, finished.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(str(store)))
    runs = client.search_runs([client.get_experiment_by_name("imgcls").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [1, 2, 3]


def test_a_kill_during_the_final_save_leaves_the_previous_files_whole(capsys, small_mnist, interrupted, tmp_path):
    folder = shutil.copytree(interrupted, tmp_path / "run")
    before = {name: (folder / name).read_bytes() for name in ("model.keras", "model.h5", "metrics.json")}
    returncode, stderr = run_child(f"""
        import os, signal
        save = keras.Model.save
        def save_half_then_die(model, path, *args, **kwargs):
            '''Killed half-way through writing model.keras (into its temporary file).'''
            save(model, path, *args, **kwargs)
            if Path(path).name.startswith(".model.keras."):
                os.truncate(path, os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        keras.Model.save = save_half_then_die
        train(resolve_config(resume={str(folder)!r}), dataset=small, progress=False)
        """)
    assert returncode == -signal.SIGKILL, stderr
    assert [p for p in folder.iterdir() if p.name.startswith(".model.keras.")]  # the half-written file
    for name, data in before.items():
        assert (folder / name).read_bytes() == data, name
    assert json.loads((folder / "metrics.json").read_text())["interrupted"]
    for name in ("model.keras", "model.h5", "checkpoint.keras"):
        keras.saving.load_model(folder / name)
    assert [row["epoch"] for row in history(folder)] == ["1", "2"]  # epoch 2 had finished and is kept
    assert main(["train", "--resume", str(folder), "--epochs", "1"]) == 2
    assert "it has finished 2 epochs" in capsys.readouterr().err

    finished = train(resolve_config(resume=str(folder)), dataset=small_mnist, progress=False)
    assert finished.metrics["epochs"] == 2 and finished.metrics["resumed_after_epoch"] == 2
    assert not finished.metrics["interrupted"] and not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_resume_may_extend_the_epochs(small_mnist, interrupted, tmp_path):
    folder = shutil.copytree(interrupted, tmp_path / "run")
    run = train(resolve_config(resume=str(folder), epochs=3), dataset=small_mnist, progress=False)
    assert run.metrics["epochs"] == 3 and [row["epoch"] for row in history(folder)] == ["1", "2", "3"]
    assert json.loads((folder / "config.json").read_text())["epochs"] == 3


def test_what_cannot_be_resumed_is_one_line(capsys, uninterrupted, interrupted, tmp_path):
    (tmp_path / "notes").mkdir()
    cases = [
        ([str(uninterrupted.folder)], "it finished"),
        ([str(tmp_path / "notes")], "not a run folder"),
        ([str(tmp_path / "gone")], "no such folder"),
        ([str(interrupted), "--model", "cnn1"], "--model 'cnn1': the run has 'dense'; only --epochs"),
        ([str(interrupted), "--dataset", "fashion_mnist"], "--dataset 'fashion_mnist'"),
        ([str(interrupted), "--out", str(tmp_path / "elsewhere")], "give no --out"),
        ([str(interrupted), "--config", str(interrupted / "config.json")], "give no --config"),
        ([str(interrupted)], "its training data have changed"),  # all of MNIST, not the slice it began with
    ]
    for argv, pattern in cases:
        code = main(["train", "--resume", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and pattern in err, (argv, err)
    assert not (tmp_path / "elsewhere").exists()
