"""Captured digits: MNIST test digits as the phone photos people take of a digit written on paper.

A clean MNIST digit (light ink on black, 28x28) says little about how a digit model copes with a
user's picture: dark ink on off-white paper, uneven light, a pen of any width, a tilted and
off-centre digit in a larger frame, ruled paper, the table at the edge, blur, noise and JPEG. This
module draws all of those at random from an rng, so a set is the same for the same seed, while
keeping the digit readable: ink stays darker than anything else on the page, lines stay faint, blur
stays below the pen's width.

The picture is built in two steps, each its own function: `compose` lays out the lit page (paper,
lines, ink, table, light) and `photograph` is the camera (blur, noise, sharpening, JPEG).
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from skimage.morphology import skeletonize

from imgcls.runs import write_bytes

# Ranges drawn from per picture; a pair is (low, high), drawn uniformly unless its comment says log.
FRAME_PX = (64, 400)  # frame side in pixels, log-uniform: thumbnails to small phone crops
ASPECT = (0.75, 1.33)  # width / height of a non-square frame: 3:4 portrait to 4:3 landscape
SQUARE_P = 0.3  # share of square frames (chat apps and crops)
SPAN = (0.3, 0.9)  # the digit's longer side / the frame's shorter side, before rotation
MAX_TILT_DEG = 20.0  # the digit's rotation either way
STROKE = (0.035, 0.2)  # pen width / digit height, log-uniform: fine ballpoint to marker
MIN_STROKE_PX = 1.4  # thinner strokes vanish under blur and JPEG on small frames
INKS = {  # sRGB colour, chance, ink density range (the share of light the stroke absorbs)
    "black": ((0.07, 0.07, 0.09), 0.35, (0.85, 1.0)),
    "blue": ((0.09, 0.15, 0.46), 0.35, (0.85, 1.0)),
    "red": ((0.47, 0.07, 0.10), 0.10, (0.85, 1.0)),
    "pencil": ((0.20, 0.20, 0.23), 0.20, (0.65, 0.85)),
}
PAPER_LUMA = (0.82, 0.97)  # brightness of the paper before lighting
RULED_P, GRID_P = 0.25, 0.12  # chance of ruled notebook lines, of a squared grid
LINE_OPACITY = (0.18, 0.45)  # faint, so a line through the digit never reads as a stroke
TABLE_P = 0.25  # chance of the paper's edge with the table beyond it at one border
SHADOW_P = 0.3  # chance of a soft shadow (hand, phone) across part of the page
BLUR_SIGMA = (0.2, 1.1)  # defocus in pixels, also capped by the pen's width
MOTION_P = 0.25  # chance of slight motion blur
NOISE_SIGMA = (0.003, 0.02)  # sensor read noise, in units of full scale (after the phone denoises)
SHARPEN_P = 0.4  # phones often sharpen; it leaves halos around strokes
JPEG_QUALITY = (30, 95)


@dataclass
class Scene:
    """The lit page before the camera, and where the digit's ink lies on it (for checks)."""

    rgb: np.ndarray  # (height, width, 3) float32 in [0, 1]
    ink: np.ndarray  # (height, width) float32 in [0, 1]: how much of each pixel the ink covers
    stroke: float  # the pen's width in pixels: the camera's blur must stay below it


def capture(digit, rng):
    """A photo-like RGB picture of `digit` (light on black, uint8) written on paper: exactly what
    `capture_jpeg`'s bytes decode to, so it is what a reader of the saved file sees."""
    with Image.open(io.BytesIO(capture_jpeg(digit, rng))) as image:
        return image.convert("RGB")


def capture_jpeg(digit, rng):
    """The JPEG file's bytes of a captured picture of `digit`."""
    return photograph(compose(digit, rng), rng)


def write_captured_set(x, y, folder, seed=0):
    """Write one captured JPEG per digit to `folder/<label>/<index>.jpg`, where index is the digit's
    position in `x`, and return [(path, label)]. Picture i depends only on (seed, i), so a subset or
    a longer set agrees with the full one. Each file is written atomically."""
    folder = Path(folder)
    written = []
    for index, (digit, label) in enumerate(zip(x, y)):
        path = folder / str(int(label)) / f"{index}.jpg"
        write_bytes(path, capture_jpeg(digit, np.random.default_rng([seed, index])))
        written.append((path, int(label)))
    return written


def compose(digit, rng):
    """The page as light leaves it: paper, maybe lines, the ink, maybe the table, uneven light."""
    height, width = _frame_shape(rng)
    coverage, digit_height, pen = _ink_coverage(digit, height, width, rng)
    top = _place(height, coverage.shape[0], rng)
    left = _place(width, coverage.shape[1], rng)
    box = np.s_[top : top + coverage.shape[0], left : left + coverage.shape[1]]
    ink = np.zeros((height, width), np.float32)
    ink[box] = coverage

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ink_color, density, ink_luma = _ink(rng, coverage.shape, digit_height)
    rgb = _lines(_paper(rng, ink.shape), yy, xx, digit_height, rng)
    alpha = (coverage * density)[..., None]
    rgb[box] = rgb[box] * (1 - alpha) + ink_color * alpha
    rgb = _table(rgb, yy, xx, ink, ink_luma, rng)
    rgb = rgb * _lighting(yy, xx, rng)
    return Scene(np.clip(rgb, 0, 1).astype(np.float32), ink, 2 * pen)


def photograph(scene, rng):
    """The camera: lens blur, maybe a shake, sensor noise, maybe sharpening, then JPEG bytes."""
    image = Image.fromarray(_to_uint8(scene.rgb))
    stroke = scene.stroke
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(*BLUR_SIGMA) * min(1.0, 0.5 * stroke))))
    if rng.random() < MOTION_P:
        image = image.filter(_motion_kernel(rng.uniform(1.0, min(4.0, stroke)), rng.uniform(0, np.pi)))
    pixels = np.asarray(image, np.float32) / 255
    pixels = pixels + _sensor_noise(pixels, rng)
    image = Image.fromarray(_to_uint8(pixels))
    if rng.random() < SHARPEN_P:
        image = image.filter(ImageFilter.UnsharpMask(rng.uniform(0.8, 2.0), int(rng.integers(40, 150)), 2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return out.getvalue()


def _frame_shape(rng):
    """(height, width): thumbnails to phone crops, portrait, landscape or square."""
    side = _log_uniform(rng, *FRAME_PX)
    aspect = 1.0 if rng.random() < SQUARE_P else _log_uniform(rng, *ASPECT)
    height = side / np.sqrt(aspect)
    return tuple(int(np.clip(round(s), *FRAME_PX)) for s in (height, height * aspect))


def _ink_coverage(digit, height, width, rng):
    """The pen's stroke, tilted and scaled to its share of the frame, cropped to its ink: the digit
    upsampled smoothly (bicubic), cut at a grey level, then thinned or thickened to the pen's width
    by distances to the stroke's edge and skeleton, with an anti-aliased edge."""
    crop = _crop(digit)
    angle = np.radians(rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG))
    bh, bw = (s - 4 for s in crop.shape)  # the ink's box, without the padding
    scale = rng.uniform(*SPAN) * min(height, width) / max(bh, bw)
    c, s = abs(np.cos(angle)), abs(np.sin(angle))
    # the padded box, tilted, must fit: the padding is where thickening grows into
    scale = min(scale, (width - 2) / (crop.shape[1] * c + crop.shape[0] * s),
                (height - 2) / (crop.shape[1] * s + crop.shape[0] * c))
    grey = _resample(crop, scale, angle)
    digit_height = scale * bh
    pen = max(MIN_STROKE_PX, _log_uniform(rng, *STROKE) * digit_height) / 2  # half-width
    coverage = _pen_stroke(grey, rng.uniform(0.35, 0.55), pen, edge=rng.uniform(0.8, 1.5))
    rows, cols = np.nonzero(coverage)
    if rows.size == 0:  # an empty digit is an empty page
        return np.zeros((1, 1), np.float32), digit_height, pen
    return coverage[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], digit_height, pen


def _place(frame, size, rng):
    """Where the digit starts along one side: anywhere off centre, but with a little paper between
    it and the border (4% of the side) unless it fills the frame, as people frame a digit."""
    margin = min(0.04 * frame, (frame - size) / 2)
    return int(round(rng.uniform(margin, frame - size - margin)))


def _crop(digit):
    """The digit's ink box, as floats in [0, 1], with two pixels of background around it."""
    digit = np.asarray(digit, np.float32) / 255
    rows, cols = np.nonzero(digit > 0.2)
    if rows.size:
        digit = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return np.pad(digit, 2)


def _resample(crop, scale, angle):
    """Bicubic upsampling and rotation in one resampling, so that edges stay smooth, not blocky."""
    c, s = np.cos(angle), np.sin(angle)
    h, w = crop.shape
    out_w = int(np.ceil(scale * (w * abs(c) + h * abs(s))))
    out_h = int(np.ceil(scale * (w * abs(s) + h * abs(c))))
    # PIL maps each output pixel back to the input: rotate about the centres, shrink by the scale
    a, b, d, e = c / scale, s / scale, -s / scale, c / scale
    coeffs = (a, b, w / 2 - a * out_w / 2 - b * out_h / 2, d, e, h / 2 - d * out_w / 2 - e * out_h / 2)
    image = Image.fromarray(crop, "F").transform(
        (out_w, out_h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC, fillcolor=0)
    return np.asarray(image)


def _pen_stroke(grey, threshold, pen, edge):
    """Ink coverage of the digit (grey above `threshold`) redrawn with a pen of half-width `pen`
    pixels: the shape grown or shrunk by the difference from its own mean half-width (morphology by
    distances); when it shrinks, its skeleton drawn at the pen's width keeps thin parts from
    breaking. The edge is `edge` pixels soft and placed between pixel centres, never a step."""
    mask = grey > threshold
    if not mask.any():
        return mask.astype(np.float32)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    signed = np.where(mask, inside - 0.5, 0.5 - outside)
    # beside the outline, the grey level's slope says how far between pixel centres it runs
    gy, gx = np.gradient(grey)
    fine = (grey - threshold) / np.maximum(np.hypot(gx, gy), 1e-3)
    signed = np.where(np.abs(signed) <= 1, np.clip(fine, -1, 1), signed)
    skeleton = skeletonize(mask)
    natural = mask.sum() / (2 * max(skeleton.sum(), 1))
    reach = signed + (pen - natural)
    if pen < natural:
        reach = np.maximum(reach, pen - ndimage.distance_transform_edt(~skeleton))
    return ndimage.gaussian_filter(np.clip(0.5 + reach / edge, 0, 1).astype(np.float32), 0.5)


def _ink(rng, shape, digit_height):
    """Ink colour, its uneven density per pixel (pressure, pooling, pencil grain), and how light a
    stroke looks on the lightest paper."""
    names = list(INKS)
    name = names[rng.choice(len(names), p=[INKS[n][1] for n in names])]
    color, _, (low, high) = INKS[name]
    color = np.clip(np.array(color) + rng.normal(0, 0.025, 3), 0, 1).astype(np.float32)
    density = rng.uniform(low, high) + rng.uniform(0.03, 0.1) * _smooth_noise(rng, shape, digit_height / 3)
    if name == "pencil":
        density = density + 0.12 * rng.standard_normal(shape, np.float32)
    mean = (low + high) / 2
    return color, np.clip(density, 0.4, 1), float(_luma(color) * mean + PAPER_LUMA[1] * (1 - mean))


def _paper(rng, shape):
    """Off-white paper: a tint (warm, cool, now and then a notepad's yellow), mottling and grain."""
    luma = rng.uniform(*PAPER_LUMA)
    warmth = rng.uniform(-0.02, 0.05) if rng.random() > 0.1 else rng.uniform(0.08, 0.16)
    tint = luma + np.array([warmth, 0.3 * warmth, -warmth])
    mottle = rng.uniform(0.005, 0.03) * _smooth_noise(rng, shape, rng.uniform(6, 30))
    grain = rng.uniform(0.003, 0.012) * rng.standard_normal(shape, np.float32)
    return np.clip(tint.astype(np.float32) * (1 + mottle + grain)[..., None], 0, 1)


def _lines(rgb, yy, xx, digit_height, rng):
    """Sometimes ruled notebook lines or a squared grid, light blue or grey, printed on the paper."""
    kind = rng.random()
    if kind >= RULED_P + GRID_P:
        return rgb
    ruled = kind < RULED_P
    # people write a digit across one or two ruled lines, or over a few squares
    spacing = max(7.0, digit_height * (rng.uniform(0.5, 1.1) if ruled else rng.uniform(0.25, 0.6)))
    tilt = np.radians(rng.uniform(-4, 4))
    color = np.array((0.45, 0.65, 0.92) if rng.random() < 0.7 else (0.55, 0.57, 0.6), np.float32)
    opacity, width, offset = rng.uniform(*LINE_OPACITY), rng.uniform(0.7, 1.6), rng.uniform(0, spacing)
    alpha = _stripes(yy * np.cos(tilt) - xx * np.sin(tilt), spacing, offset, width)
    if not ruled:
        alpha = np.maximum(alpha, _stripes(xx * np.cos(tilt) + yy * np.sin(tilt), spacing, offset, width))
    alpha = (opacity * alpha)[..., None]
    return rgb * (1 - alpha) + color * alpha


def _stripes(coordinate, spacing, offset, width):
    """Anti-aliased coverage of lines `width` pixels wide every `spacing` pixels along a coordinate."""
    distance = np.abs((coordinate - offset + spacing / 2) % spacing - spacing / 2)
    return np.clip(0.5 + (width / 2 - distance), 0, 1)


def _table(rgb, yy, xx, ink, ink_luma, rng):
    """Sometimes the paper ends near one border and a table shows beyond it. The table is darker
    than the paper but clearly lighter than the ink, and never reaches the digit."""
    if rng.random() >= TABLE_P:
        return rgb
    # measure from the chosen border: `into` is the distance from it, `along` runs beside it
    along, into = [(yy, xx), (xx, yy), (yy, xx[:, ::-1]), (xx, yy[::-1])][int(rng.integers(4))]
    slope = rng.uniform(-0.1, 0.1)
    inked = ink > 0.05
    room = into[inked].min() if inked.any() else into.max()
    depth = rng.uniform(0.3, 1.0) * min(room - 3 - abs(slope) * along.max(), 0.25 * into.max())
    if depth < 2:
        return rgb
    beyond = np.clip(depth + slope * (along - along.mean()) - into + 0.5, 0, 1)[..., None]
    hue = (1.25, 0.95, 0.7) if rng.random() < 0.5 else (1.0, 1.0, 1.04)  # wood or a grey desk
    color = np.array(hue, np.float32) * rng.uniform(min(ink_luma + 0.25, 0.6), 0.65)
    table = color * (1 + 0.06 * _smooth_noise(rng, ink.shape, rng.uniform(3, 12)))[..., None]
    return rgb * (1 - beyond) + np.clip(table, 0, 1) * beyond


def _lighting(yy, xx, rng):
    """Light on the page: exposure and white balance, a smooth gradient, a vignette, sometimes a
    soft shadow, as one multiplicative (height, width, 3) field."""
    height, width = yy.shape
    v, u = yy / height - 0.5, xx / width - 0.5
    direction = rng.uniform(0, 2 * np.pi)
    gradient = 1 - rng.uniform(0, 0.35) * (0.5 + u * np.cos(direction) + v * np.sin(direction))
    vignette = 1 - rng.uniform(0, 0.35) * 2 * (u**2 + v**2)
    light = gradient * vignette
    if rng.random() < SHADOW_P:  # a soft, slightly curved edge: a hand's or a phone's shadow
        angle, through = rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
        depth, softness, bend = rng.uniform(0.15, 0.4), rng.uniform(0.03, 0.15), rng.uniform(-1, 1)
        normal, along = u * np.cos(angle) + v * np.sin(angle), -u * np.sin(angle) + v * np.cos(angle)
        light = light * (1 - depth / (1 + np.exp(-(normal - through + bend * along**2) / softness)))
    warmth, green = rng.uniform(-0.04, 0.08), rng.uniform(-0.02, 0.02)  # white balance: lamps are warm
    balance = np.array([1 + warmth, 1 + green, 1 - 1.2 * warmth], np.float32)
    return (rng.uniform(0.8, 1.1) * light)[..., None] * balance


def _sensor_noise(pixels, rng):
    """Read noise plus shot noise that grows with brightness, iid per pixel in brightness; the
    colour noise is in 2x2 blocks, as a phone's chroma denoising and 4:2:0 JPEG leave it."""
    read, shot = rng.uniform(*NOISE_SIGMA), rng.uniform(0, 0.0006)
    height, width = pixels.shape[:2]
    sigma = np.sqrt(read**2 + shot * pixels[..., 1])  # green: close to brightness, and free
    noise = (sigma * rng.standard_normal((height, width), np.float32))[..., None]
    chroma = rng.standard_normal(((height + 1) // 2, (width + 1) // 2, 3), np.float32)
    chroma = chroma.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
    return noise + (0.4 * read) * chroma


def _motion_kernel(length, angle):
    """A short straight smear (at most 5x5, PIL's limit), anti-aliased along its direction."""
    yy, xx = np.mgrid[-2:3, -2:3]
    across = np.abs(-xx * np.sin(angle) + yy * np.cos(angle))
    along = np.abs(xx * np.cos(angle) + yy * np.sin(angle))
    weights = np.clip(1 - across, 0, 1) * np.clip(length / 2 + 0.5 - along, 0, 1)
    return ImageFilter.Kernel((5, 5), (weights / weights.sum()).ravel().tolist(), scale=1)


def _smooth_noise(rng, shape, cell):
    """Smooth noise of about unit spread, varying over `cell` pixels: a coarse random grid, resized."""
    height, width = shape
    grid = rng.standard_normal((max(2, round(height / cell) + 1), max(2, round(width / cell) + 1)), np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.Resampling.BICUBIC))


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _luma(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _to_uint8(pixels):
    return (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
