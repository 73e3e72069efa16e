import json

import pytest

from imgcls.config import RECIPES, TrainConfig, resolve_config
from imgcls.errors import ImgclsError


def test_seed_preset_is_the_tutorial_recipe():
    config = resolve_config(preset="seed")
    assert (config.model, config.epochs, config.batch_size, config.lr, config.schedule,
            config.validation_split, config.augment) == ("cnn2", 5, 32, 1e-3, "constant", 0.1, None)


def test_precedence_defaults_then_preset_then_file_then_flags(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochs": 7, "batch_size": 64}))
    config = resolve_config(preset="seed", config_file=path, batch_size=128, lr=None)
    assert config.model == "cnn2"          # from the preset
    assert config.epochs == 7              # the file beats the preset
    assert config.batch_size == 128        # a flag beats the file
    assert config.lr == RECIPES["seed"].values["lr"]  # a flag not given changes nothing
    assert resolve_config(dataset="folder:photos").epochs == TrainConfig().epochs  # no recipe refines folders
    assert resolve_config().augment == "digits"  # MNIST's default recipe reads handwriting, not just MNIST


def test_config_file_can_name_a_preset(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"preset": "seed", "seed": 3}))
    config = resolve_config(config_file=path)
    assert (config.model, config.seed) == ("cnn2", 3)


@pytest.mark.parametrize(("flags", "message"), [
    ({"epochs": -1}, "epochs must be at least 1"),
    ({"validation_split": 1.5}, r"validation_split must be in \[0, 1\)"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"lr": 0.0}, "lr must be a positive, finite number"),
    ({"lr": float("inf")}, "lr must be a positive, finite number"),
    ({"early_stopping": 0}, "early_stopping must be at least 1"),
    ({"schedule": "linear"}, "unknown schedule 'linear'"),
    ({"seed": -1}, "seed must be a whole number"),
    ({"model": "cnn9"}, "unknown model 'cnn9'"),
    ({"tta_views": 4}, "tta_views must be 2 or 6"),
    ({"whitening_span": 1.5}, r"whitening_span must be in \[0, 1\]"),
])
def test_nonsense_numbers_are_rejected(flags, message):
    with pytest.raises(ImgclsError, match=message):
        resolve_config(**flags)


def test_unknown_preset_and_keys_and_bad_files(tmp_path):
    with pytest.raises(ImgclsError, match="unknown preset 'sed'. Did you mean 'seed'"):
        resolve_config(preset="sed")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ImgclsError, match="unknown config keys: epoch"):
        resolve_config(config_file=bad)
    bad.write_text("{not json")
    with pytest.raises(ImgclsError, match="cannot read config file"):
        resolve_config(config_file=bad)
    with pytest.raises(ImgclsError, match="config file not found"):
        resolve_config(config_file=tmp_path / "missing.json")


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": "3"}, "epochs must be int or null, got '3'"),
    ({"lr": "0.01"}, "lr must be float, got '0.01'"),
    ({"validation_split": None}, "validation_split must be float, got None"),
    ({"augment": 5}, "augment must be str or null, got 5"),
    ({"model": ["fast"]}, r"model must be str, got \['fast'\]"),
    ({"batch_size": 1.5}, "batch_size must be int, got 1.5"),
    ({"tta": "yes"}, "tta must be bool, got 'yes'"),
    ({"epochs": True}, "epochs must be int or null, got True"),
])
def test_config_files_with_wrong_types_are_refused(tmp_path, values, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ImgclsError, match=message):
        resolve_config(config_file=path)


def test_recipes_refine_per_dataset_and_flags_still_win():
    photos = resolve_config(dataset="cifar10")
    assert (photos.model, photos.optimizer, photos.validation_split, photos.offset_lr) == ("airnet", "muon", 0.0, 64)
    assert resolve_config(dataset="fashion_mnist").model == "airnet_small"
    assert resolve_config(dataset="cifar10", model="cnn3", epochs=2).model == "cnn3"
    assert resolve_config(dataset="mnist").model == "fast_wide"
    assert resolve_config(preset="seed", dataset="cifar10").model == "cnn2"  # the tutorial stays the tutorial
    folders = resolve_config(dataset="folder:photos")
    assert (folders.model, folders.optimizer, folders.batch_size) == ("airnet_small", "muon", 128)
    assert resolve_config(preset="best", dataset="folder:photos").model == "airnet"
    assert resolve_config(preset="best", dataset="mnist").model == "fast_wide"
    assert resolve_config(preset="seed", dataset="folder:photos").model == "cnn2"
