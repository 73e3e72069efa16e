"""Pretrained backbones, --weights, two-phase fine-tuning, --init-from, class weights and the checks on
small folders, on tiny folders at 32x32 (no ImageNet weights are reachable where these tests run)."""

import dataclasses
import hashlib
import json
import re

import keras
import numpy as np
import pytest
from PIL import Image

from imgcls.cli import main
from imgcls.config import resolve_config
from imgcls.data import load_dataset
from imgcls.errors import ImgclsError
from imgcls.models import PRESETS, build_model
from imgcls.saving import save_model
from imgcls.train import split_validation, train
from imgcls.transfer import UNFREEZE_SHARE, balanced_class_weights, starting_model

PRETRAINED = [name for name, spec in PRESETS.items() if spec.pretrained]


def write_folder(root, counts, size=(20, 20), mode="L"):
    """Class folders of learnable pictures: class k is a bright band at height k."""
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 60, (*size[::-1], 3), dtype=np.uint8)
            pixels[4 * k:4 * k + 4] = 255
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("tiny") / "shapes", {"low": 12, "middle": 12, "high": 12})


def backbone(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.parametrize("name", PRETRAINED)
def test_each_backbone_trains_a_step_on_a_grey_folder_and_saves_a_model_that_takes_its_pixels(name, shapes, home,
                                                                                              tmp_path):
    data = load_dataset(f"folder:{shapes}", image_size=32, progress=False)  # grey, as train reads it at 32
    config = resolve_config(dataset=f"folder:{shapes}", model=name, weights="none", input_size=32)
    model = starting_model(config, data.x_train.shape[1:], data.class_names, progress=False)
    net = backbone(model)
    assert net.trainable  # random weights: the whole network trains
    first = next(layer for layer in net.layers if layer.trainable_weights)  # the stem convolution
    before = first.get_weights()
    # Eagerly: Keras takes a minute to trace a whole backbone's training step on 2 cores, and the
    # step itself is what is tested here (test_weights_file_... runs imgcls's own training).
    model.compile("sgd", "sparse_categorical_crossentropy", run_eagerly=True)
    loss = model.fit(data.x_train, data.y_train, batch_size=len(data.x_train), verbose=0).history["loss"][0]
    assert np.isfinite(loss) and not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), before))
    save_model(model, tmp_path / "model.keras", {"class_names": data.class_names})
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)  # plain Keras, safe mode
    assert loaded.input_shape == (None, 32, 32, 1)  # the folder's own grey pixels
    np.testing.assert_allclose(loaded.predict_on_batch(data.x_test), model.predict_on_batch(data.x_test), atol=1e-5)


def official_imagenet_model(name, path, monkeypatch):
    """Keras's own application for `name` with the weights in `path` (None: random), as Keras builds it
    for its ImageNet weights, and the preprocessing Keras documents for it."""
    options = dict(include_top=False, input_shape=(32, 32, 3), pooling="avg", weights=str(path) if path else None)
    if name == "efficientnet_b0":
        if path:  # weights="imagenet" builds an extra layer that a file does not get
            monkeypatch.setattr("keras.src.applications.efficientnet.file_utils.get_file", lambda *a, **k: str(path))
            options["weights"] = "imagenet"
        return keras.applications.EfficientNetB0(**options), lambda x: x
    if name == "resnet50":
        return keras.applications.ResNet50(**options), keras.applications.resnet50.preprocess_input
    return keras.applications.MobileNetV3Small(**options), lambda x: x


@pytest.mark.parametrize("name", PRETRAINED)
def test_each_backbone_sees_raw_pixels_as_the_keras_imagenet_model_sees_preprocessed_ones(name, tmp_path, monkeypatch):
    random = official_imagenet_model(name, None, monkeypatch)[0]
    for layer in random.layers:
        if isinstance(layer, keras.layers.Normalization):  # EfficientNet's, with statistics as in Keras's file
            layer.set_weights([np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]), np.array(0)])
    path = tmp_path / f"{name}.weights.h5"
    random.save_weights(path)
    official, preprocess = official_imagenet_model(name, path, monkeypatch)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    expected = official(preprocess(x.astype("float32")), training=False)

    model = build_model(name, (32, 32, 3), 2, input_size=32, weights=str(path), frozen=True)
    save_model(model, tmp_path / "model.keras", {})  # and through a saved model file
    for candidate in (model, keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)):
        features = keras.Model(candidate.inputs, candidate.layers[-2].output)  # the backbone's, before the head
        # relative to their size: features of random weights are as small as 1e-10
        np.testing.assert_allclose(features(x, training=False), expected, rtol=1e-3,
                                   atol=1e-3 * float(np.abs(expected).max()))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """MobileNetV3 Small backbone weights no initialiser would give (each scaled by 1.5), saved as a file."""
    net = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg")
    net.set_weights([w * 1.5 for w in net.get_weights()])
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    net.save_weights(path)
    return path, net.get_weights()


def test_weights_file_loads_frozen_then_its_top_is_fine_tuned(shapes, weights_file, tmp_path, home):
    path, expected = weights_file
    config = resolve_config(dataset=f"folder:{shapes}", model="mobilenet_v3_small", weights=str(path), input_size=32,
                            epochs=1, finetune_epochs=1, optimizer="sgd", lr=0.05, batch_size=8,
                            out=str(tmp_path / "run"))
    run = train(config, progress=False)
    assert json.loads((run.folder / "metrics.json").read_text())["epochs"] == 2  # head, then the backbone's top
    net = backbone(run.model)
    layers = [layer for layer in net.layers if layer.weights]
    weights = iter(expected)
    changed = []
    for layer in layers:  # the file's weights, in layer order
        before = [next(weights) for _ in layer.weights]
        same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before))
        if isinstance(layer, keras.layers.BatchNormalization):
            assert same, layer.name  # batch norm never trains, nor updates its statistics
        elif not same:
            changed.append(net.layers.index(layer))
    assert changed and min(changed) >= int((1 - UNFREEZE_SHARE) * len(net.layers))  # only the top was unfrozen


def test_imagenet_weights_come_from_the_cache_once_verified(shapes, weights_file, tmp_path, home, monkeypatch):
    path, expected = weights_file
    spec = PRESETS["mobilenet_v3_small"]
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    url = "http://127.0.0.1:9/w.weights.h5"  # nothing listens there: a download fails at once
    monkeypatch.setitem(PRESETS, spec.name, dataclasses.replace(spec, pretrained=url, weights_hash=f"md5:{digest}"))
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "w.weights.h5").write_bytes(path.read_bytes())
    config = resolve_config(model="mobilenet_v3_small", input_size=32)  # weights default to imagenet
    model = starting_model(config, (32, 32, 3), ["a", "b"], progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(backbone(model).get_weights(), expected))
    assert not backbone(model).trainable

    (home / "weights" / "w.weights.h5").write_bytes(b"damaged")  # a bad copy is fetched again, and that fails here
    with pytest.raises(ImgclsError, match=rf"cannot download w.weights.h5 .* from {url}; .*--weights FILE"):
        starting_model(config, (32, 32, 3), ["a", "b"], progress=False)


def test_imagenet_weights_unreachable_is_one_line_naming_the_url(shapes, tmp_path, home, monkeypatch, capsys):
    spec = PRESETS["resnet50"]
    url = "http://127.0.0.1:9/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    monkeypatch.setitem(PRESETS, "resnet50", dataclasses.replace(spec, pretrained=url))
    code = main(["train", "--dataset", f"folder:{shapes}", "--model", "resnet50", "--weights", "imagenet",
                 "--input-size", "32", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the folder's progress lines
    assert code == 2 and "Traceback" not in err and last.startswith("imgcls: error: cannot download")
    assert url in last and "--weights FILE" in last


def test_init_from_copies_matching_layers_and_gives_a_new_head_for_new_classes(shapes, tmp_path, home):
    first = train(resolve_config(dataset=f"folder:{shapes}", model="cnn1", epochs=1, out=str(tmp_path / "a")),
                  progress=False)
    old = [layer.get_weights() for layer in first.model.layers if layer.weights]

    def start(class_names, **options):
        config = resolve_config(model="cnn1", init_from=str(first.folder), **options)
        model = starting_model(config, first.model.input_shape[1:], class_names, progress=False)
        return [layer.get_weights() for layer in model.layers if layer.weights]

    def equal(a, b):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))

    same = start(["high", "low", "middle"])  # the same classes: everything, head included
    assert all(equal(a, b) for a, b in zip(same, old))
    other = start(["car", "ship"])
    assert all(equal(a, b) for a, b in zip(other[:-1], old[:-1]))
    assert other[-1][0].shape == (64, 2)  # a new head
    renamed = start(["one", "two", "three"])  # as many classes, other names: a new head too
    assert not equal(renamed[-1], old[-1])
    with pytest.raises(ImgclsError, match="holds a cnn1 model; train it with --model cnn1"):
        starting_model(resolve_config(model="cnn2", init_from=str(first.folder)), (20, 20, 1), ["a", "b"])


def test_unbalanced_folder_with_class_weights_reports_its_counts(tmp_path, home):
    root = write_folder(tmp_path / "pets", {"cat": 40, "dog": 8})
    config = resolve_config(dataset=f"folder:{root}", model="cnn1", class_weight="balanced", validation_split=0.25,
                            out=str(tmp_path / "run"))
    run = train(config, progress=False)
    per_class = run.metrics["per_class"]
    # 32 cats and 6 dogs for training and validation; the last 10 (Keras's way) would be every dog
    assert per_class["cat"]["training_images"] == 24 and per_class["dog"]["training_images"] == 4
    report = (run.folder / "report.md").read_text()
    assert "unbalanced: 4 to 24 training images" in report
    assert "| cat |" in report and "| 8 | 24 |" in report  # test images, training images


def test_balanced_class_weights_are_inverse_shares():
    assert balanced_class_weights(np.array([0] * 30 + [1] * 10), 2) == {0: 40 / 60, 1: 40 / 20}


def test_folder_validation_split_is_stratified_and_reproducible():
    x, y = np.arange(100), np.repeat([0, 1, 2, 3], 25)  # sorted by class, as folders are
    (_, y_fit), (x_val, y_val) = split_validation(x, y, 0.2, seed=0)
    assert np.bincount(y_val).tolist() == [5, 5, 5, 5] and np.bincount(y_fit).tolist() == [20, 20, 20, 20]
    assert split_validation(x, y, 0.2, seed=0)[1][0].tolist() == x_val.tolist()
    assert set(split_validation(x, y, 0.2)[1][1]) == {3}  # Keras's way: the last class alone


@pytest.mark.parametrize("counts, message", [
    ({"cat": 12, "dog": 4, "owl": 2}, r"too few training images in dog \(3\), owl \(2\); each class needs at least 5"),
    ({"cat": 12}, r"has 1 class folder\(s\) with images; a classifier needs at least 2"),
])
def test_folder_too_small_to_learn_from_is_one_line_before_training(tmp_path, home, capsys, counts, message):
    root = write_folder(tmp_path / "pets", counts)
    code = main(["train", "--dataset", f"folder:{root}", "--validation-split", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err.strip().splitlines()[-1])
    assert not (tmp_path / "run").exists()  # refused before any run folder was made


@pytest.mark.parametrize("flags, message", [
    (["--model", "fast", "--weights", "imagenet"], "--weights imagenet applies only to the pretrained presets"),
    (["--model", "resnet50", "--weights", "missing.h5"], "--weights must be imagenet, none or a weights file"),
    (["--model", "resnet50", "--input-size", "16"], "--input-size must be at least 32 pixels for resnet50"),
    (["--init-from", "no-such-run"], "model not found: no-such-run"),
    (["--class-weight", "balance"], "unknown class weight 'balance'. Did you mean 'balanced'"),
])
def test_transfer_flags_are_checked_before_any_data_is_read(capsys, flags, message):
    assert main(["train", "--dataset", "folder:/nowhere", *flags]) == 2
    assert message in capsys.readouterr().err
