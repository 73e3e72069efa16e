"""Other Keras backends: `imgcls train --backend` trains the default recipe under JAX (and PyTorch where
it is installed), and a saved model predicts the same under every backend, whichever trained it."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from imgcls.cli import main
from imgcls.config import resolve_config
from imgcls.data import load_dataset
from imgcls.saving import load_model
from imgcls.train import train

# Under KERAS_BACKEND: loads two models and prints their probabilities for the same test pictures,
# and the first 8 pictures through the default MNIST recipe's augmentation.
PREDICT = """
import json, sys
import keras, numpy as np
from imgcls.augment import augmentation
from imgcls.saving import load_model
x = np.load(sys.argv[1])
probs = {path: np.asarray(load_model(path)[0].predict(x, verbose=0)).tolist() for path in sys.argv[2:]}
augmented = augmentation("digits", x.shape[1:])(x[:8].astype("float32"), training=True)
print(json.dumps({"backend": keras.backend.backend(), "probs": probs,
                  "augmented": keras.ops.convert_to_numpy(augmented).tolist()}))
"""


def require(backend):
    if importlib.util.find_spec(backend) is None:
        reason = {"torch": "PyPI's torch brings CUDA libraries of several GB; see the README's Backends"}
        pytest.skip(f"{backend} is not installed (pip install 'imgcls[{backend}]'): "
                    f"{reason.get(backend, 'it is in the dev extra')}")


@pytest.fixture(scope="module")
def shapes(shapes_folder):
    return load_dataset(f"folder:{shapes_folder}", progress=False)


@pytest.fixture(scope="module")
def tensorflow_run(shapes, tmp_path_factory):
    """The default recipe's model trained here, under TensorFlow (the suite's backend)."""
    assert keras.backend.backend() == "tensorflow"
    out = tmp_path_factory.mktemp("tf") / "run"
    return train(resolve_config(dataset=shapes.name, epochs=2, batch_size=16, out=str(out)), dataset=shapes,
                 progress=False)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_under_another_backend_and_predict_alike_under_every_backend(backend, shapes, tensorflow_run,
                                                                          tmp_path):
    require(backend)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "imgcls", "train", "--backend", backend, "--dataset", shapes.name,
                             "--epochs", "2", "--batch-size", "16", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == backend and backend in metrics["versions"]
    assert json.loads((out / "config.json").read_text())["backend"] == backend  # so the config reruns it there
    assert metrics["model"] == "airnet_small" and metrics["test_accuracy"] > 0.6  # 3 classes: chance is 1/3

    # Both models, the one trained there and the one trained here, predict the same under both backends.
    np.save(tmp_path / "x.npy", shapes.x_test)
    models = [str(out / "model.keras"), str(tensorflow_run.folder / "model.keras")]
    there = subprocess.run([sys.executable, "-c", PREDICT, str(tmp_path / "x.npy"), *models],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
    assert there.returncode == 0, there.stderr
    answer = json.loads(there.stdout.strip().splitlines()[-1])
    assert answer["backend"] == backend
    for path in models:
        here = load_model(path)[0].predict(shapes.x_test, verbose=0)
        np.testing.assert_allclose(answer["probs"][path], here, atol=1e-4)
    # The digits augmentation runs there too: it changes the first half of a batch and passes the rest.
    augmented = np.array(answer["augmented"])
    assert augmented.shape == (8, *shapes.x_test.shape[1:])
    np.testing.assert_array_equal(augmented[4:], shapes.x_test[4:8])
    assert not np.allclose(augmented[:4], shapes.x_test[:4], atol=1)
    # The accuracy the other backend measured when training is what its model scores here.
    here = load_model(out)[0].predict(shapes.x_test, verbose=0)
    assert np.mean(here.argmax(axis=1) == shapes.y_test) == pytest.approx(metrics["test_accuracy"])


def test_backend_cannot_change_once_keras_is_loaded(capsys, monkeypatch, shapes_folder, tmp_path):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # undone afterwards: main() sets it, and children inherit it
    other = "jax" if importlib.util.find_spec("jax") else "torch"
    require(other)
    code = main(["train", "--backend", other, "--dataset", f"folder:{shapes_folder}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "Keras already runs on tensorflow in this process" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_unknown_backend_is_one_line(capsys):
    code = main(["train", "--backend", "jaxx"])
    err = capsys.readouterr().err
    assert code == 2 and "Did you mean 'jax'?" in err and len(err.splitlines()) == 1
