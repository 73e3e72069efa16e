import keras
import numpy as np
import pytest

from imgcls.runs import atomic_path
from imgcls.errors import ImgclsError
from imgcls.models import build_model
from imgcls.saving import load_model, save_model

METADATA = {"class_names": ["zero", "one", "two"], "dataset": "folder:digits", "model": "cnn1"}


@pytest.fixture(scope="module")
def trained():
    """A model whose weights moved away from their initial values, so a lost weight would show."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 12, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 64)
    model = build_model("cnn1", (12, 12), 3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    return model, x


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_round_trip_gives_identical_predictions_and_keeps_metadata(tmp_path, trained, name):
    model, x = trained
    save_model(model, tmp_path / name, METADATA)
    loaded, metadata, path = load_model(tmp_path / name)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert metadata == METADATA and path == tmp_path / name
    # Plain Keras, without imgcls, reads the same file and evaluates it as compiled.
    plain = keras.saving.load_model(tmp_path / name)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), model.predict(x, verbose=0))
    assert len(plain.evaluate(x, np.zeros(len(x)), verbose=0)) == 2  # loss and accuracy


def test_a_keras_file_saved_after_an_h5_keeps_the_models_optimizer(tmp_path, trained):
    """Keras's HDF5 writer took the optimizer out of the model's own compile config, so a .keras file
    saved after an .h5 loaded with Keras's default RMSprop and dropped the optimizer's state."""
    model, _ = trained
    save_model(model, tmp_path / "model.h5", METADATA)
    save_model(model, tmp_path / "model.keras", METADATA)
    loaded = load_model(tmp_path / "model.keras")[0]
    assert type(loaded.optimizer) is type(model.optimizer) is keras.optimizers.Adam
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for kept, original in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(kept, original)


def test_run_folder_resolves_to_its_model(tmp_path, trained):
    save_model(trained[0], tmp_path / "model.keras", METADATA)
    assert load_model(tmp_path)[2] == tmp_path / "model.keras"


def test_not_a_model_and_missing_files_are_clear_errors(tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("this is not a model")
    with pytest.raises(ImgclsError, match="is not a loadable Keras model"):
        load_model(fake)
    with pytest.raises(ImgclsError, match="model not found"):
        load_model(tmp_path / "nothing.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgclsError, match="no model file"):
        load_model(tmp_path / "empty")


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_a_trained_airnet_loads_without_warnings(shapes_folder, tmp_path):
    """airnet's whitening kernel is frozen by hand in training and trainable again once loaded; the
    saved optimizer must expect that, or every predict, evaluate and serve warned of skipped
    optimizer variables."""
    import warnings

    from imgcls.config import resolve_config
    from imgcls.train import train

    config = resolve_config(dataset=f"folder:{shapes_folder}", model="airnet", epochs=1, batch_size=16,
                            out=str(tmp_path / "run"))
    folder = train(config, progress=False).folder
    for name in ("model.keras", "model.h5"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            model, _, _ = load_model(folder / name)
        assert model.compiled and model.optimizer.built  # plain Keras can evaluate it as it is
