"""MNIST-C: the 15 corruptions of Mu & Gilmer, "MNIST-C: A Robustness Benchmark for Computer Vision"
(2019, arXiv 1906.02337), made with numpy and scipy.

Each corruption keeps the digit readable to a person while moving the picture off the training
distribution. Parameters follow the severities of the released data set (google-research/mnist-c).
Where that code calls ImageMagick or OpenCV the idea is redone here: ImageMagick's motion blur is a
one-sided Gaussian streak, the fog's plasma fractal is grown only where the picture sits.

Every random number is drawn image by image, in order, from one generator per corruption
(`corruption_rng`), and the pixel work is then done on whole batches. So `corrupt` gives the same
pictures as calling `CORRUPTIONS[name]` on each image in turn with that generator, the first k
images come out the same whatever follows them, and one corruption's output does not depend on
which others were generated before it.
"""

import functools

import numpy as np
from scipy import ndimage

from imgcls.errors import ImgclsError, unknown

SIZE = 28
_CENTRE = (SIZE - 1) / 2
_CHUNK = 2048  # images per vectorised call: bounds memory; results do not depend on it
_BATCH = {}  # name -> function(float images (N, 28, 28) in [0, 1], rng) -> same, in the paper's order


def _register(name):
    def add(fn):
        _BATCH[name] = fn
        return fn
    return add


def _blur(x, sigma, mode="nearest"):
    """Gaussian blur of each image of a batch (never across images)."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode=mode, truncate=4.0)


def _sample(x, rows, cols):
    """Bilinear samples of each image at (rows, cols), shaped (N, ...); black outside the picture."""
    n = np.arange(len(x)).reshape((-1,) + (1,) * (rows.ndim - 1))
    n = np.broadcast_to(n, rows.shape).astype(float)
    return ndimage.map_coordinates(x, [n, rows, cols], order=1, mode="grid-constant", cval=0.0)


def _warp(x, matrices, shifts=None):
    """Resample each image at A (p - centre) + centre + shift for every output pixel p = (col, row):
    A, one 2x2 matrix per image, maps the output back into the input, as skimage's inverse_map."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(float) - _CENTRE
    src = np.einsum("nij,jrc->nirc", matrices, np.stack([cols, rows])) + _CENTRE
    if shifts is not None:
        src += shifts[:, :, None, None]
    return _sample(x, src[:, 1], src[:, 0])


def _signs(rng, n, size=None):
    """±1 for each image (or `size` of them per image), drawn image by image."""
    return np.array([2 * rng.integers(2, size=size) - 1 for _ in range(n)], dtype=float)


# ---- noise -------------------------------------------------------------------------------------

@_register("shot_noise")
def _shot_noise(x, rng, photons=3):
    """Photon noise: a full-white pixel catches on average only `photons` photons."""
    return np.minimum(np.stack([rng.poisson(image * photons) for image in x]) / photons, 1.0)


@_register("impulse_noise")
def _impulse_noise(x, rng, amount=0.17):
    """Salt and pepper: each pixel, with probability `amount`, turns white or black (even odds)."""
    coins = np.stack([rng.random((2, SIZE, SIZE)) for _ in x])
    return np.where(coins[:, 0] < amount, (coins[:, 1] < 0.5).astype(float), x)


# ---- blur --------------------------------------------------------------------------------------

@_register("glass_blur")
def _glass_blur(x, rng, sigma=0.7, reach=1, rounds=2):
    """Frosted glass: blur, let pixels wander by swapping each, at even odds, with a neighbour up to
    `reach` up or left (visiting pixels from the bottom right, so one can travel), blur again."""
    k = SIZE - 2 * reach
    moves = np.stack([rng.integers(-reach, reach, size=(rounds, k, k, 2))
                      * (rng.random((rounds, k, k, 1)) < 0.5) for _ in x])
    flat = scatter(_blur(x, sigma).reshape(len(x), -1), moves, SIZE, reach, swap=True)
    return _blur(flat.reshape(x.shape), sigma)


def scatter(flat, moves, side, reach, swap):
    """Glass blur's wandering pixels: in flattened pictures (N, side * side, ...), each pixel from the
    bottom right up to `reach` from the top and left edges, round by round, is exchanged with
    (`swap`) or takes the value of the neighbour moves[:, round, row, col] points to (k x k grids
    of (rows, cols) steps, k = side - 2 * reach)."""
    span = range(side - reach, reach, -1)
    n = np.arange(len(flat))
    for r in range(moves.shape[1]):
        for a, row in enumerate(span):
            for b, col in enumerate(span):
                here = row * side + col
                there = here + moves[:, r, a, b, 0] * side + moves[:, r, a, b, 1]
                if swap:
                    flat[n, here], flat[n, there] = flat[n, there], flat[n, here]
                else:
                    flat[n, here] = flat[n, there]
    return flat


@_register("motion_blur")
def _motion_blur(x, rng, radius=10, sigma=3.0, max_degrees=45):
    """Camera shake along a random direction within `max_degrees` of horizontal (see `streak`)."""
    return streak(x, np.deg2rad([rng.uniform(-max_degrees, max_degrees) for _ in x]), radius, sigma)


def streak(x, angles, radius, sigma):
    """Each pixel of picture i averages the pixels ahead of it along `angles[i]` (radians from
    horizontal), weighted by a half Gaussian (ImageMagick's -motion-blur). Any picture size, with
    or without a channel axis (CIFAR-10-C blurs colour pictures and snow with it)."""
    steps = np.arange(2 * radius + 1)
    weights = np.exp(-steps ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    drow = np.rint(np.outer(np.sin(angles), steps)).astype(int)
    dcol = np.rint(np.outer(np.cos(angles), steps)).astype(int)
    n = np.arange(len(x))[:, None, None]
    height, width = x.shape[1:3]
    out = np.zeros_like(x)
    for t, weight in enumerate(weights):
        rows = np.clip(np.arange(height)[None, :, None] + drow[:, t, None, None], 0, height - 1)
        cols = np.clip(np.arange(width)[None, None, :] + dcol[:, t, None, None], 0, width - 1)
        out += weight * x[n, rows, cols]
    return out


# ---- geometry ----------------------------------------------------------------------------------

@_register("shear")
def _shear(x, rng, amount=0.4):
    """Horizontal shear by `amount` radians, left or right at random, about the centre."""
    s = amount * _signs(rng, len(x))
    zero = np.zeros_like(s)
    return _warp(x, np.stack([[np.ones_like(s), -np.sin(s)], [zero, np.cos(s)]]).transpose(2, 0, 1))


@_register("scale")
def _scale(x, rng, factor=0.7):
    """Shrink the digit to `factor` of its size about the centre."""
    return _warp(x, np.broadcast_to(np.eye(2) / factor, (len(x), 2, 2)))


@_register("rotate")
def _rotate(x, rng, angle=0.4):
    """Rotate by `angle` radians (23 degrees), clockwise or anticlockwise at random."""
    a = angle * _signs(rng, len(x))
    cos, sin = np.cos(a), np.sin(a)
    return _warp(x, np.stack([[cos, -sin], [sin, cos]]).transpose(2, 0, 1))


@_register("brightness")
def _brightness(x, rng, lift=0.5):
    """Raise the HSV value by `lift`: for a grey picture, add it to every pixel."""
    return np.minimum(x + lift, 1.0)


@_register("translate")
def _translate(x, rng, pixels=3):
    """Move the digit `pixels` along each axis, each direction at random."""
    return _warp(x, np.broadcast_to(np.eye(2), (len(x), 2, 2)), pixels * _signs(rng, len(x), size=2))


@_register("stripe")
def _stripe(x, rng, width=7):
    """Invert the `width` leftmost and rightmost columns."""
    out = x.copy()
    out[:, :, :width] = 1 - out[:, :, :width]
    out[:, :, SIZE - width:] = 1 - out[:, :, SIZE - width:]
    return out


# ---- weather -----------------------------------------------------------------------------------

_MAP_LEVELS = 8  # the fog is the corner of a 2**8 = 256-pixel plasma fractal, as in MNIST-C
_FINE_LEVELS = 3  # grown only near the picture below 2**3 = 8-pixel spacing
_WINDOW = (-1, 0, 1, 2, 3, 4)  # coarse points around the picture: 256-map pixels -8 to 40


def diamond_square(grid, levels, wibble, decay, noise):
    """Refine periodic height maps (N, s, s) `levels` times, halving the spacing each time: each new
    point is the mean of its four neighbours plus uniform noise of size wibble**2, and wibble
    shrinks by `decay` a level (the plasma fractal of ImageNet-C and MNIST-C)."""
    for _ in range(levels):
        n, s, _ = grid.shape
        bumps = wibble ** 2 * noise[:, :3 * s * s].reshape(n, 3, s, s)
        noise = noise[:, 3 * s * s:]
        right, down = np.roll(grid, -1, axis=2), np.roll(grid, -1, axis=1)
        centre = (grid + right + down + np.roll(right, -1, axis=1)) / 4 + bumps[:, 0]
        across = (grid + right + centre + np.roll(centre, 1, axis=1)) / 4 + bumps[:, 1]
        along = (grid + down + centre + np.roll(centre, 1, axis=2)) / 4 + bumps[:, 2]
        grid = np.stack([np.stack([grid, across], -1), np.stack([along, centre], -1)], 2)
        grid = grid.reshape(n, 2 * s, 2 * s)
        wibble /= decay
    return grid


_COARSE = _MAP_LEVELS - _FINE_LEVELS
# each level draws three numbers per point of the map it refines
_COARSE_DRAWS = 3 * sum(4 ** k for k in range(_COARSE))
_PLASMA_DRAWS = _COARSE_DRAWS + 3 * sum((len(_WINDOW) * 2 ** k) ** 2 for k in range(_FINE_LEVELS))


def _plasma(noise, decay):
    """The top-left 28x28 of a 256x256 plasma fractal, scaled to [0, 1] by the map's range.

    The rest of the map would cost 20 times as much and only feeds the range, which its 8-pixel
    grid already gives to within a few percent."""
    coarse = diamond_square(np.zeros((len(noise), 1, 1)), _COARSE, 100.0, decay, noise)
    window = coarse.take(_WINDOW, axis=1, mode="wrap").take(_WINDOW, axis=2, mode="wrap")
    fine = diamond_square(window, _FINE_LEVELS, 100.0 / decay ** _COARSE, decay,
                          noise[:, _COARSE_DRAWS:])
    # refining the window as if it wrapped around spoils only map pixels left of -4 and right of
    # 28: outside the picture
    crop = fine[:, 8:8 + SIZE, 8:8 + SIZE]
    low = coarse.min(axis=(1, 2), keepdims=True)
    high = coarse.max(axis=(1, 2), keepdims=True)
    return np.clip((crop - low) / (high - low), 0, 1)


@_register("fog")
def _fog(x, rng, thickness=3.0, decay=1.4):
    """Add `thickness` times a plasma-fractal haze, then rescale so the brightest ink keeps its value
    relative to the haze: low contrast under an uneven veil."""
    haze = _plasma(np.stack([rng.uniform(-1, 1, _PLASMA_DRAWS) for _ in x]), decay)
    peak = x.max(axis=(1, 2), keepdims=True)
    return np.clip((x + thickness * haze) * peak / (peak + thickness), 0, 1)


@_register("spatter")
def _spatter(x, rng, mean=0.65, spread=0.3, sigma=1.0, wet=0.65, mud_sigma=1.5, solid=0.8,
             mud=63 / 255):
    """Mud drops: blurred Gaussian noise above `wet` marks the drops, whose soft edges are cut at
    `solid`; there the picture is painted over with dark grey mud."""
    liquid = np.stack([rng.normal(mean, spread, (SIZE, SIZE)) for _ in x])
    cover = _blur((_blur(liquid, sigma) > wet).astype(float), mud_sigma)
    cover[cover < solid] = 0
    return x * (1 - cover) + mud * cover


# ---- occlusion ---------------------------------------------------------------------------------

_COLS = np.arange(SIZE, dtype=float)


def _soft_line(c0, r0, c1, r1, width=2.3):
    """Ink of one straight segment per image from (c0, r0) to (c1, r1), arrays of shape (N,), with
    c0 < c1: in its columns, 1 + log(1 - d / width) of the vertical distance d, about 3 px thick."""
    centre = r0[:, None] + (r1 - r0)[:, None] / (c1 - c0)[:, None] * (_COLS - c0[:, None])
    distance = np.abs(_COLS[None, :, None] - centre[:, None, :])
    ink = 1 + np.log(np.maximum(1 - distance / width, np.exp(-1)))
    inside = (_COLS >= np.floor(c0)[:, None]) & (_COLS < np.ceil(c1)[:, None])
    return ink * inside[:, None, :]


@_register("dotted_line")
def _dotted_line(x, rng):
    """A dashed white line across the picture, two columns on, two off, between random rows."""
    ends = np.stack([rng.integers(0, SIZE - 1, size=2) for _ in x]).astype(float)
    left, right = np.zeros(len(x)), np.full(len(x), SIZE - 1.0)
    ink = _soft_line(left, ends[:, 0], right, ends[:, 1])
    ink[:, :, (_COLS // 2) % 2 == 0] = 0
    return np.minimum(x + ink, 1.0)


@_register("zigzag")
def _zigzag(x, rng, start=2, stop=25, half_period=2.0, amplitude=2.0):
    """A white zigzag from column `start` to `stop`, starting at a random row and tilted by up to
    5 rows; its teeth are `amplitude` high and `2 * half_period` apart. It ends on the zigzag
    itself (MNIST-C's own last tooth can spike when the path length is just past a whole period)."""
    draws = np.stack([rng.integers([0, -5], [SIZE - 1, 5]) for _ in x]).astype(float)
    row0 = draws[:, 0]
    tilt = np.arctan(draws[:, 1] / (stop - start))
    length = (stop - start) / np.cos(tilt)
    # the tilt lengthens the path by under 0.6 px, so every zigzag turns at the same places
    turns = np.arange(half_period, stop - start, 2 * half_period)
    along = np.concatenate([np.zeros((len(x), 1)), np.broadcast_to(turns, (len(x), len(turns))),
                            length[:, None]], axis=1)
    across = amplitude * 2 / np.pi * np.arcsin(np.sin(np.pi * along / (2 * half_period)))
    cos, sin = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    cols = start + along * cos - across * sin
    rows = row0[:, None] + along * sin + across * cos
    ink = sum(_soft_line(cols[:, i], rows[:, i], cols[:, i + 1], rows[:, i + 1])
              for i in range(along.shape[1] - 1))
    return np.minimum(x + ink, 1.0)


# ---- edges -------------------------------------------------------------------------------------

_WITHIN_IMAGE = np.zeros((3, 3, 3), bool)
_WITHIN_IMAGE[1] = True  # 8-connected inside each picture, never across pictures


def _sobel(x, axis):
    """Sobel derivative of each image along `axis` (1 rows, 2 columns), as scipy's, per image."""
    other = 3 - axis
    return ndimage.correlate1d(ndimage.correlate1d(x, [-1, 0, 1], axis=axis), [1, 2, 1], axis=other)


@_register("canny_edges")
def _canny_edges(x, rng, sigma=1.0, low=0.1, high=0.2):
    """Canny edge map, as skimage.feature.canny's defaults, done for the whole batch at once:
    Gaussian smoothing that ignores the outside, Sobel gradients, thinning to local maxima
    along the gradient, and hysteresis between `low` and `high`."""
    smooth = _blur(x, sigma, "constant") / _blur(np.ones((1, SIZE, SIZE)), sigma, "constant")
    grow, gcol = _sobel(smooth, 1), _sobel(smooth, 2)
    magnitude = np.hypot(grow, gcol)
    # compare with the two points where the gradient line leaves the 3x3 neighbourhood
    step = np.maximum(np.abs(grow), np.abs(gcol))
    step[step == 0] = 1
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    ahead = _sample(magnitude, rows + grow / step, cols + gcol / step)
    behind = _sample(magnitude, rows - grow / step, cols - gcol / step)
    interior = np.zeros((SIZE, SIZE), bool)
    interior[1:-1, 1:-1] = True
    weak = (magnitude >= ahead) & (magnitude >= behind) & (magnitude >= low) & interior
    labels, count = ndimage.label(weak, structure=_WITHIN_IMAGE)
    keep = np.zeros(count + 1, bool)
    keep[labels[weak & (magnitude >= high)]] = True
    keep[0] = False
    return keep[labels].astype(float)


# ---- public API --------------------------------------------------------------------------------

def to_uint8(x):
    """Pixels in [0, 1] as uint8, rounded to the nearest level."""
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def in_chunks(change, images, chunk):
    """`change` (pictures in [0, 1] in and out) of uint8 `images`, `chunk` pictures at a time, as
    uint8: bounds memory without changing the result, the generators drawing picture by picture."""
    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = to_uint8(change(images[start:start + chunk] / 255.0))
    return out


def _check_images(images):
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE) or images.dtype != np.uint8:
        raise ImgclsError(f"MNIST-C corrupts uint8 images shaped (N, {SIZE}, {SIZE}), "
                          f"got {images.dtype} {images.shape}")
    return images


def _one_image(name, batch_fn):
    @functools.wraps(batch_fn)
    def corrupt_one(image, rng):
        return to_uint8(batch_fn(_check_images(np.asarray(image)[None]) / 255.0, rng))[0]
    corrupt_one.__name__ = corrupt_one.__qualname__ = name
    return corrupt_one


CORRUPTIONS = {name: _one_image(name, fn) for name, fn in _BATCH.items()}
"""name -> function(image: uint8 (28, 28), rng: numpy Generator) -> uint8 (28, 28), in the paper's
order. Scale, brightness, stripe and canny_edges use no random numbers."""


def _batch_fn(name):
    if name not in _BATCH:
        raise unknown("corruption", name, CORRUPTIONS)
    return _BATCH[name]


def corruption_rng(name, seed=0):
    """The generator `corrupt(images, name, seed)` draws from: child i of `seed` for the paper's
    i-th corruption, so each corruption's pictures depend only on the seed."""
    _batch_fn(name)
    index = list(_BATCH).index(name)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def corrupt(images, name, seed=0):
    """The corruption `name` of uint8 images (N, 28, 28), as uint8 (N, 28, 28); the same for the
    same seed, whatever was generated before."""
    fn = _batch_fn(name)
    images = _check_images(images)
    rng = corruption_rng(name, seed)
    return in_chunks(lambda x: fn(x, rng), images, _CHUNK)


def mnist_c(x, seed=0, names=None):
    """{name: corrupt(x, name, seed)} for the named corruptions, or all 15 in the paper's order."""
    names = list(CORRUPTIONS) if names is None else list(names)
    for name in names:
        _batch_fn(name)
    return {name: corrupt(x, name, seed) for name in names}
