"""Predict classes of real-world pictures with a saved model: files in, classes out.

Pictures are read and converted by imgcls.images, in the style of the model's training dataset.
"""

import csv
import glob
import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imgcls.data import prediction_style
from imgcls.data.lazy import THREADS
from imgcls.errors import ImgclsError, InvalidValue
from imgcls.images import IMAGE_SUFFIXES, open_image, to_model_input
from imgcls.runs import write_text
from imgcls.views import ViewAveraged

BATCH_SIZE = 256  # images read (by THREADS threads), converted and predicted at a time: bounds memory for big folders


def expand_inputs(inputs):
    """Paths to predict, in order: files as given, folders as the image files inside (recursively,
    sorted), glob patterns as their sorted matches. A named file is tried whatever its suffix."""
    paths = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise ImgclsError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
            paths += found
        elif not path.exists() and glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise ImgclsError(f"no files match {item}")
            paths += found
        else:
            paths.append(path)
    return paths


def style_for(dataset, input_shape, preprocess=True):
    """Which conversion a model needs: its dataset's style for greyscale models, else "plain"."""
    greyscale = len(input_shape) == 2 or input_shape[2] == 1
    return prediction_style(dataset) if preprocess and greyscale else "plain"


def check_top_k(value):
    """`value` as a whole number of at least 1, or an ImgclsError: for the CLI and the service alike."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InvalidValue("top_k", f"must be a whole number of at least 1, got {value!r}")
    return int(value)


def top_classes(probs, class_names, k):
    """The k most probable classes, best first (all of them if there are fewer)."""
    order = np.argsort(-probs)[:k]
    return [{"class": class_names[i], "probability": round(float(probs[i]), 6)} for i in order]


def measured_views(metadata, source):
    """How many test-time views the model was measured with (imgcls train --tta), or None."""
    views = metadata.get("tta_views")
    if views not in (None, 2, 6):
        raise ImgclsError(f"{source}: its metadata's tta_views is not 2 or 6: {views!r}")
    return views


def views_for_tta(metadata, source):
    """The test-time views `--tta` averages: those the model was measured with, so its predictions
    are as accurate as the run's test_accuracy_tta; an ImgclsError for a model that was not, since a
    digit model, say, has never seen its mirror images."""
    views = measured_views(metadata, source)
    if views is None:
        raise ImgclsError(f"{source} was not trained with test-time augmentation (imgcls train --tta), so "
                          "its views are unknown and may mislead it (a mirrored digit is no digit); leave out --tta")
    return views


def with_tta(model, metadata, source):
    """`model` averaging its predictions over the views `--tta` asks for (views_for_tta)."""
    return ViewAveraged(model, views_for_tta(metadata, source))


def predict_arrays(model, class_names, batch, top_k=3):
    """Top-k classes for each row of a uint8 batch. predict_on_batch, unlike predict, has no
    per-call set-up: milliseconds instead of ~50 ms for a few images."""
    return [top_classes(p, class_names, top_k) for p in np.asarray(model.predict_on_batch(batch))]


def predict_files(model, class_names, inputs, top_k=3, *, dataset=None, preprocess=True):
    """[{"file", "top": [{"class", "probability"}, ...]}] per image, in order, for files, folders and
    globs. A file that cannot be read gets {"file", "error"} instead and the others still get results;
    only when no file at all can be read is that an ImgclsError (a single bad file: one clear line)."""
    top_k = check_top_k(top_k)
    input_shape = tuple(model.input_shape[1:])
    style = style_for(dataset, input_shape, preprocess)
    paths = expand_inputs(inputs)

    def read(result):
        try:
            return to_model_input(open_image(result["file"]), input_shape, style)
        except ImgclsError as e:
            result["error"] = str(e)

    results = []
    with ThreadPoolExecutor(THREADS) as pool:
        for start in range(0, len(paths), BATCH_SIZE):
            chunk = [{"file": str(path)} for path in paths[start:start + BATCH_SIZE]]
            rows = [pixels for pixels in pool.map(read, chunk) if pixels is not None]
            if rows:
                readable = [r for r in chunk if "error" not in r]
                for result, top in zip(readable, predict_arrays(model, class_names, np.stack(rows), top_k)):
                    result["top"] = top
            results += chunk
    errors = [r["error"] for r in results if "error" in r]
    if len(errors) == len(results):
        raise ImgclsError(errors[0] if len(errors) == 1 else
                          f"none of the {len(errors)} images could be read: {errors[0]}; ...")
    return results


def format_table(results):
    """One line per image: its top classes with percentages, or why it could not be read."""
    lines = []
    for result in results:
        if "error" in result:
            lines.append(f"{result['file']}: cannot read: {result['error']}")
        else:
            lines.append(f"{result['file']}: " + "  ".join(f"{t['class']} {t['probability']:.1%}"
                                                           for t in result["top"]))
    return "\n".join(lines)


def results_csv(results):
    """CSV text: file, class_1, probability_1, ..., class_k, probability_k, error."""
    k = max((len(r.get("top", [])) for r in results), default=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", *[f"{c}_{i}" for i in range(1, k + 1) for c in ("class", "probability")], "error"])
    for result in results:
        cells = [x for t in result.get("top", []) for x in (t["class"], t["probability"])]
        writer.writerow([result["file"], *cells, *[""] * (2 * k - len(cells)), result.get("error", "")])
    return out.getvalue()


def write_csv(path, results):
    """Write `results_csv` atomically: a half-written file never replaces a complete one."""
    write_text(path, results_csv(results))
