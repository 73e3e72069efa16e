"""Save and load models in Keras's native format and in HDF5, with imgcls's metadata inside.

The metadata (class names, dataset, preset) travels inside the model file itself, as an extra
`imgcls.json` entry of the .keras zip and as an attribute of the HDF5 root, so a model file is
self-describing, and plain Keras still loads it as usual (it ignores both).
"""

import contextlib
import json
import zipfile
from pathlib import Path

import h5py
import keras

from imgcls.errors import ImgclsError, first_line
from imgcls.runs import atomic_path

METADATA_ENTRY = "imgcls.json"
MODEL_FILES = ("model.keras", "model.h5")


def save_model(model, path, metadata):
    """Write `model` to `path` (.keras or .h5) atomically, with `metadata` embedded."""
    path = Path(path)
    text = json.dumps(metadata)
    with atomic_path(path) as tmp, _compile_config_kept(model):
        model.save(tmp)
        if path.suffix == ".keras":
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_ENTRY, text)
        else:
            with h5py.File(tmp, "a") as f:
                f.attrs[METADATA_ENTRY] = text
    return path


@contextlib.contextmanager
def _compile_config_kept(model):
    """Keras 3.15's HDF5 writer deletes the optimizer from the model's own compile config
    (keras-team/keras#23475, merged after 3.15.1), so a .keras file saved after an .h5 loaded with
    Keras's default RMSprop: put it back."""
    config = getattr(getattr(model, "_compile_config", None), "config", None)
    kept = dict(config) if isinstance(config, dict) else None
    try:
        yield
    finally:
        if kept is not None:
            config.update(kept)


def resolve_model_path(model_or_run):
    """A model file as given, or the model inside a run folder."""
    path = Path(model_or_run)
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        raise ImgclsError(f"no model file ({' or '.join(MODEL_FILES)}) in folder {path}")
    if not path.is_file():
        raise ImgclsError(f"model not found: {path} (give a .keras/.h5 file or a run folder)")
    return path


def load_model(model_or_run):
    """Load a model in Keras's safe mode; returns (model, metadata, path)."""
    path = resolve_model_path(model_or_run)
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # Keras raises many types for a file that is not a model
        raise ImgclsError(f"{path} is not a loadable Keras model (.keras or .h5): {first_line(e)}") from e
    return model, read_metadata(path, model), path


def read_metadata(path, model):
    """The embedded metadata, or what can be inferred for a model saved by someone else."""
    text = None
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if METADATA_ENTRY in archive.namelist():
                    text = archive.read(METADATA_ENTRY).decode()
        else:
            with h5py.File(path, "r") as f:
                text = f.attrs.get(METADATA_ENTRY)
    except OSError:
        pass
    try:
        metadata = json.loads(text) if text else {}
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise ImgclsError(f"{path}: its imgcls metadata is not a JSON object")
    num_classes = model.output_shape[-1]
    metadata.setdefault("class_names", [str(i) for i in range(num_classes)])
    metadata.setdefault("model", model.name)
    names, dataset = metadata["class_names"], metadata.get("dataset")
    if not (isinstance(names, list) and len(names) == num_classes and all(isinstance(n, str) for n in names)):
        raise ImgclsError(f"{path}: its metadata names {len(names) if isinstance(names, list) else 'no list of'} "
                          f"classes but the model predicts {num_classes}")
    if dataset is not None and not isinstance(dataset, str):
        raise ImgclsError(f"{path}: its metadata's dataset is not a name: {dataset!r}")
    return metadata
