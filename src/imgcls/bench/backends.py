"""Backends: the default MNIST recipe under each Keras backend, each in a process of its own (Keras picks
its backend once, when it is imported): seconds to 99% test accuracy and training images per second.
A backend that is not installed is reported as such, not measured."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from imgcls.config import BACKENDS

TARGET = 0.99
CHILD = "import sys; from imgcls.bench.backends import measure_here; measure_here(sys.argv[1])"


def bench_backends(options):
    """{backend: the default recipe's time_to_accuracy record, or why it has none}."""
    results = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            results[backend] = {"skipped": f"not installed (pip install 'imgcls[{backend}]')"}
            continue
        print(f"\n== {backend} backend, in a process of its own")
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "result.json"
            child = subprocess.run([sys.executable, "-c", CHILD, str(out)],
                                   env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
            results[backend] = json.loads(out.read_text()) if child.returncode == 0 else {
                "skipped": f"failed with exit code {child.returncode} (its output is above)"}
    return results


def measure_here(out):
    """In the child process: train the default recipe under this process's backend, write the record."""
    from imgcls.bench.speed import time_to_accuracy
    from imgcls.data import load_dataset
    from imgcls.runs import write_json

    write_json(out, time_to_accuracy(load_dataset("mnist"), "default", TARGET)[0])


def print_backends(results):
    print(f"\nDefault recipe on MNIST by backend   {'s to 99%':>9} {'final acc':>9} {'train s':>8} {'images/s':>9}")
    for backend, row in results.items():
        if "skipped" in row:
            print(f"  {backend:34} {row['skipped']}")
        else:
            reached = "not reached" if row["seconds_to_target"] is None else f"{row['seconds_to_target']:.1f}"
            print(f"  {backend:34} {reached:>9} {row['final_accuracy']:>9.2%} {row['training_seconds']:>8.1f} "
                  f"{row['train_images_per_second']:>9.0f}")


def backends_line(results):
    """The part's last line, for scripts: backends tensorflow_s=... jax_s=... torch_s=... (seconds to
    99%; none where a backend is not installed or failed, never where it did not reach 99%)."""
    def seconds(row):
        if "skipped" in row:
            return "none"
        return "never" if row["seconds_to_target"] is None else f"{row['seconds_to_target']:.1f}"
    return "backends " + " ".join(f"{backend}_s={seconds(row)}" for backend, row in results.items())
