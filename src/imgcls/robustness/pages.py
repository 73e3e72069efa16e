"""Hard pages: MNIST test digits as people also hand them in, three kinds on which the digit finder
(imgcls.digits) had read a fifth to a third of the pictures wrong until 2026-12-08:

- boxed: phone photos (`capture`'s page and camera) of a digit written in a printed box, a form's
  field or a worksheet's square: 0-35% of the digit's size from it (touching it at times), lines
  1-4 px wide, turned up to 3 degrees, cut by the frame at times;
- pencil: faint grainy pencil on paper lit from one side so brightly that part of the page clips to
  white (never the digit's middle), blurred, noisy, saved as JPEG;
- bold: a marker digit cropped tight to its strokes and scanned soft: strokes grown by 1-2 px, the
  crop scaled 3x and blurred by 0.5-2 px, dark on white.

Picture i of a kind depends only on (seed, kind, i), as in the captured set.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from imgcls.robustness.capture import compose, photograph
from imgcls.runs import write_bytes


def boxed(digit, rng):
    """JPEG bytes: a phone photo of `digit` written inside a printed box."""
    scene = compose(digit, rng)
    rows, cols = np.nonzero(scene.ink > 0.1)
    half = max(np.ptp(rows), np.ptp(cols)) * (0.5 + rng.uniform(0, 0.35))
    cy, cx = (rows.max() + rows.min()) / 2, (cols.max() + cols.min()) / 2
    turn = np.deg2rad(rng.uniform(-3, 3))
    corners = [(cx + dx * np.cos(turn) - dy * np.sin(turn), cy + dx * np.sin(turn) + dy * np.cos(turn))
               for dx, dy in ((-half, -half), (half, -half), (half, half), (-half, half))]
    lines = Image.new("L", scene.ink.shape[::-1], 0)
    ImageDraw.Draw(lines).polygon(corners, outline=255, width=int(rng.integers(1, 5)))
    density = np.asarray(lines, np.float32)[..., None] / 255 * rng.uniform(0.5, 0.85)
    scene.rgb[:] = scene.rgb * (1 - density)  # printed ink under the page's own light
    return photograph(scene, rng)


def pencil(digit, rng):
    """JPEG bytes: `digit` in faint grainy pencil on an overexposed page."""
    size = int(rng.integers(80, 200))
    frame = (int(size * rng.uniform(1.3, 2.2)), int(size * rng.uniform(1.3, 2.2)))
    ink = np.zeros(frame, np.float32)
    top, left = int(rng.integers(0, frame[0] - size + 1)), int(rng.integers(0, frame[1] - size + 1))
    ink[top:top + size, left:left + size] = np.asarray(
        Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    grain = np.clip(rng.normal(0.75, 0.3, frame), 0, 1)
    yy, xx = np.mgrid[0:frame[0], 0:frame[1]] / np.array(frame).reshape(2, 1, 1)
    light = 1 - rng.uniform(0, 0.4) * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)  # over 1: clipped
    light /= max(1.0, light[top + size // 2, left + size // 2])  # but never where the digit is
    page = (225 - rng.uniform(35, 80) * ink * grain) * light
    page = ndimage.gaussian_filter(page, rng.uniform(0.5, 1.5)) + rng.normal(0, 3, frame)
    out = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=int(rng.integers(60, 95)))
    return out.getvalue()


def bold(digit, rng):
    """PNG bytes: `digit` in marker, cropped tight to its strokes, scanned soft."""
    pen = np.ones((3, 3)) if rng.random() < 0.5 else ndimage.generate_binary_structure(2, 1)  # 2 px or 1 px
    grown = ndimage.grey_dilation(digit, footprint=pen)
    rows, cols = np.nonzero(grown > 40)
    crop = Image.fromarray(255 - grown[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    scan = crop.resize((crop.width * 3, crop.height * 3), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    scan.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))).save(out, "PNG")
    return out.getvalue()


KINDS = {"boxed": boxed, "pencil": pencil, "bold": bold}


def write_pages_set(x, y, folder, seed=0):
    """Write every kind of picture of each digit to `folder/<kind>/<label>/<index>.<jpg|png>`, index
    being the digit's position in `x`, each file atomically."""
    for number, (kind, make) in enumerate(KINDS.items()):
        for index, (digit, label) in enumerate(zip(x, y)):
            data = make(digit, np.random.default_rng([seed, number, index]))
            suffix = "png" if data.startswith(b"\x89PNG") else "jpg"
            write_bytes(Path(folder) / kind / str(int(label)) / f"{index}.{suffix}", data)
