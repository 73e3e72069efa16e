"""Test-time views: predict, evaluate and serve give the predictions a run's --tta accuracy measured."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from imgcls.cli import main
from imgcls.data import load_dataset
from imgcls.errors import ImgclsError
from imgcls.models import build_model
from imgcls.predict import with_tta
from imgcls.saving import load_model, save_model
from imgcls.views import ViewAveraged, tta_views


def lopsided_model(shape):
    """A small convolutional model that tells an image from its mirror (random, seeded weights)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3),
                             keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("count", [2, 6])
def test_view_averaged_predictions_are_the_weighted_average_over_views(count):
    batch = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 1), dtype=np.uint8)
    model = lopsided_model(batch.shape[1:])
    weight, others = tta_views(count)
    expected = weight * model.predict_on_batch(batch) + sum(share * model.predict_on_batch(view(batch))
                                                            for share, view in others)
    averaged = ViewAveraged(model, count).predict_on_batch(batch)
    np.testing.assert_allclose(averaged, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(averaged.sum(axis=1), 1, rtol=1e-5)
    assert not np.allclose(averaged, model.predict_on_batch(batch), atol=1e-4)  # the views do matter here


@pytest.fixture(scope="module")
def tta_run(shapes_folder, tmp_path_factory):
    from imgcls.config import resolve_config
    from imgcls.train import train

    out = tmp_path_factory.mktemp("tta") / "run"
    config = resolve_config(dataset=f"folder:{shapes_folder}", model="cnn1", epochs=2, batch_size=16, tta=True,
                            out=str(out))
    return train(config, progress=False).folder


def test_predict_with_tta_is_as_accurate_as_the_run_reported(tta_run, shapes_folder, tmp_path):
    from imgcls.evaluate import evaluate_saved

    metrics = json.loads((tta_run / "metrics.json").read_text())
    model, metadata, path = load_model(tta_run)
    assert metadata["tta_views"] == 2
    data = load_dataset(f"folder:{shapes_folder}", progress=False)
    probs = with_tta(model, metadata, path).predict_on_batch(np.asarray(data.x_test))
    y = np.asarray(data.y_test).reshape(-1)
    assert round(float(np.mean(probs.argmax(axis=1) == y)), 6) == metrics["test_accuracy_tta"]
    _, again = evaluate_saved(tta_run, out=tmp_path / "eval")  # evaluate measures the same views again
    assert again["test_accuracy_tta"] == metrics["test_accuracy_tta"]
    assert f"| with test-time views (`predict --tta`) | {metrics['test_accuracy_tta']:.2%} |" in (
        tta_run / "report.md").read_text()


def test_evaluate_command_names_both_accuracies(capsys, tta_run, tmp_path):
    metrics = json.loads((tta_run / "metrics.json").read_text())
    assert main(["evaluate", str(tta_run), "--out", str(tmp_path / "eval")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"Test accuracy: {metrics['test_accuracy']:.2%} ({metrics['test_accuracy_tta']:.2%} with predict --tta)")


def test_predict_command_averages_the_views_with_tta(capsys, tta_run, shapes_folder):
    picture = sorted((shapes_folder / "test" / "cross").iterdir())[0]
    model, metadata, path = load_model(tta_run)
    pixels = np.asarray(Image.open(picture))[None, :, :, None]
    expected = with_tta(model, metadata, path).predict_on_batch(pixels)[0]
    assert main(["predict", str(tta_run), str(picture), "--tta", "--json", "--no-preprocess"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert [t["class"] for t in top] == [metadata["class_names"][i] for i in np.argsort(-expected)]
    np.testing.assert_allclose([t["probability"] for t in top], np.sort(expected)[::-1], atol=2e-6)


def test_tta_is_refused_for_a_model_never_measured_with_it(capsys, tmp_path):
    path = tmp_path / "model.keras"
    save_model(build_model("dense", (28, 28), 3), path, {"class_names": ["0", "1", "2"], "dataset": "mnist",
                                                         "model": "dense"})
    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    assert main(["predict", str(path), str(tmp_path / "digit.png"), "--tta"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not trained with test-time augmentation" in err[0] and "Traceback" not in err[0]


def test_metadata_naming_unknown_views_is_a_clear_error(tmp_path):
    path = tmp_path / "model.keras"
    save_model(build_model("dense", (28, 28), 3), path, {"class_names": ["0", "1", "2"], "tta_views": 4})
    model, metadata, _ = load_model(path)  # plain predictions need no views
    with pytest.raises(ImgclsError, match="model.keras: its metadata's tta_views is not 2 or 6: 4"):
        with_tta(model, metadata, path)


def test_the_accuracy_line_names_a_tta_accuracy_even_of_zero():
    from imgcls.cli import accuracy_line

    assert accuracy_line({"test_accuracy": 0.25}) == "Test accuracy: 25.00%"
    assert accuracy_line({"test_accuracy": 0.25, "test_accuracy_tta": 0.0}) == (
        "Test accuracy: 25.00% (0.00% with predict --tta)")
