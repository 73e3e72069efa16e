"""Large folders ("stream"): one epoch of `fast` (batch 64) on a 100,000-image folder whose
decoded images are held in memory, decoded once into the cache (disk) or decoded from the files a
batch at a time (stream); images per second and peak resident memory for each.

Each mode runs in a child process with an empty cache of its own, so that its peak memory is its
own and it starts cold: listing the folder, reading the headers, and (memory, disk) decoding the
images are in its load time. The folder, 32x32 PNGs of 10 classes (a colour each, under noise), is
made once in the cache.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from imgcls.data import cache_dir
from imgcls.data.console import Progress
from imgcls.errors import ImgclsError
from imgcls.runs import atomic_folder

IMAGES, SIDE, CLASSES = 100_000, 32, 10
MODES = ("memory", "disk", "stream")


def synthetic_folder(count=IMAGES, side=SIDE, classes=CLASSES, seed=0):
    """<cache>/bench/folder-<count>-<side>px/<class>/<n>.png, made once (the whole folder appears at once)."""
    folder = cache_dir() / "bench" / f"folder-{count}-{side}px"
    if folder.is_dir():
        return folder
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (classes, 1, 1, 3))
    with atomic_folder(folder) as scratch, Progress(f"making {count} images for the stream bench", count) as bar:
        for label in range(classes):
            (scratch / f"class{label}").mkdir()
        for start in range(0, count, 1000):
            labels = np.arange(start, min(start + 1000, count)) % classes
            noise = rng.integers(-60, 61, (len(labels), side, side, 3))
            for i, (label, pixels) in enumerate(zip(labels, np.clip(colours[labels] + noise, 0, 255).astype(np.uint8))):
                Image.fromarray(pixels).save(scratch / f"class{label}" / f"{start + i:06}.png")
            bar.update(len(labels))
    return folder


def measure(folder, mode):
    """`mode`'s figures, from a child process with an empty cache of its own."""
    with tempfile.TemporaryDirectory(prefix="imgcls-bench-stream-") as home:
        env = {**os.environ, "IMGCLS_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"}
        code = f"from imgcls.bench.stream import child; child({str(folder)!r}, {mode!r}, {home!r})"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImgclsError(f"the {mode} run failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(folder, mode, home):
    """Load `folder` in `mode`, train one epoch of `fast` at the config's own defaults (batch 64; the
    folders' default recipe until 2026-12-07, which the README's figures used), print the figures as JSON."""
    from imgcls.config import TrainConfig
    from imgcls.data import load_dataset
    from imgcls.train import train

    start = time.perf_counter()
    dataset = load_dataset(f"folder:{folder}", cache_mode=mode, progress=False)
    loaded = time.perf_counter()
    config = TrainConfig(dataset=dataset.name, epochs=1, cache_mode=mode, out=os.path.join(home, "run")).validate()
    metrics = train(config, dataset=dataset, progress=False).metrics
    print(json.dumps({
        "mode": mode, "load_seconds": round(loaded - start, 1), "training_seconds": metrics["training_seconds"],
        "images_per_second": round(metrics["train_size"] / metrics["training_seconds"]),
        "total_seconds": round(time.perf_counter() - start, 1), "test_accuracy": metrics["test_accuracy"],
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: kB
    }))


def bench_stream(options):
    """The three modes on the bench folder, one after the other."""
    start = time.perf_counter()
    folder = synthetic_folder()
    made = time.perf_counter() - start
    return {"folder": str(folder), "images": IMAGES, "image_shape": [SIDE, SIDE, 3],
            "decoded_mb": round(IMAGES * SIDE * SIDE * 3 / 1e6),
            "folder_seconds": round(made, 1),  # making the folder; about 0 when it was in the cache
            "modes": [measure(folder, mode) for mode in MODES]}



def print_stream(result):
    print(f"\nLarge folder: {result['images']:,} images of {result['image_shape'][0]}x{result['image_shape'][1]}, "
          f"{result['decoded_mb']} MB decoded; one epoch of fast at batch 64")
    print(f"{'cache mode':10} {'load s':>7} {'train s':>8} {'images/s':>9} {'total s':>8} {'peak MB':>8} {'test acc':>8}")
    for r in result["modes"]:
        print(f"{r['mode']:10} {r['load_seconds']:>7} {r['training_seconds']:>8} {r['images_per_second']:>9} "
              f"{r['total_seconds']:>8} {r['peak_memory_mb']:>8} {r['test_accuracy']:>8.2%}")
