"""One reader and converter for pictures: folder datasets, predict and serve all use it, so training
and prediction see the same pixels from the same file.

Reading is the same for every use: the first frame, upright (EXIF orientation), 16-bit pixels
scaled to 8 bits, transparency flattened onto a background that contrasts with the visible pixels
(a black digit on a transparent canvas lands on white, a white stroke on black).

Conversion then depends on what the model was trained on (its dataset's prediction style):

- "digits" (mnist): the digit is found on the page (uneven light, ruled lines, the table's edge,
  specks and the pen's width dealt with) and drawn as MNIST's are: light on black, fitting 20x20,
  centred by mass in 28x28 (imgcls.digits).
- "objects" (fashion_mnist): a light garment on black, as above, but its bounding box scaled to
  fill the whole frame and centred, as Fashion-MNIST's products were; the digit rules do not apply.
- "plain" (anything else, or preprocess=False): the model's colour mode and size only.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgcls.errors import ImgclsError
from imgcls.digits import frame_border, to_mnist

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
WORKING_SIZE = 1024  # the digit and object conventions need no more detail than this; it bounds their memory


class ImageTooLarge(ImgclsError):
    """An image whose header declares more pixels than allowed (a decompression bomb, maybe)."""


def open_image(source, name=None, max_pixels=None):
    """Decode the first frame of an image file (a path or a binary file object), upright, as 8-bit
    "L" or "RGB" pixels (see `to_8bit`).

    With `max_pixels`, an image whose header declares more is refused before anything is decoded.
    """
    name = str(name or source)
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        raise ImgclsError(f"{name} is a folder, not an image file")
    try:
        with Image.open(source) as image:
            if max_pixels and image.width * image.height > max_pixels:
                raise ImageTooLarge(f"{name} is {image.width}x{image.height} pixels, "
                                    f"over the limit of {max_pixels:,}")
            image.load()
            return to_8bit(ImageOps.exif_transpose(image))  # a detached copy, upright
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


def declared_pixels(source):
    """Width x height from an image file's header, without decoding it (0 if it is not an image:
    reading it properly will say so)."""
    try:
        with Image.open(source) as image:
            return image.width * image.height
    except Exception:  # Pillow raises many types for files that are not images
        return 0


def to_8bit(image):
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
    """Convert a PIL image to a model's input (uint8 pixels of `input_shape`) in the given style."""
    height, width = input_shape[:2]
    channels = input_shape[2] if len(input_shape) == 3 else 1
    image = to_8bit(image).convert("L" if channels == 1 else "RGB")
    if style == "plain":
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    else:
        if max(image.size) > WORKING_SIZE:  # never below one pixel a side: a 3000x1 picture stays a line
            scale = WORKING_SIZE / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.BILINEAR)
        if style == "digits":
            pixels = to_mnist(np.asarray(image.convert("L")), (height, width))
        elif image.size == (width, height) and np.median(frame_border(np.asarray(image))) <= 10:
            # Already light on black at the model's size, as Fashion-MNIST draws clothes: cropping at
            # place_ink's threshold would cut off dark sleeves and hems (0.9 point on its test set).
            pixels = np.asarray(image, dtype=np.uint8)
        else:
            pixels = place_ink(light_on_dark(np.asarray(image, dtype=np.float32)), (height, width),
                               box=min(height, width), by_mass=False)
    return pixels.reshape(input_shape)


def light_on_dark(grey):
    """Light ink on black with the ink's peak at 255, as in MNIST and Fashion-MNIST: pictures whose
    border is mostly light are inverted, and the background's level is subtracted."""
    border = frame_border(grey)
    if np.median(border) > 127:
        grey, border = 255 - grey, 255 - border
    ink = np.clip(grey - np.median(border), 0, None)
    peak = ink.max()
    return ink * (255 / peak) if peak > 0 else ink


def place_ink(ink, shape, box, by_mass):
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
