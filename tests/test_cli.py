"""Bad input gets one clear line and a non-zero exit, never a traceback; --debug shows one."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from imgcls.cli import main
from imgcls.errors import ImgclsError
from imgcls.models import build_model
from imgcls.saving import save_model


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("imgcls: error:") and "Traceback" not in err
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    save_model(build_model("cnn1", (28, 28), 3), path,
               {"class_names": ["cat", "dog", "owl"], "dataset": "folder:pets", "model": "cnn1"})
    return path


@pytest.mark.parametrize(("argv", "pattern"), [
    (["train", "--dataset", "mnsit"], "unknown dataset 'mnsit'"),
    (["train", "--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["train", "--epochs", "-3"], "--epochs must be at least 1"),
    (["train", "--validation-split", "1.5"], "--validation-split must be in [0, 1)"),
    (["train", "--epochs", "many"], "invalid int value: 'many'"),
    (["train", "--epoch", "3"], "did you mean --epochs?"),
    (["train", "--bacth-size", "3"], "did you mean --batch-size?"),
    (["train", "--preset", "fastest"], "unknown preset 'fastest'"),
    (["evaluate", "no/such/model.keras"], "model not found"),
    (["predict", "no/such/run", "x.png"], "model not found"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["serve", "no/such/model.keras"], "model not found"),
    (["serve", "no/such/model.keras", "--port", "http"], "invalid int value: 'http'"),
    (["serve", "no/such/model.keras", "--port", "70000"], "--port must be from 1 to 65535"),
    (["predict", "no/such/model.keras", "x.png", "--csv", "."], "--csv . is a folder"),
    (["train", "--seed", "-1"], "--seed must be a whole number"),
])
def test_bad_input_is_one_line(capsys, argv, pattern):
    assert_one_line_error(*run_cli(capsys, *argv)[::2], pattern)


@pytest.mark.parametrize(("argv", "pattern"), [
    (["predict", "x.png", "--model", "run"], "(MODEL_OR_RUN is positional, without --model) (see 'imgcls predict --help')"),
    (["predict", "run", "x.png", "--top_k", "3"], "(did you mean --top-k?) (see 'imgcls predict --help')"),
    (["--debgu", "train"], "(did you mean --debug?) (see 'imgcls train --help')"),
    (["datasets", "fetch", "mnist", "--data-dri", "x"], "(did you mean --data-dir?) (see 'imgcls datasets fetch --help')"),
])
def test_unrecognized_option_hint_comes_from_its_own_command(capsys, argv, pattern):
    """A hint names an option of the command it was given to: predict has no --model (train has)."""
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, pattern)
    assert err.count("(") == 2  # one hint, one pointer to help


@pytest.mark.parametrize("argv", [["--debug", "predict", "no/such/run", "x.png"],
                                  ["predict", "no/such/run", "x.png", "--debug"],
                                  ["datasets", "fetch", "nope", "--debug"]])
def test_debug_shows_the_error_itself_before_or_after_the_command(argv):
    with pytest.raises(ImgclsError):
        main(argv)


@pytest.mark.parametrize("error", [
    MemoryError(),
    tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__Mul_device_/job:localhost}} OOM when "
                                                 "allocating tensor with shape[23888128,192]\nmore"),
])
def test_running_out_of_memory_in_training_says_what_to_lower(capsys, monkeypatch, error):
    """The first step of a model too big for the memory fails deep in the backend: the line says so."""
    def train(config, **kwargs):
        raise error
    monkeypatch.setattr("imgcls.train.train", train)
    code, _, err = run_cli(capsys, "train", "--epochs", "1")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("imgcls: error: out of memory")
    assert "(OOM when allocating tensor with shape[23888128,192]);" in err or isinstance(error, MemoryError)
    assert "a smaller --batch-size or --input-size needs less (run with --debug for the traceback)" in err


def test_not_a_model_file(capsys, tmp_path):
    fake = tmp_path / "model.h5"
    fake.write_bytes(b"\x00" * 100)
    assert_one_line_error(*run_cli(capsys, "predict", str(fake), "x.png")[::2], "is not a loadable Keras model")


def test_unknown_model_is_reported_before_any_data_is_fetched(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run_cli(capsys, "train", "--model", "cnn9")[::2], "unknown model 'cnn9'")
    assert list(tmp_path.iterdir()) == []  # no dataset cached, no run folder made


def test_predict_on_png_and_jpeg(capsys, tmp_path, model_file):
    rng = np.random.default_rng(0)
    paths = []
    for name, mode, size in (("a.png", "L", (28, 28)), ("b.jpg", "RGB", (64, 40))):
        pixels = rng.integers(0, 256, (size[1], size[0], 3) if mode == "RGB" else size, dtype=np.uint8)
        Image.fromarray(pixels, mode).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    code, out, _ = run_cli(capsys, "predict", str(model_file), *paths, "--json", "--top-k", "2")
    results = json.loads(out)
    assert code == 0 and [r["file"] for r in results] == paths
    for result in results:
        assert len(result["top"]) == 2 and {t["class"] for t in result["top"]} <= {"cat", "dog", "owl"}
        assert result["top"][0]["probability"] >= result["top"][1]["probability"]
    code, out, _ = run_cli(capsys, "predict", str(model_file), paths[0])
    assert code == 0 and out.startswith(paths[0] + ": ")


def test_predict_writes_csv_and_rejects_bad_top_k(capsys, tmp_path, model_file):
    image = tmp_path / "c.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    code, out, _ = run_cli(capsys, "predict", str(model_file), str(image), "--csv", str(tmp_path / "p.csv"))
    assert code == 0 and "1 rows written" in out
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 2 and str(image) in rows[1]
    assert_one_line_error(*run_cli(capsys, "predict", str(model_file), str(image), "--top-k", "0")[::2],
                          "--top-k must be a whole number of at least 1")


def test_predict_errors_name_the_file(capsys, tmp_path, model_file):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert_one_line_error(*run_cli(capsys, "predict", str(model_file), str(text))[::2], "notes.png")
    assert_one_line_error(*run_cli(capsys, "predict", str(model_file), str(tmp_path / "gone.jpg"))[::2],
                          "gone.jpg")


def test_debug_shows_the_traceback():
    result = subprocess.run([sys.executable, "-m", "imgcls", "--debug", "train", "--epochs", "0"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr and "epochs must be at least 1" in result.stderr


def test_models_lists_presets(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and {"dense", "cnn1", "cnn2", "cnn3"} <= {line.split()[0] for line in out.splitlines()}


def test_train_then_evaluate_a_folder_dataset_from_the_command_line(shapes_folder, tmp_path):
    """A real run as a user types it, in a subprocess: last lines name the folder and the accuracy."""
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "imgcls", "train", "--dataset", f"folder:{shapes_folder}",
                             "--model", "cnn1", "--epochs", "3", "--batch-size", "16", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-2:]
    assert last[0] == f"Run folder: {out}" and last[1].startswith("Test accuracy: ")
    assert json.loads((out / "metrics.json").read_text())["test_size"] == 30

    code = main(["evaluate", str(out), "--out", str(tmp_path / "eval")])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert code == 0 and metrics["dataset"] == f"folder:{shapes_folder}"
    assert metrics["test_accuracy"] == json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert {"confusion_matrix.png", "predictions.png", "misclassified.png", "report.md"} <= {
        p.name for p in (tmp_path / "eval").iterdir()}


def test_evaluate_on_a_labelled_folder_of_pictures_agrees_with_predict(capsys, tmp_path, model_file):
    from imgcls.predict import predict_files
    from imgcls.saving import load_model

    rng = np.random.default_rng(3)
    pictures = tmp_path / "mine"
    for label in ("cat", "dog", "owl"):
        (pictures / label).mkdir(parents=True)
        for i in range(4):  # odd sizes and modes: the conversion must bring them to the model's input
            size = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
            Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(pictures / label / f"{i}.png")
    (pictures / "dog" / "broken.png").write_text("not a picture")
    code, out, err = run_cli(capsys, "evaluate", str(model_file), "--images", str(pictures), "--out", str(tmp_path / "ev"))
    assert code == 0 and "skipped 1 unreadable" in err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["test_size"] == 12 and (tmp_path / "ev" / "misclassified.png").exists()

    model, metadata, _ = load_model(model_file)
    results = predict_files(model, metadata["class_names"], [pictures / c for c in ("cat", "dog", "owl")],
                            dataset=metadata["dataset"])
    agree = [r["top"][0]["class"] == r["file"].split("/")[-2] for r in results if "top" in r]
    assert metrics["test_accuracy"] == pytest.approx(np.mean(agree))

    (pictures / "zebra").mkdir()
    assert_one_line_error(*run_cli(capsys, "evaluate", str(model_file), "--images", str(pictures))[::2],
                          "not classes of the model: zebra")


def test_a_class_whose_name_has_a_slash_is_a_folder_with_an_underscore(capsys, tmp_path):
    """Fashion-MNIST's first class is "T-shirt/top", which no folder can be called: its pictures go in
    T-shirt_top/, and a wrong folder's error names the folders to use."""
    path = tmp_path / "model.keras"
    save_model(build_model("cnn1", (28, 28), 3), path,
               {"class_names": ["T-shirt/top", "Trouser", "Bag"], "dataset": "fashion_mnist", "model": "cnn1"})
    pictures = tmp_path / "clothes"
    for folder in ("T-shirt_top", "Trouser"):
        (pictures / folder).mkdir(parents=True)
        Image.fromarray(np.full((28, 28), 90, np.uint8)).save(pictures / folder / "0.png")
    code, _, err = run_cli(capsys, "evaluate", str(path), "--images", str(pictures), "--out", str(tmp_path / "ev"))
    assert code == 0, err
    per_class = json.loads((tmp_path / "ev" / "metrics.json").read_text())["per_class"]
    assert [per_class[name]["support"] for name in ("T-shirt/top", "Trouser", "Bag")] == [1, 1, 0]
    (pictures / "T-shirt").mkdir()
    assert_one_line_error(*run_cli(capsys, "evaluate", str(path), "--images", str(pictures))[::2],
                          "not classes of the model: T-shirt; its class folders: T-shirt_top, Trouser, Bag")


def test_evaluate_converts_a_folder_dataset_of_other_sized_colour_pictures(capsys, tmp_path, model_file):
    rng = np.random.default_rng(4)
    for label in ("cat", "dog", "owl"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "pets" / label / f"{i}.png")
    code, _, err = run_cli(capsys, "evaluate", str(model_file), "--dataset", f"folder:{tmp_path / 'pets'}",
                           "--out", str(tmp_path / "ev"))
    assert code == 0, err
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["test_size"] == 3  # 20% of 5 per class
