"""Find a handwritten digit in a real picture and draw it the way MNIST's digits are drawn.

A phone photo of paper is not a light digit on black: the paper is lit unevenly, the table shows at
an edge, a notebook's lines run through the digit, the pen may be a fine ballpoint or a marker and
the digit sits anywhere in the frame. Each step below removes one of those differences:

1. polarity: the picture's median is the paper, so a light median means dark ink, inverted;
2. uneven light: a low percentile over windows of half the picture estimates the background
   (paper, shadows, the table), and only what stands out of it can be ink;
3. ink: Otsu's threshold on the top-hat, raised to half the ink's own strength, so faint ruled
   lines and paper texture stay out while pencil stays in;
4. the digit: connected strokes, largest first, with the pieces near it (the bar of a 5); specks,
   long straight lines and the table's edge (along the frame's border) are dropped;
5. pen width: the stroke width (from the distance transform) is brought towards MNIST's, about a
   tenth of the digit's height, so a marker or a hairline reads like the pens MNIST was written with;
6. MNIST's framing: the strokes, anti-aliased, scaled to fit 20x20 keeping their aspect ratio and
   placed in 28x28 by their centre of mass.

MNIST's own digits are not deskewed, so neither are these.
"""

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold, threshold_otsu
from skimage.morphology import disk, skeletonize

WORK = 320            # pixels on the longer side while searching: enough for fine strokes, fast
COARSE = 32           # pixels on the longer side of the copy the background is estimated on
WINDOW = 0.5          # background window, as a share of the shorter side
PAPER_PERCENTILE = 20  # the paper is the darkest fifth of a window (after inversion): true unless ink fills it
INK_SHARE = 0.5       # ink is at least this share of the strong ink's level (ruled lines are fainter)
SPECK = 0.02          # components under this share of the digit's mass are specks
NEAR = 0.35           # pieces within this share of the digit's size from it belong to it
LINE = 0.25           # a component crossing the frame and thinner than this share of it is a line
SOLID = 0.6           # a component filling more of its box than this is a region, not strokes
DENOISE = 1.0         # pixels: blur against sensor noise and paper grain on pictures of 64 px and more
STROKE = (0.08, 0.14)  # MNIST-like pen width range, as a share of the digit's longer side
BOX, FRAME = 20, 28   # MNIST: the digit fits 20x20, centred by mass in 28x28


def to_mnist(grey, shape=(FRAME, FRAME)):
    """The MNIST-convention frame (uint8 of `shape`, light digit on black) of the digit in `grey`,
    a 2-D array of 8-bit levels, either polarity; black when no digit is found."""
    found = find_digit(_shrink(np.asarray(grey, dtype=np.float32)))
    if found is None:
        return np.zeros(shape, np.uint8)
    return place(*found, shape)


def _shrink(grey):
    scale = WORK / max(grey.shape)
    if scale >= 1:
        return grey
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BOX), dtype=np.float32)


def find_digit(grey):
    """(ink, mask): the digit's ink (0 to 1, light on black, nothing else kept) and a boolean mask
    of its strokes in `grey`, or None if there is no ink."""
    if min(grey.shape) < 3:
        return None
    if np.median(grey) > 127:
        grey = 255 - grey
    if min(grey.shape) >= 64 and DENOISE:  # sensor noise and paper grain, below any stroke's width
        grey = ndimage.gaussian_filter(grey, DENOISE)
    lifted = np.clip(grey - background(grey), 0, None)
    if lifted.max() < 16:  # not a shade of ink anywhere
        return None
    level = threshold_otsu(lifted)
    strong = np.percentile(lifted[lifted > level], 90)
    # Hysteresis: the digit's strong strokes, and the fainter pixels connected to them (blurred edges),
    # while faint lines and texture that touch no strong ink stay out.
    mask = apply_hysteresis_threshold(lifted, level, max(level, INK_SHARE * strong))
    mask = _digit_components(mask, lifted)
    if mask is None:
        return None
    return normalise_stroke(np.clip(lifted / strong, 0, 1) * ndimage.binary_dilation(mask), mask)


def background(grey):
    """The paper's level under every pixel: a low percentile over windows of half the picture's
    shorter side, so ink, however thick, drops out (unless it fills four fifths of a window) while
    gradients, shadows and the table's edge stay. Computed on a coarse copy: light varies slowly."""
    scale = min(1.0, COARSE / max(grey.shape))
    coarse = np.asarray(Image.fromarray(grey).resize((max(1, round(grey.shape[1] * scale)),
                                                      max(1, round(grey.shape[0] * scale))),
                                                     Image.Resampling.BOX), dtype=np.float32)
    side = max(3, round(WINDOW * min(coarse.shape)))
    smooth = ndimage.percentile_filter(coarse, PAPER_PERCENTILE, size=side, mode="nearest")
    return np.asarray(Image.fromarray(smooth).resize(grey.shape[::-1], Image.Resampling.BILINEAR), dtype=np.float32)


def _digit_components(mask, weight):
    """The digit's components of `mask`: the heaviest stroke group, not a line or the frame's edge."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    mass = ndimage.sum(weight, labels, index)
    boxes = ndimage.find_objects(labels)
    height, width = mask.shape
    area = ndimage.sum(mask, labels, index)
    extent = [area[i] / ((b[0].stop - b[0].start) * (b[1].stop - b[1].start)) for i, b in enumerate(boxes)]
    candidates = [i for i in range(count) if not _is_line_or_edge(boxes[i], mask.shape, extent[i])]
    if not candidates:
        candidates = list(range(count))
    main = max(candidates, key=lambda i: mass[i])
    keep = {main}
    top, bottom, left, right = _bounds(boxes[main])
    reach = NEAR * max(bottom - top, right - left)
    for i in candidates:
        if i == main or mass[i] < SPECK * mass[main]:
            continue
        t, b, l, r = _bounds(boxes[i])
        if t < bottom + reach and b > top - reach and l < right + reach and r > left - reach:
            keep.add(i)
    return np.isin(labels, [i + 1 for i in keep])


def _bounds(box):
    return box[0].start, box[0].stop, box[1].start, box[1].stop


def _is_line_or_edge(box, shape, extent):
    """A ruled line, a grid line or the paper's edge: it crosses the whole frame one way and is thin
    the other; or the table beyond the paper: a solid region hugging three sides of the frame."""
    height, width = shape
    top, bottom, left, right = _bounds(box)
    across = (top == 0 and bottom == height and right - left < LINE * width) or \
        (left == 0 and right == width and bottom - top < LINE * height)
    table = extent > SOLID and ((top == 0 and bottom == height and (left == 0 or right == width)) or
                                (left == 0 and right == width and (top == 0 or bottom == height)))
    return across or table


def stroke_width(mask):
    """The pen's width in pixels: twice the median distance from the strokes' middle to their edge."""
    skeleton = skeletonize(mask)
    return 2 * float(np.median(ndimage.distance_transform_edt(mask)[skeleton])) if skeleton.any() else 1.0


def normalise_stroke(ink, mask):
    """Ink thinned or thickened (grey erosion or dilation) towards MNIST's pen width, STROKE of the
    digit's longer side: a marker's blobs and a hairline's ghosts both read as MNIST's pens do."""
    rows, cols = np.nonzero(mask)
    size = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    width = stroke_width(mask)
    low, high = STROKE[0] * size, STROKE[1] * size
    change = round(width - high) if width > high else -round(low - width) if width < low else 0
    if abs(change) < 2:
        return ink, mask
    footprint = disk(abs(change) // 2) if abs(change) > 2 else np.ones((2, 2), bool)
    if change > 0:
        return ndimage.grey_erosion(ink, footprint=footprint), ndimage.binary_erosion(mask, footprint) | skeletonize(mask)
    return ndimage.grey_dilation(ink, footprint=footprint), ndimage.binary_dilation(mask, footprint)


def place(ink, mask, shape):
    """Crop to the digit, scale its ink (anti-aliased) to fit BOX x BOX of FRAME x FRAME keeping the
    aspect ratio, and centre it by mass in a black frame of `shape`."""
    rows, cols = np.nonzero(mask)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1] * 255
    box = BOX * min(shape) / FRAME
    scale = box / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.array(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.BOX),
                       dtype=np.float32)
    frame = np.zeros(shape, np.float32)
    if small.max() <= 0:
        return frame.astype(np.uint8)
    small *= 255 / small.max()  # the ink's peak at full white, as in MNIST
    cy, cx = ndimage.center_of_mass(small)
    # MNIST's centres of mass sit at (14, 14) (measured: 13.99 and 14.00 on its test set), half a
    # pixel past the frame's middle; a pixel off costs accuracy.
    top = int(np.clip(round(shape[0] / 2 - cy), 0, shape[0] - small.shape[0]))
    left = int(np.clip(round(shape[1] / 2 - cx), 0, shape[1] - small.shape[1]))
    frame[top:top + small.shape[0], left:left + small.shape[1]] = small
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)
