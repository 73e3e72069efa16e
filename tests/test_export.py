"""Exported models (ONNX, LiteRT, SavedModel) checked in their own runtimes against Keras: a small
model trained on real MNIST, an old-style model with random augmentation layers inside, a colour
model, and the photo and clothes recipes' network."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

import imgcls.export
from imgcls.errors import ImgclsError
from imgcls.export import export_run, inference_model, write_model
from imgcls.runs import atomic_folder
from imgcls.export.runtimes import load_exported
from imgcls.models import PRESETS, build_model
from imgcls.saving import load_model, save_model
from conftest import run_on_first

VARIANTS = {"onnx": ("onnx", None), "litert": ("litert", None), "int8": ("litert", "int8"),
            "saved_model": ("saved_model", None)}
CHECK = 1000


def onnx_runner(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {session.get_inputs()[0].name: x})[0]


def litert_runner(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (pixels,), (probs,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(x):
        interpreter.resize_tensor_input(pixels["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(pixels["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(probs["index"])
    return run


def saved_model_runner(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda x: loaded.serve(x).numpy()


RUNNERS = {"onnx": onnx_runner, "litert": litert_runner, "saved_model": saved_model_runner}


def assert_matches_keras(path, fmt, quantize, model, x, y=None):
    """The exported file, in its own runtime, against `model` on `x`: top-1 agreement, accuracy (with
    labels `y`), and the same answers for batches of 1 and 7 as for the whole batch."""
    run = RUNNERS[fmt](path)
    probs, expected = run(x), model.predict_on_batch(x)
    agreement = np.mean(probs.argmax(1) == expected.argmax(1))
    assert probs.shape == expected.shape and probs.dtype == np.float32
    assert agreement >= (0.99 if quantize else 0.999), agreement
    if y is not None:
        gap = abs(np.mean(probs.argmax(1) == y) - np.mean(expected.argmax(1) == y))
        assert gap <= (0.005 if quantize else 0.001), gap
    for batch in (1, 7):
        np.testing.assert_allclose(run(x[:batch]), probs[:batch], atol=1e-4)


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    """cnn1 trained for one epoch on 2,000 real MNIST training images (about 87% on the test set)."""
    return run_on_first(mnist, 2000, tmp_path_factory.mktemp("export") / "run", model="cnn1", epochs=1)


@pytest.fixture(scope="module")
def exported(run):
    """Every variant exported into RUN/export/ by export_run, speed measured only briefly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.export, "SPEED_SECONDS", 0.05)
        return {name: export_run(run, fmt, quantize, check_images=CHECK) for name, (fmt, quantize) in VARIANTS.items()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_runs_in_its_own_runtime(variant, run, exported, mnist):
    fmt, quantize = VARIANTS[variant]
    model, _, _ = load_model(run)
    assert_matches_keras(exported[variant], fmt, quantize, model, mnist.x_test[:CHECK], mnist.y_test[:CHECK])


def test_export_folder_holds_labels_metadata_and_card(run, exported, mnist):
    folder = run / "export"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.json", "metadata.json", "model.onnx", "model.tflite",
                                                       "model_card.md", "model_int8.tflite", "saved_model"]
    assert json.loads((folder / "labels.json").read_text()) == mnist.class_names
    metadata = json.loads((folder / "metadata.json").read_text())
    assert (metadata["dataset"], metadata["model"], metadata["input_shape"]) == ("mnist", "cnn1", [None, 28, 28])
    int8, onnx = metadata["exports"]["model_int8.tflite"], metadata["exports"]["model.onnx"]
    assert onnx["check_images"] == CHECK and onnx["agreement"] >= 0.999
    assert int8["bytes"] < int8["float"]["bytes"] / 3
    card = (folder / "model_card.md").read_text()
    run_accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert f"{run_accuracy:.2%}" in card and "uint8" in card and "centre of mass" in card
    assert "test-time views" not in card  # the run was not measured with them
    for name, record in metadata["exports"].items():  # one card for every format exported from this run
        assert f"| `{name}` |" in card and f"{record['bytes']:,}" in card


@pytest.mark.parametrize("runtime", ["onnx", "litert"])
def test_predictors_serve_like_a_keras_model(runtime, run, exported, mnist):
    predictor, metadata = load_exported(run, runtime)
    model, keras_metadata, _ = load_model(run)
    assert predictor.input_shape == model.input_shape == (None, 28, 28)
    assert metadata["class_names"] == keras_metadata["class_names"] and metadata["dataset"] == "mnist"
    x = mnist.x_test[:7]
    for batch in (7, 1, 7):  # LiteRT resizes its input each time the batch size changes
        np.testing.assert_allclose(predictor.predict_on_batch(x[:batch]), model.predict_on_batch(x[:batch]), atol=1e-5)


@pytest.fixture(scope="module")
def airnet_run(mnist, tmp_path_factory):
    """airnet_small, the clothes recipe's network (patch whitening, GELU, a frame in the background's
    colour), trained for one epoch on 6,000 MNIST images (on 2,000 its int8 file agreed with it on
    only 98.9%)."""
    return run_on_first(mnist, 6000, tmp_path_factory.mktemp("export-airnet") / "run", model="airnet_small",
                        epochs=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_photo_and_clothes_networks_export(variant, airnet_run, mnist):
    """airnet's GELU: TensorFlow computes it with erfc, an op tf2onnx cannot convert."""
    fmt, quantize = VARIANTS[variant]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.export, "SPEED_SECONDS", 0.05)
        path = export_run(airnet_run, fmt, quantize, check_images=CHECK)
    model, _, _ = load_model(airnet_run)
    assert_matches_keras(path, fmt, quantize, model, mnist.x_test[:CHECK], mnist.y_test[:CHECK])


def test_onnx_runtime_loads_without_tensorflow(run, exported):
    code = ("import sys, numpy as np; from imgcls.export.runtimes import load_exported; "
            f"p, m = load_exported({str(run)!r}, 'onnx'); "
            "probs = p.predict_on_batch(np.zeros((3, 28, 28), np.uint8)); "
            "print(probs.shape, sorted({'tensorflow', 'keras'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(3, 10) []"


def old_style_model(trained):
    """`trained` rebuilt as runs used to save models: random augmentation inside, after rescaling."""
    inputs = keras.Input((28, 28))
    x = layers.Rescaling(1.0 / 255)(layers.Reshape((28, 28, 1))(inputs))
    x = keras.Sequential([layers.RandomTranslation(0.125, 0.125, fill_mode="constant")], name="augmentation")(x)
    model = keras.Model(inputs, PRESETS["cnn1"].body(x, 10), name="cnn1")
    for layer, source in zip(model.layers[4:], trained.layers[3:]):
        layer.set_weights(source.get_weights())
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_old_model_with_augmentation_inside_exports(variant, run, mnist, tmp_path):
    fmt, quantize = VARIANTS[variant]
    trained, metadata, _ = load_model(run)
    save_model(old_style_model(trained), tmp_path / "model.keras", metadata)
    fresh, _, _ = load_model(tmp_path)  # from disk, never called: export must not need a call first
    assert fresh.get_layer("augmentation")
    stripped = inference_model(fresh)
    assert [type(layer).__name__ for layer in stripped.get_layer("augmentation").layers] == ["Identity"]
    target = tmp_path / imgcls.export.export_name(fmt, quantize)
    write_model(stripped, fmt, target, mnist.x_train[:200] if quantize else None)
    assert_matches_keras(target, fmt, quantize, trained, mnist.x_test[:CHECK], mnist.y_test[:CHECK])


def colour_images(n, seed):
    """A CIFAR-like task a small network learns to about 99% in seconds: 32x32 RGB noise tinted by
    one of ten colours, the class (less tint and int8 agreement with Keras drops below 99%)."""
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(0).integers(0, 256, (10, 3))
    y = rng.integers(0, 10, n)
    x = 0.75 * rng.integers(0, 256, (n, 32, 32, 3)) + 0.25 * palette[y][:, None, None, :]
    return x.astype(np.uint8), y


@pytest.fixture(scope="module")
def colour_model():
    keras.utils.set_random_seed(0)
    model = build_model("cnn1", (32, 32, 3), 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*colour_images(2000, seed=1), epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_colour_model_exports(variant, colour_model, tmp_path):
    fmt, quantize = VARIANTS[variant]
    x, y = colour_images(CHECK, seed=2)
    target = tmp_path / imgcls.export.export_name(fmt, quantize)
    write_model(colour_model, fmt, target, colour_images(200, seed=3)[0] if quantize else None)
    assert_matches_keras(target, fmt, quantize, colour_model, x, y)


def test_missing_package_names_the_extra(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an uninstalled package looks like
    for call in (lambda: export_run(run, "onnx"), lambda: load_exported(run, "onnx")):
        with pytest.raises(ImgclsError) as error:
            call()
        assert str(error.value) == "onnxruntime is not installed: pip install 'imgcls[export]'"


def test_bad_requests_are_one_line_errors(run, tmp_path):
    with pytest.raises(ImgclsError, match="Did you mean 'onnx'"):
        export_run(run, "onxx")
    with pytest.raises(ImgclsError, match="not available for onnx"):
        export_run(run, "onnx", quantize="int8")
    with pytest.raises(ImgclsError, match="check_images must be a whole number"):
        export_run(run, "onnx", check_images=0)
    with pytest.raises(ImgclsError, match="no model.onnx in"):
        load_exported(tmp_path, "onnx")
    with pytest.raises(ImgclsError, match="--tta is for --format web"):
        export_run(run, "onnx", tta=True)
    with pytest.raises(ImgclsError, match="was not trained with test-time augmentation"):
        export_run(run, "web", tta=True)


def test_exports_are_checked_on_every_class_of_a_folder_dataset(shapes_folder, tmp_path):
    """A folder dataset lists its test pictures class by class (CIFAR-10's JPEG folders too): the
    check must not take the first ones, all of one class. A model that always answers the first
    class would score 100% on them; on the 30 pictures of 3 classes it is right about a third of the time."""
    inputs = keras.Input((20, 20, 1))
    outputs = layers.Dense(3, activation="softmax", bias_initializer=keras.initializers.Constant([5.0, 0.0, 0.0]),
                           kernel_initializer="zeros")(layers.Flatten()(inputs))
    save_model(keras.Model(inputs, outputs), tmp_path / "model.keras",
               {"class_names": ["bar", "cross", "square"], "dataset": f"folder:{shapes_folder}", "model": "first"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.export, "SPEED_SECONDS", 0.05)
        export_run(tmp_path, "litert", quantize="int8", check_images=12)
    record = json.loads((tmp_path / "export" / "metadata.json").read_text())["exports"]["model_int8.tflite"]
    assert record["check_images"] == 12
    assert 0 < record["keras_accuracy"] < 0.75 and record["accuracy"] == record["keras_accuracy"]
    assert 0 < record["float"]["accuracy"] < 0.75


def test_folders_are_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_folder(target) as tmp:
        (tmp / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "half").write_text("half")
        raise RuntimeError("killed mid-export")
    assert [p.name for p in target.iterdir()] == ["old"]
    with atomic_folder(target) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"] and [p.name for p in target.iterdir()] == ["new"]


def test_predict_and_serve_with_the_onnx_runtime_answer_as_keras_does(run, exported, mnist, tmp_path, capsys):
    from PIL import Image

    from imgcls.cli import main
    from imgcls.serve import create_app

    pictures = []
    for i in range(5):
        pictures.append(tmp_path / f"{i}.png")
        Image.fromarray(mnist.x_test[i]).save(pictures[-1])
    answers = {}
    for runtime in ("keras", "onnx"):
        assert main(["predict", str(run), *map(str, pictures), "--json", "--runtime", runtime]) == 0
        answers[runtime] = [r["top"][0]["class"] for r in json.loads(capsys.readouterr().out)]
    assert answers["onnx"] == answers["keras"]

    from fastapi.testclient import TestClient

    client = TestClient(create_app(run, runtime="onnx"), base_url="http://127.0.0.1")
    reply = client.post("/predict", files={"file": ("0.png", pictures[0].read_bytes())}).json()
    assert reply["top"][0]["class"] == answers["keras"][0]
    assert client.get("/model").json()["metrics"]["test_accuracy"] > 0


def test_an_export_keeps_the_test_time_views_of_its_run(run, mnist, tmp_path):
    """A model measured with --tta exports with its views, so `predict --runtime onnx --tta` averages
    the same views as Keras does, and its model card gives that accuracy and says how."""
    from imgcls.predict import with_tta

    model, metadata, _ = load_model(run)
    save_model(model, tmp_path / "model.keras", metadata | {"tta_views": 6})
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9, "test_accuracy_tta": 0.98765}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.export, "SPEED_SECONDS", 0.05)
        export_run(tmp_path, "onnx", check_images=100)
    predictor, exported_metadata = load_exported(tmp_path, "onnx")
    assert exported_metadata["tta_views"] == 6
    x = mnist.x_test[:50]
    np.testing.assert_allclose(with_tta(predictor, exported_metadata, tmp_path).predict_on_batch(x),
                               with_tta(model, metadata | {"tta_views": 6}, run).predict_on_batch(x), atol=1e-4)
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "With test-time views (metadata.json's `tta_views`: 6): 98.77%, each picture's" in card
    assert "moved a pixel down and right" in card
