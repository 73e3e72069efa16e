"""Predict classes of real-world pictures with a saved model: read, convert to what the model expects, rank.

Reading is the same for every model: the first frame, upright (EXIF orientation), 16-bit pixels
scaled to 8 bits, transparency flattened onto a background that contrasts with the visible pixels
(a black digit on a transparent canvas lands on white, a white stroke on black).

Conversion then depends on what the model was trained on (its metadata's dataset):

- "digits" (mnist): the MNIST convention. A light digit on a black background (dark-on-light
  pictures, judged by their border, are inverted and the paper's grey removed), its bounding box
  scaled to fit 20x20 keeping its aspect ratio, placed in 28x28 with its centre of mass in the middle.
- "objects" (fashion_mnist): a light garment on black, as above, but its bounding box scaled to
  fill the whole frame and centred, as Fashion-MNIST's products were; the digit rules do not apply.
- "plain" (anything else, or preprocess=False): the model's colour mode and size only.
"""

import csv
import glob
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgcls.artifacts import write_text
from imgcls.errors import ImgclsError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BATCH_SIZE = 256  # images read, converted and predicted at a time: bounds memory for big folders
WORKING_SIZE = 1024  # the MNIST conventions need no more detail than this; it bounds their memory
STYLES = {"mnist": "digits", "fashion_mnist": "objects"}


class ImageTooLarge(ImgclsError):
    """An image whose header declares more pixels than allowed (a decompression bomb, maybe)."""


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


def open_image(source, name=None, max_pixels=None):
    """Decode the first frame of an image file (a path or a binary file object), upright, as 8-bit
    "L" or "RGB" pixels (see `flatten`).

    With `max_pixels`, an image whose header declares more is refused before anything is decoded.
    """
    name = str(name or source)
    try:
        with Image.open(source) as image:
            if max_pixels and image.width * image.height > max_pixels:
                raise ImageTooLarge(f"{name} is {image.width}x{image.height} pixels, "
                                    f"over the limit of {max_pixels:,}")
            image.load()
            return flatten(ImageOps.exif_transpose(image))  # a detached copy, upright
    except ImgclsError:
        raise
    except FileNotFoundError:
        raise ImgclsError(f"image not found: {name}") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{name}: {e}") from None
    except Image.UnidentifiedImageError:
        raise ImgclsError(f"{name} is not an image file Pillow can read") from None
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for broken files
        raise ImgclsError(f"cannot read image {name}: {e}") from None


def read_image(path):
    """Open an image file fully, or explain in one line why it cannot be read."""
    if Path(path).is_dir():
        raise ImgclsError(f"{path} is a folder, not an image file")
    return open_image(path)


def style_for(dataset, input_shape, preprocess=True):
    """Which conversion a model needs: "digits", "objects" or "plain" (see the module docstring)."""
    greyscale = len(input_shape) == 2 or input_shape[2] == 1
    name = (dataset or "").lower().replace("-", "_")
    return STYLES.get(name, "plain") if preprocess and greyscale else "plain"


def flatten(image):
    """8-bit "L" or "RGB" pixels: high bit depths scaled down, transparency composited."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.max() > 255:  # 16-bit samples
            pixels = pixels / 257
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        return _composite(image.convert("RGBA"))
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def _composite(rgba):
    """Flatten onto white, or onto black when the visible pixels are light, so the ink stays visible."""
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
    luminance = np.asarray(rgba.convert("L"), dtype=np.float64)
    light_ink = (alpha * luminance).sum() > 127 * alpha.sum() and alpha.sum() > 0
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if light_ink else (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_model_input(image, input_shape, style="plain"):
    """Convert a PIL image to the model's input (uint8 pixels of `input_shape`) in the given style."""
    height, width = input_shape[:2]
    channels = input_shape[2] if len(input_shape) == 3 else 1
    image = flatten(image).convert("L" if channels == 1 else "RGB")
    if style == "plain":
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    else:
        if max(image.size) > WORKING_SIZE:
            image = ImageOps.contain(image, (WORKING_SIZE, WORKING_SIZE))
        ink = light_on_dark(np.asarray(image, dtype=np.float32))
        if style == "digits":
            pixels = fit(ink, (height, width), box=round(min(height, width) * 20 / 28), by_mass=True)
        else:
            pixels = fit(ink, (height, width), box=min(height, width), by_mass=False)
    return pixels.reshape(input_shape)


def light_on_dark(grey):
    """Light ink on black with the ink's peak at 255, as in MNIST and Fashion-MNIST: pictures whose
    border is mostly light are inverted, and the background's level is subtracted."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:
        grey, border = 255 - grey, 255 - border
    ink = np.clip(grey - np.median(border), 0, None)
    peak = ink.max()
    return ink * (255 / peak) if peak > 0 else ink


def fit(ink, shape, box, by_mass):
    """Crop to the ink's bounding box, scale it to fit box x box keeping its aspect ratio, and place
    it in a black frame of `shape` centred by its centre of mass (`by_mass`) or by its box."""
    frame = np.zeros(shape, dtype=np.uint8)
    rows = np.flatnonzero((ink > 51).any(axis=1))  # 20% of full ink: faint noise does not widen the box
    cols = np.flatnonzero((ink > 51).any(axis=0))
    if rows.size == 0:
        return frame
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = box / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))
    h, w = small.shape
    if by_mass and small.any():
        ys, xs = np.indices(small.shape)
        cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    top = int(np.clip(round((shape[0] - 1) / 2 - cy), 0, shape[0] - h))
    left = int(np.clip(round((shape[1] - 1) / 2 - cx), 0, shape[1] - w))
    frame[top:top + h, left:left + w] = small
    return frame


def top_classes(probs, class_names, k):
    """The k most probable classes, best first (all of them if there are fewer)."""
    order = np.argsort(-probs)[:k]
    return [{"class": class_names[i], "probability": round(float(probs[i]), 6)} for i in order]


def predict_arrays(model, class_names, batch, top_k=3):
    """Top-k classes for each row of a uint8 batch. predict_on_batch, unlike predict, has no
    per-call set-up: milliseconds instead of ~50 ms for a few images."""
    return [top_classes(p, class_names, top_k) for p in np.asarray(model.predict_on_batch(batch))]


def predict_images(model, class_names, images, top_k=3, style="plain"):
    """Top-k classes with probabilities for each PIL image, BATCH_SIZE images per model call."""
    input_shape = tuple(model.input_shape[1:])
    results = []
    for start in range(0, len(images), BATCH_SIZE):
        batch = np.stack([to_model_input(im, input_shape, style) for im in images[start:start + BATCH_SIZE]])
        results += predict_arrays(model, class_names, batch, top_k)
    return results


def predict_files(model, class_names, inputs, top_k=3, *, dataset=None, preprocess=True):
    """[{"file", "top": [{"class", "probability"}, ...]}] per image, in order, for files, folders and
    globs. A file that cannot be read gets {"file", "error"} instead and the others still get results;
    only when no file at all can be read is that an ImgclsError (a single bad file: one clear line)."""
    input_shape = tuple(model.input_shape[1:])
    style = style_for(dataset, input_shape, preprocess)
    paths = expand_inputs(inputs)
    results = []
    for start in range(0, len(paths), BATCH_SIZE):
        chunk = [{"file": str(path)} for path in paths[start:start + BATCH_SIZE]]
        rows = []
        for result in chunk:
            try:
                rows.append(to_model_input(read_image(result["file"]), input_shape, style))
            except ImgclsError as e:
                result["error"] = str(e)
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
