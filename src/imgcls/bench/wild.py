"""Robustness ("wild"): how a digit model reads the pictures people give it, not MNIST's test set.

For each model, seven rows beside the clean MNIST test accuracy:
- MNIST-C: the 15 corruptions of Mu & Gilmer (2019) applied to the whole test set, fed as arrays;
- captured: test digits as phone photos of paper (imgcls.robustness.capture), saved as JPEG files
  and read back through `imgcls predict`'s own path (files in, classes out);
- drawn: test digits traced as mouse strokes on `imgcls serve`'s page in headless Chromium
  (imgcls.robustness.drawn), read from the page's own /predict answers;
- writers: real handwriting by other writers than MNIST's (scikit-learn's copy of the UCI digits),
  as PNG files read through `imgcls predict`;
- hand fonts: the ten digits in typefaces digitised from fifteen people's handwriting
  (imgcls.robustness.handfonts; where Debian's fonts are installed), read the same way;
- pages: test digits in a printed box on phone photos, in faint pencil on overexposed paper, and in
  bold marker cropped tight and scanned soft (imgcls.robustness.pages), read the same way.
MNIST-C, captured, drawn and pages are made from MNIST's test digits with fixed seeds; every set is
cached beside the datasets.
"""

import dataclasses
import hashlib
import inspect
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls.config import resolve_config
from imgcls.data import cache_dir, load_dataset
from imgcls.errors import ImgclsError
from imgcls.predict import predict_files
from imgcls.robustness import capture, corruptions, handfonts, pages
from imgcls.robustness.capture import write_captured_set
from imgcls.robustness.corruptions import CORRUPTIONS, mnist_c
from imgcls.runs import atomic_folder, atomic_path
from imgcls.saving import load_model, resolve_model_path

SEED = 0
CAPTURED = 2000  # test digits 0..1999 photographed: about +-0.4 points of sampling noise at 97%
DRAWN = (5000, 200)  # first test digit drawn, and how many: a different slice from the captured ones
PAGES = (2000, 500)  # first test digit on the hard pages, and how many (each kind): another slice
PRESETS = ("seed", "default", "best")  # trained and measured when no --run is given


def made_by(module):
    """A short digest of the module that makes a cached set: a changed generator makes a new set,
    where a cache named by seed alone kept serving pictures an older draft had made."""
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:8]


def corrupted_sets(x_test, seed=SEED):
    """{corruption: images} of the whole test set, made once and cached."""
    path = cache_dir() / "robustness" / f"mnist_c-seed{seed}-{made_by(corruptions)}.npz"
    if path.is_file():
        with np.load(path) as npz:
            if set(npz.files) == set(CORRUPTIONS):
                return {name: npz[name] for name in CORRUPTIONS}
    sets = mnist_c(x_test, seed=seed)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **sets)
    return sets


def made_once(name, write):
    """The cached set folder `name`, made by write(folder) the first time it is asked for; the whole
    set appears at once, or not at all."""
    folder = cache_dir() / "robustness" / name
    if not folder.is_dir():
        with atomic_folder(folder) as scratch:
            write(scratch)
    return folder


def captured_folder(x_test, y_test, seed=SEED, count=CAPTURED):
    """A folder of `count` captured pictures, <label>/<index>.jpg, made once and cached whole."""
    return made_once(f"captured-seed{seed}-{count}-{made_by(capture)}",
                     lambda folder: write_captured_set(x_test[:count], y_test[:count], folder, seed=seed))


def pages_folder(x_test, y_test, seed=SEED, first=PAGES[0], count=PAGES[1]):
    """The hard pages, <kind>/<label>/<index>.<jpg|png>, made once and cached whole."""
    digits, labels = x_test[first:first + count], y_test[first:first + count]
    return made_once(f"pages-seed{seed}-{first}-{count}-{made_by(pages)}",
                     lambda folder: pages.write_pages_set(digits, labels, folder, seed=seed))


def writers_folder():
    """Handwriting by other writers than MNIST's: scikit-learn's copy of the UCI optical digits
    (1,797 digits, 8x8 at 17 grey levels), each scaled up to 64x64 and saved as a PNG of dark ink
    on white, as a scan cropped to the digit would be; made once and cached whole."""
    from sklearn.datasets import load_digits

    def write(folder):
        digits = load_digits()
        for index, (image, label) in enumerate(zip(digits.images, digits.target)):
            ink = Image.fromarray((255 - image * 255 / 16).astype(np.uint8))
            path = folder / str(int(label)) / f"{index}.png"
            path.parent.mkdir(exist_ok=True)
            ink.resize((64, 64), Image.Resampling.BICUBIC).save(path)
    return made_once("writers-uci", write)


def hand_fonts_folder(root=handfonts.FONT_ROOT):
    """The hand-font digits of the fonts installed under `root`, made once and cached whole; None
    (and a line saying how to install them) where there are none."""
    fonts = handfonts.installed(root)
    if not fonts:
        print(f"hand fonts: skipped, none installed (apt-get install {' '.join(handfonts.PACKAGES)})")
        return None
    which = hashlib.sha256(" ".join(f"{p.name}:{p.stat().st_size}" for p in fonts).encode()).hexdigest()[:8]
    return made_once(f"handfonts-{which}-{made_by(handfonts)}",
                     lambda folder: handfonts.write_font_digits(fonts, folder))


def accuracy_on_files(model, metadata, folder):
    """Accuracy of `imgcls predict` on folder/<label>/*: the label is each file's folder name."""
    results = predict_files(model, metadata["class_names"], [folder], dataset=metadata.get("dataset"))
    return float(np.mean([r.get("top", [{}])[0].get("class") == Path(r["file"]).parent.name for r in results]))


def accuracy_drawn(model_file, x_test, y_test, first=DRAWN[0], count=DRAWN[1], seed=SEED):
    """Accuracy of the served page on digits drawn in headless Chromium; None where Chromium is absent."""
    from imgcls.bench.load import free_port, start_server
    from imgcls.robustness.drawn import CHROMIUM, read_drawn

    if not Path(CHROMIUM).exists():
        print(f"drawn: skipped, no Chromium at {CHROMIUM}")
        return None
    port = free_port()
    server = start_server(model_file, port)
    try:
        digits, labels = x_test[first:first + count], y_test[first:first + count]
        return read_drawn(f"http://127.0.0.1:{port}", digits, labels, seed=seed)["accuracy"]
    finally:
        server.terminate()
        server.wait(30)


def measure(model_file, mnist, corrupted, captured, fonts, hard_pages):
    """The robustness rows of one saved model."""
    model, metadata, _ = load_model(model_file)
    if metadata.get("dataset") != "mnist":
        raise ImgclsError(f"{model_file} was trained on {metadata.get('dataset')}; the wild bench is for MNIST models")

    def accuracy(x, y):
        return float(np.mean(np.asarray(model.predict(x, batch_size=1024, verbose=0)).argmax(1) == y))

    per_corruption = {name: round(accuracy(images, mnist.y_test), 4) for name, images in corrupted.items()}
    per_page = {kind: round(accuracy_on_files(model, metadata, hard_pages / kind), 4) for kind in pages.KINDS}
    return {"clean": round(accuracy(mnist.x_test, mnist.y_test), 4),
            "mnist_c_mean": round(float(np.mean(list(per_corruption.values()))), 4),
            "captured": round(accuracy_on_files(model, metadata, captured), 4),
            "writers": round(accuracy_on_files(model, metadata, writers_folder()), 4),
            "drawn": _rounded(accuracy_drawn(model_file, mnist.x_test, mnist.y_test)),
            "fonts": None if fonts is None else round(accuracy_on_files(model, metadata, fonts), 4),
            "pages": round(float(np.mean(list(per_page.values()))), 4),
            "mnist_c": per_corruption, "pages_kinds": per_page}


def _rounded(value):
    return None if value is None else round(value, 4)


def bench_wild(options):
    """Measure `options["run"]`, or train the seed, default and best recipes and measure each."""
    mnist = load_dataset("mnist")
    corrupted = corrupted_sets(mnist.x_test)
    captured = captured_folder(mnist.x_test, mnist.y_test)
    fonts = hand_fonts_folder()
    hard_pages = pages_folder(mnist.x_test, mnist.y_test)
    sets = (mnist, corrupted, captured, fonts, hard_pages)
    if options.get("run"):
        name = str(options["run"])
        return {"measured": name, "rows": {name: measure(resolve_model_path(name), *sets)}}
    from imgcls.train import train

    rows = {}
    for preset in PRESETS:
        with tempfile.TemporaryDirectory(prefix=f"wild-{preset}-", ignore_cleanup_errors=True) as folder:
            config = dataclasses.replace(resolve_config(preset=preset), out=folder)
            print(f"\n== wild: training the {preset} recipe ({config.model}, {config.epochs} epochs)")
            run = train(config, dataset=mnist, progress=False)
            rows[preset] = {**measure(Path(folder) / "model.keras", *sets),
                            "model": config.model, "training_seconds": run.metrics["training_seconds"]}
    return {"measured": "default", "rows": rows}


def print_wild(result):
    print(f"\nRobustness (fractions correct)   {'clean':>7} {'MNIST-C':>8} {'captured':>9} {'drawn':>7} {'writers':>8} "
          f"{'fonts':>7} {'pages':>7}")
    for name, row in result["rows"].items():
        drawn, fonts = ("-" if row.get(k) is None else f"{row[k]:.4f}" for k in ("drawn", "fonts"))
        print(f"  {name:30} {row['clean']:>7.4f} {row['mnist_c_mean']:>8.4f} {row['captured']:>9.4f} {drawn:>7} "
              f"{row['writers']:>8.4f} {fonts:>7} {row['pages']:>7.4f}")
    for name, row in result["rows"].items():
        print(f"  MNIST-C per corruption ({name}): " + ", ".join(f"{k} {v:.3f}" for k, v in row["mnist_c"].items()))
        print(f"  pages per kind ({name}): " + ", ".join(f"{k} {v:.3f}" for k, v in row["pages_kinds"].items()))


def wild_line(result):
    """The part's last line, for scripts: wild clean=... mnist_c_mean=... captured=... drawn=... writers=...
    fonts=... pages=..."""
    rows = result["rows"]
    row = rows.get(result["measured"]) or next(iter(rows.values()))
    return "wild " + " ".join(f"{k}={'none' if row.get(k) is None else f'{row[k]:.4f}'}"
                              for k in ("clean", "mnist_c_mean", "captured", "drawn", "writers", "fonts", "pages"))
