"""Where verified datasets are kept, and how they are written and read back.

Each cache file has its checksum beside it (NAME.sha256, over the arrays themselves), so a file
changed after it was written, even into another valid .npz, is noticed and fetched again."""

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from imgcls.data.console import say
from imgcls.errors import ImgclsError
from imgcls.runs import atomic_path, write_text

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


def cache_dir() -> Path:
    """$IMGCLS_HOME if set, else ~/.cache/imgcls."""
    home = os.environ.get("IMGCLS_HOME")
    folder = Path(home).expanduser() if home else Path.home() / ".cache" / "imgcls"
    if folder.exists() and not folder.is_dir():
        raise ImgclsError(f"the imgcls cache {folder} is a file, not a folder; "
                          f"{'set IMGCLS_HOME to a folder' if home else 'move that file away'}")
    return folder


def digest(arrays, class_names):
    """sha256 of the arrays' dtypes, shapes and bytes, and of the class names."""
    hasher = hashlib.sha256()
    for array in arrays:
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    hasher.update("\n".join(class_names).encode())
    return hasher.hexdigest()


def _checksum_file(path):
    return path.with_name(path.name + ".sha256")


def remove(path):
    """Delete a cache file and its checksum."""
    Path(path).unlink(missing_ok=True)
    _checksum_file(Path(path)).unlink(missing_ok=True)


def save(path, arrays, class_names, source):
    """Write atomically, so an interrupted fetch never leaves a half-written cache file; the checksum
    goes last, so a file without one was never finished."""
    path = Path(path)
    _checksum_file(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **dict(zip(ARRAY_NAMES, arrays)), class_names=np.array(class_names, dtype=str),
                 source=np.array(source))
    write_text(_checksum_file(path), digest(arrays, class_names) + "\n")


def load(path):
    """(arrays, class_names, source) from a cache file, or None when it is missing, damaged or not
    what was written (its checksum differs): the caller then reads the dataset again."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[name] for name in ARRAY_NAMES)
            class_names, source = [str(c) for c in npz["class_names"]], str(npz["source"])
        expected = _checksum_file(path).read_text().strip()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        say(f"cache file {path} is damaged or unfinished ({e}); reading the dataset again")
        return None
    if digest(arrays, class_names) != expected:
        say(f"cache file {path} has changed since it was written (its checksum differs); reading the dataset again")
        return None
    return arrays, class_names, source
