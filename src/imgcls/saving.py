"""Save and load models in Keras's native format and in HDF5, with imgcls's metadata inside.

The metadata (class names, dataset, preset) travels inside the model file itself, as an extra
`imgcls.json` entry of the .keras zip and as an attribute of the HDF5 root, so a model file is
self-describing, and plain Keras still loads it as usual (it ignores both).
"""

import json
import zipfile
from pathlib import Path

import h5py
import keras

from imgcls.artifacts import atomic_path
from imgcls.errors import ImgclsError

METADATA_ENTRY = "imgcls.json"
MODEL_FILES = ("model.keras", "model.h5")


def save_model(model, path, metadata):
    """Write `model` to `path` (.keras or .h5) atomically, with `metadata` embedded."""
    path = Path(path)
    text = json.dumps(metadata)
    with atomic_path(path) as tmp:
        model.save(tmp)
        if path.suffix == ".keras":
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_ENTRY, text)
        else:
            with h5py.File(tmp, "a") as f:
                f.attrs[METADATA_ENTRY] = text
    return path


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
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImgclsError(f"{path} is not a loadable Keras model (.keras or .h5): {reason}") from e
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
    metadata = json.loads(text) if text else {}
    num_classes = model.output_shape[-1]
    metadata.setdefault("class_names", [str(i) for i in range(num_classes)])
    metadata.setdefault("model", model.name)
    return metadata
