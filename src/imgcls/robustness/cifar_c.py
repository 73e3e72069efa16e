"""CIFAR-10-C: the common corruptions of Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations" (ICLR 2019), at their five severities, made
with numpy, scipy and Pillow.

What a photo model meets outside its test set: sensor noise, lens and motion blur, weather,
lighting, resampling and compression. The severities are the released CIFAR-10-C's (its
generator, make_cifar_c.py, read for its parameters; where it calls ImageMagick or OpenCV the
idea is redone here, as in MNIST-C's module). Frost is left out: it overlays the authors' own
photographs of frost, which these machines cannot fetch; 14 of the 15 remain.

Random numbers are drawn image by image from one generator per corruption and severity
(`corruption_rng`), so the first k pictures come out the same whatever follows them.
"""

import io

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import hsv2rgb, rgb2hsv

from imgcls.errors import ImgclsError, unknown
from imgcls.robustness.corruptions import diamond_square, in_chunks, scatter, streak, to_uint8

SIZE = 32
_CHUNK = 500  # pictures per vectorised call: bounds memory; results do not depend on it


def _gaussian(x, sigma):
    """Gaussian blur of each picture's channels (skimage.filters.gaussian's edges and reach)."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _per_image(rng, x, draw):
    return np.stack([draw(rng) for _ in x])


def gaussian_noise(x, rng, scale):
    """Sensor noise: every channel value moved by a normal draw of `scale` (of the range)."""
    return x + _per_image(rng, x, lambda r: r.normal(0, scale, x.shape[1:]))


def shot_noise(x, rng, photons):
    """Photon noise: a white pixel catches `photons` photons on average."""
    return np.stack([rng.poisson(image * photons) for image in x]) / photons


def impulse_noise(x, rng, amount):
    """Salt and pepper: each channel value, with probability `amount`, turns 0 or 1 (even odds)."""
    coins = _per_image(rng, x, lambda r: r.random((2, *x.shape[1:])))
    return np.where(coins[:, 0] < amount, (coins[:, 1] < 0.5).astype(float), x)


def defocus_blur(x, rng, radius, alias):
    """An out-of-focus lens: a disk of `radius` pixels, its edge softened by a Gaussian of `alias`
    (within a 3x3 window, as the paper's)."""
    grid = np.arange(-8, 9)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2).astype(float)
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias ** 2))
    soften = np.outer(taps, taps) / np.outer(taps, taps).sum()
    kernel = ndimage.convolve(disk / disk.sum(), soften, mode="constant")
    return ndimage.convolve(x, kernel[None, :, :, None], mode="mirror")


def glass_blur(x, rng, sigma, reach, rounds):
    """Frosted glass: blur, then each pixel takes the colour of a neighbour up to `reach` up or left
    (visited from the bottom right, so that colours travel; the released code meant to swap the
    two, but its numpy views copy), then blur again."""
    k = SIZE - 2 * reach
    moves = _per_image(rng, x, lambda r: r.integers(-reach, reach, size=(rounds, k, k, 2)))
    flat = (np.floor(_gaussian(x, sigma) * 255) / 255).reshape(len(x), SIZE * SIZE, 3)
    return _gaussian(scatter(flat, moves, SIZE, reach, swap=False).reshape(x.shape), sigma)


def motion_blur(x, rng, radius, sigma):
    """Camera shake: a streak along a random direction within 45 degrees of horizontal."""
    return streak(x, np.deg2rad([rng.uniform(-45, 45) for _ in x]), radius, sigma)


def _clipped_zoom(x, factor):
    """The middle 1/factor of each picture, enlarged back to its size (bilinear)."""
    side = x.shape[1]
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    grown = ndimage.zoom(x[:, top:top + crop, top:top + crop], (1, factor, factor, 1), order=1)
    trim = (grown.shape[1] - side) // 2
    return grown[:, trim:trim + side, trim:trim + side]


def zoom_blur(x, rng, top):
    """Zooming while the shutter is open: the picture averaged with itself enlarged by 0% (so it
    counts twice, as in the released code), 1%, 2% ... up to `top`."""
    factors = 1 + 0.01 * np.arange(round((top - 1) / 0.01) + 1)
    return (x + sum(_clipped_zoom(x, f) for f in factors)) / (len(factors) + 1)


def snow(x, rng, mean, spread, zoom, cut, radius, sigma, keep):
    """Falling snow: flakes (bright noise above `cut`, enlarged by `zoom`) streaked downward by a
    motion blur and laid over the picture twice (turned 180 degrees), the scene washed out a little."""
    draws = [(rng.normal(mean, spread, (SIZE, SIZE)), rng.uniform(-135, -45)) for _ in x]
    flakes = _clipped_zoom(np.stack([flake for flake, _ in draws])[..., None], zoom)[..., 0]
    flakes = np.rint(np.clip(np.where(flakes < cut, 0, flakes), 0, 1) * 255) / 255
    flakes = streak(flakes, np.deg2rad([angle for _, angle in draws]), radius, sigma)[..., None]
    grey = x @ np.array([0.299, 0.587, 0.114])
    x = keep * x + (1 - keep) * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, 2, axes=(1, 2))


def fog(x, rng, thickness, decay):
    """A plasma-fractal haze `thickness` thick, the picture rescaled under it (lower contrast)."""
    levels = 5  # a 32x32 map, as the paper's for CIFAR-10; each level draws three numbers a point
    noise = _per_image(rng, x, lambda r: r.uniform(-1, 1, 3 * sum(4 ** k for k in range(levels))))
    haze = diamond_square(np.zeros((len(x), 1, 1)), levels, 100.0, decay, noise)
    low, high = haze.min(axis=(1, 2), keepdims=True), haze.max(axis=(1, 2), keepdims=True)
    haze = ((haze - low) / (high - low))[..., None]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + thickness * haze) * peak / (peak + thickness)


def brightness(x, rng, lift):
    """Stronger light: the HSV value raised by `lift`."""
    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + lift, 0, 1)
    return hsv2rgb(hsv)


def contrast(x, rng, factor):
    """Flat light: each channel pulled toward its own mean by `factor`."""
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * factor + means


def elastic(x, rng, amount, smooth, wobble):
    """A random affine warp (three points moved up to `wobble` pixels), then a smooth random
    displacement field (`amount` pixels at most, smoothed by `smooth`), edges mirrored."""
    centre, third = SIZE // 2, SIZE // 3
    points = np.array([[centre + third] * 2, [centre + third, centre - third], [centre - third] * 2], float)
    out = np.empty_like(x)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    for i, image in enumerate(x):
        moved = points + rng.uniform(-wobble, wobble, points.shape)
        # (col, row) points: the affine map from moved back to the original, for sampling
        back = np.linalg.solve(np.c_[moved, np.ones(3)], points).T  # 2x3
        matrix = back[::-1, 1::-1]  # in (row, col) order
        offset = back[::-1, 2]
        warped = np.stack([ndimage.affine_transform(image[..., c], matrix, offset, order=1, mode="mirror")
                           for c in range(3)], -1)
        field = [ndimage.gaussian_filter(rng.uniform(-1, 1, (SIZE, SIZE)), smooth, mode="reflect", truncate=3) * amount
                 for _ in range(2)]
        out[i] = np.stack([ndimage.map_coordinates(warped[..., c], [rows + field[1], cols + field[0]], order=1,
                                                   mode="reflect") for c in range(3)], -1)
    return out


def _through_pillow(x, change):
    return np.stack([np.asarray(change(Image.fromarray(to_uint8(image))), float) / 255 for image in x])


def pixelate(x, rng, share):
    """A low-resolution camera: shrunk to `share` of the side and enlarged back, box-filtered."""
    small = int(SIZE * share)
    return _through_pillow(x, lambda im: im.resize((small, small), Image.Resampling.BOX).resize(
        (SIZE, SIZE), Image.Resampling.BOX))


def jpeg(x, rng, quality):
    """JPEG compression at `quality`."""
    def compress(image):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return Image.open(out).convert("RGB")
    return _through_pillow(x, compress)


# name -> (function, its parameters at severities 1-5), in the paper's order (frost left out)
CORRUPTIONS = {
    "gaussian_noise": (gaussian_noise, [(0.04,), (0.06,), (0.08,), (0.09,), (0.10,)]),
    "shot_noise": (shot_noise, [(500,), (250,), (100,), (75,), (50,)]),
    "impulse_noise": (impulse_noise, [(0.01,), (0.02,), (0.03,), (0.05,), (0.07,)]),
    "defocus_blur": (defocus_blur, [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]),
    "glass_blur": (glass_blur, [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]),
    "motion_blur": (motion_blur, [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]),
    "zoom_blur": (zoom_blur, [(1.05,), (1.10,), (1.15,), (1.20,), (1.25,)]),
    "snow": (snow, [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]),
    "fog": (fog, [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)]),
    "brightness": (brightness, [(0.05,), (0.1,), (0.15,), (0.2,), (0.3,)]),
    "contrast": (contrast, [(0.75,), (0.5,), (0.4,), (0.3,), (0.15,)]),
    "elastic": (elastic, [(0, 0, 2.56), (1.6, 6.4, 2.24), (2.56, 1.92, 1.92), (3.2, 1.28, 1.6), (3.2, 0.96, 0.96)]),
    "pixelate": (pixelate, [(0.95,), (0.9,), (0.85,), (0.75,), (0.65,)]),
    "jpeg": (jpeg, [(80,), (65,), (58,), (50,), (40,)]),
}
SEVERITIES = (1, 2, 3, 4, 5)


def corruption_rng(name, severity, seed=0):
    """The generator `corrupt` draws from: one per (corruption, severity) child of `seed`."""
    if name not in CORRUPTIONS:
        raise unknown("corruption", name, CORRUPTIONS)
    if severity not in SEVERITIES:
        raise ImgclsError(f"severity must be 1 to 5, got {severity!r}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(list(CORRUPTIONS).index(name), severity)))


def corrupt(images, name, severity, seed=0):
    """Corruption `name` at `severity` (1-5) of uint8 colour pictures (N, 32, 32, 3), as uint8."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3) or images.dtype != np.uint8:
        raise ImgclsError(f"CIFAR-10-C corrupts uint8 colour pictures shaped (N, {SIZE}, {SIZE}, 3), "
                          f"got {images.dtype} {images.shape}")
    rng = corruption_rng(name, severity, seed)
    fn, levels = CORRUPTIONS[name]
    return in_chunks(lambda x: fn(x, rng, *levels[severity - 1]), images, _CHUNK)
