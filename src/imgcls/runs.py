"""The run folder: its name, the environment it records, and atomic writes of every file in it,
so that a crash never leaves half a model or half a metrics file."""

import contextlib
import fcntl
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from imgcls.errors import ImgclsError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; flush it to disk and rename it onto `path` only if the
    block succeeds, so readers see the old file or the whole new one, even after a power cut."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The whole extension: Keras saves weights only to names ending in .weights.h5.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; artifacts are ordinary files
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a new empty sibling of folder `path`; if the block succeeds, flush its files and rename
    it onto `path` (an old folder is renamed away first, then removed), else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: its folders are private, and an export is an ordinary folder
    old = None
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb+") as f:
                    os.fsync(f.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old)  # onto an empty folder: allowed, and atomic
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj):
    """Standard JSON only: NaN or infinity (a diverged run) is an error here, not an unreadable file."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def short_name(name):
    """A dataset name fit for a folder name: "folder:~/photos/cats" -> "cats"."""
    if name.startswith("folder:"):
        name = Path(name[len("folder:"):]).name
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")


def new_run_folder(dataset, model, root="runs"):
    """A new, empty runs/<dataset>-<model>-<timestamp>[-N]/ that no other run is using."""
    stem = f"{short_name(dataset)}-{model}-{datetime.now():%Y%m%d-%H%M%S}"
    for suffix in range(1, 10_000):
        folder = Path(root) / (stem if suffix == 1 else f"{stem}-{suffix}")
        try:
            folder.mkdir(parents=True)  # exclusive: two runs started in the same second get two folders
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name for {Path(root) / stem}")


@contextlib.contextmanager
def hold_run_folder(folder, overwrite=False):
    """Own `folder` for one run: refuse a folder that already holds a run (unless `overwrite`) or
    that another run is writing into, hold a lock while this run writes, and clear the temporary
    files a killed run may have left (atomic writes name them .<file>.<random>)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ImgclsError(f"run folder {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImgclsError(f"another run is writing into {folder}; choose another folder") from None
        if (folder / "config.json").exists() and not overwrite:
            raise ImgclsError(f"{folder} already holds a run; choose another folder, or overwrite it (--overwrite)")
        for leftover in folder.glob(".?*.*"):
            if leftover.name != ".lock" and leftover.is_file():
                leftover.unlink()
        try:
            yield folder
        finally:
            (folder / ".lock").unlink(missing_ok=True)


def read_metrics(model_path):
    """The run's metrics.json beside a model file (or beside the export/ folder holding it), or None."""
    folder = Path(model_path).parent
    try:
        return json.loads((folder.parent if folder.name == "export" else folder).joinpath("metrics.json").read_text())
    except (OSError, ValueError):
        return None


def environment():
    """Backend and library versions, recorded with every result so figures can be compared."""
    import keras

    backend = keras.backend.backend()
    versions = {"python": platform.python_version()}
    distributions = {"keras": ("keras",), "numpy": ("numpy",), "tensorflow": ("tensorflow-cpu", "tensorflow"),
                     "jax": ("jax",), "torch": ("torch",)}
    for name, candidates in distributions.items():
        if name not in ("keras", "numpy", backend):
            continue
        for distribution in candidates:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[name] = importlib.metadata.version(distribution)
                break
    return {"backend": backend, "versions": versions}
