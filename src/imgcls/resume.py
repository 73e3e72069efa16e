"""Continue an interrupted run where it stopped: `imgcls train --resume RUN`.

After every finished epoch the run folder gets `resume.weights.h5`, written atomically by
RunCheckpoint (train.py): the weights of what is trained (the augmentation wrapper with its model),
the optimizer's variables (its step counter is the learning-rate schedule's position), the states
of the random seed generators (augmentation, dropout), the epochs finished, the training seconds so
far and a digest of the training data. Keras's BackupAndRestore keeps the same state in two files
written in place, so a kill between them resumes from the wrong epoch, and it keeps no seed states.
History and steps come back from history.csv and steps.csv, cut at the epochs the state holds. The
file is removed when the run finishes; a kill loses at most the epoch under way.
"""

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from imgcls.data.lazy import LazyImages
from imgcls.errors import ImgclsError, first_line
from imgcls.runs import atomic_path, read_metrics

STATE_FILE = "resume.weights.h5"
STATE_ENTRY = "imgcls.json"  # an attribute of the HDF5 root, beside Keras's weights
RESUMABLE = ("epochs", "tensorboard", "mlflow")  # what a resume may change: none of it redoes a finished epoch


def run_config_file(run):
    """RUN/config.json, or one line saying why RUN is not a run folder."""
    folder = Path(run)
    if not folder.is_dir():
        raise ImgclsError(f"cannot resume {run}: no such folder")
    if not (folder / "config.json").is_file():
        raise ImgclsError(f"cannot resume {run}: not a run folder (it has no config.json)")
    return folder / "config.json"


def check_resumable(config):
    """Refuse, in one line, to resume a finished run, or with a setting changed other than RESUMABLE
    ones, or with fewer epochs than the run has finished."""
    from imgcls.config import resolve_config

    folder = Path(config.resume)
    saved = resolve_config(config_file=run_config_file(folder))
    metrics = read_metrics(folder / "metrics.json")
    if metrics is not None and metrics.get("interrupted") is False:
        raise ImgclsError(f"cannot resume {folder}: it finished (see its metrics.json); start a new run instead")
    if config.out and Path(config.out) != folder:
        raise ImgclsError(f"--resume {folder} writes into that run folder; give no --out")
    for field in dataclasses.fields(saved):
        key, value = field.name, getattr(saved, field.name)
        if key not in (*RESUMABLE, "out", "resume") and getattr(config, key) != value:
            raise ImgclsError(f"cannot resume {folder} with --{key.replace('_', '-')} {getattr(config, key)!r}: "
                              f"the run has {value!r}; only {', '.join('--' + k for k in RESUMABLE)} may change")
    done = read_state(folder).get("epochs", 0)
    if config.epochs < done:
        raise ImgclsError(f"cannot resume {folder} with --epochs {config.epochs}: it has finished {done} epochs")


def data_digest(x, y):
    """A digest of the training images and labels: a resumed run must go on with the same ones."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (x, y):
        if isinstance(array, LazyImages):  # a folder too big for memory: its files stand for its pixels
            stat = None if hasattr(array, "keys") else os.stat(array.path)
            source = array.keys if stat is None else (stat.st_size, stat.st_mtime_ns)
            digest.update(repr((array.shape, list(array.rows), source)).encode())
            continue
        array = np.ascontiguousarray(array)
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.data)
    return digest.hexdigest()


def seed_states(trainee):
    """The seed generators' state variables: `variables` has them, `weights` (what is saved) has not."""
    weights = {id(w) for w in trainee.weights}
    return [v for v in trainee.variables if id(v) not in weights]


def save_state(trainee, folder, epochs, seconds, data):
    """Write what --resume continues from, in one file, atomically."""
    state = {"epochs": epochs, "seconds": round(seconds, 2), "data": data,
             "seeds": [v.numpy().tolist() for v in seed_states(trainee)]}
    with atomic_path(Path(folder) / STATE_FILE) as tmp:
        trainee.save_weights(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[STATE_ENTRY] = json.dumps(state)


def read_state(folder):
    """The state's description (epochs, seconds, data digest, seeds), {} if the run finished no epoch."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return {}
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs[STATE_ENTRY])
    except (OSError, KeyError, ValueError) as e:
        raise ImgclsError(f"cannot resume from {path}: {first_line(e)}") from None


def check_same_data(folder, data):
    """Refuse to go on with training data other than those the run began with (`data_digest`)."""
    if read_state(folder).get("data", data) != data:
        raise ImgclsError(f"cannot resume {folder}: its training data have changed since it began "
                          f"(the dataset or its data dir)")


def restore_state(trainee, folder):
    """Load the saved state into `trainee` (compiled); returns (epochs, seconds) finished, (0, 0.0)
    when no epoch had finished."""
    state = read_state(folder)
    if not state:
        return 0, 0.0
    trainee.optimizer.build(trainee.trainable_variables)  # so that its saved variables have a place to go
    trainee.load_weights(Path(folder) / STATE_FILE)
    for variable, value in zip(seed_states(trainee), state["seeds"], strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return state["epochs"], state["seconds"]


def finished_rows(path, epochs):
    """The rows of history.csv or steps.csv up to epoch `epochs`, with numbers as numbers."""
    try:
        with open(path, newline="") as f:
            rows = [{k: int(v) if v.isdigit() else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except FileNotFoundError:
        return []
    return [row for row in rows if row["epoch"] <= epochs]
