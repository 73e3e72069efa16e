"""Where verified datasets are kept, and how they are written and read back."""

import os
import zipfile
from pathlib import Path

import numpy as np

from imgcls.runs import atomic_path
from imgcls.data.console import say

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


def cache_dir() -> Path:
    """$IMGCLS_HOME if set, else ~/.cache/imgcls."""
    home = os.environ.get("IMGCLS_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "imgcls"


def save(path, arrays, class_names, source):
    """Write atomically, so an interrupted fetch never leaves a half-written cache file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **dict(zip(ARRAY_NAMES, arrays)), class_names=np.array(class_names, dtype=str),
                 source=np.array(source))


def load(path):
    """(arrays, class_names, source) from a cache file, or None when it is missing or damaged.

    Each array in the .npz carries a CRC-32 that is checked on reading, so a damaged file is
    noticed here and simply fetched again.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[name] for name in ARRAY_NAMES)
            return arrays, [str(c) for c in npz["class_names"]], str(npz["source"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        say(f"cache file {path} is damaged ({e}); reading the dataset again")
        return None
