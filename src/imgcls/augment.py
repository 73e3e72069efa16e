"""Random augmentation for training only, as a wrapper around the model being trained.

`keras.Sequential([augmentation(kind, input_shape), model])` is what gets fitted and only `model`
is saved, so a saved model holds no random layers and loads in any runtime. The augmentation
takes raw float pixels 0-255 shaped like the dataset's arrays, (N, H, W) or (N, H, W, C), returns
the same shape and range, and is the identity unless called with training=True.

Policies (`kind`, a comma list):
- "shift": translations up to 1/8 of the side, as the fast CIFAR-10 recipes use.
- "flip": horizontal mirror images, for photos and clothes (never digits: a mirrored 2 is no digit).
- "auto": shift, and flip for colour images.
- "digits": how handwriting differs between writers, pens and cameras: slant, size, aspect and
  position (one affine warp), wobbly strokes (a smooth elastic field), pen width (grey dilation
  or erosion) and faint ink.

The custom layers use keras.ops only, so every backend runs them. Keras's own
RandomElasticTransform is not used: inside `model.fit` (a batch of unknown size) it gives every
image in the batch the first image's distortion.
"""

import math

import keras
from keras import layers, ops

POLICIES = ("auto", "shift", "flip", "digits")


def augmentation(kind, input_shape):
    """The training-only augmentation layer for `kind` (see the module docstring) on batches of
    raw pixels shaped (N, *input_shape)."""
    input_shape = tuple(input_shape)
    kinds = set(kind.split(","))
    unknown = kinds - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(sorted(unknown))}; valid: {', '.join(POLICIES)}")
    channels = input_shape[2] if len(input_shape) == 3 else 1
    if "auto" in kinds:
        kinds = {"shift", "flip"} if channels == 3 else {"shift"}
    steps = []
    if "flip" in kinds:
        steps.append(layers.RandomFlip("horizontal"))
    if "shift" in kinds:
        steps.append(layers.RandomTranslation(0.125, 0.125, fill_mode="constant"))
    if "digits" in kinds:
        steps += [RandomWarp(), RandomStroke(), RandomInk()]
    if len(input_shape) == 2:  # image layers need a channel axis
        steps = [layers.Reshape((*input_shape, 1)), *steps, layers.Reshape(input_shape)]
    return keras.Sequential([keras.Input(input_shape), *steps], name="augmentation")


class RandomWarp(layers.Layer):
    """Rotate, scale, stretch, shear, shift and elastically distort each image, in one bilinear
    resampling: chaining Keras's RandomRotation, RandomZoom, RandomShear and RandomTranslation
    would blur thin strokes four times over, at four times the cost.

    rotation: degrees either way; zoom: relative size change either way (drawn on a log scale);
    aspect: relative width-to-height change either way; shear: horizontal shift per pixel of
    height, either way (slanted handwriting); shift: fraction of the side either way; elastic:
    standard deviation in pixels of a smooth displacement field, interpolated from a `grid` x
    `grid` lattice of random offsets.
    """

    def __init__(self, rotation=15.0, zoom=0.15, aspect=0.15, shear=0.3, shift=0.1, elastic=1.0,
                 grid=4, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.aspect, self.shear = rotation, zoom, aspect, shear
        self.shift, self.elastic, self.grid, self.seed = shift, elastic, grid, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        n = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]

        def uniform(bound):
            return keras.random.uniform((n, 1, 1), -bound, bound, seed=self.generator)

        angle = uniform(math.radians(self.rotation))
        scale = ops.exp(uniform(math.log1p(self.zoom)))
        stretch = ops.exp(uniform(math.log1p(self.aspect)))
        shear = uniform(self.shear)
        # Where each output pixel samples the input: centred coordinates through
        # rotation @ shear @ diag(scale * stretch, scale / stretch), then shifted.
        x_scale, y_scale = scale * stretch, scale / stretch
        cos, sin = ops.cos(angle), ops.sin(angle)
        m00, m01 = cos * x_scale, (cos * shear - sin) * y_scale
        m10, m11 = sin * x_scale, (sin * shear + cos) * y_scale
        cy, cx = (height - 1) / 2, (width - 1) / 2
        y = ops.reshape(ops.arange(height, dtype="float32") - cy, (1, height, 1))
        x = ops.reshape(ops.arange(width, dtype="float32") - cx, (1, 1, width))
        src_x = m00 * x + m01 * y + cx + uniform(self.shift * width)
        src_y = m10 * x + m11 * y + cy + uniform(self.shift * height)
        if self.elastic:
            lattice = keras.random.normal((n, self.grid, self.grid, 2), stddev=self.elastic, seed=self.generator)
            field = ops.image.resize(lattice, (height, width), interpolation="bicubic")
            src_x, src_y = src_x + field[..., 0], src_y + field[..., 1]
        return bilinear(images, src_y, src_x)

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom, "aspect": self.aspect,
                "shear": self.shear, "shift": self.shift, "elastic": self.elastic, "grid": self.grid,
                "seed": self.seed}


def bilinear(images, y, x):
    """Sample (N, H, W, C) `images` at fractional rows `y` and columns `x` (each (N, H, W)),
    reading zeros (no ink) outside the image."""
    n, height, width, channels = ops.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
    flat = ops.reshape(images, (n, height * width, channels))
    y0, x0 = ops.floor(y), ops.floor(x)
    out = 0.0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        weight = (1 - ops.abs(y - yy)) * (1 - ops.abs(x - xx))
        inside = (yy >= 0) & (yy <= height - 1) & (xx >= 0) & (xx <= width - 1)
        index = ops.cast(ops.clip(yy, 0, height - 1) * width + ops.clip(xx, 0, width - 1), "int32")
        pixels = ops.take_along_axis(flat, ops.reshape(index, (n, height * width, 1)), axis=1)
        out = out + pixels * ops.reshape(ops.where(inside, weight, 0.0), (n, height * width, 1))
    return ops.reshape(out, (n, height, width, channels))


class RandomStroke(layers.Layer):
    """Change each image's pen width at random: thinner by a 2x2 grey erosion, or thicker by a 2x2
    or 3x3 grey dilation, with probabilities `thin`, `thick2`, `thick3` (otherwise unchanged).
    MNIST's strokes are all about 2-3 pixels wide; felt pens and finger drawings are not."""

    def __init__(self, thin=0.15, thick2=0.15, thick3=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.thin, self.thick2, self.thick3, self.seed = thin, thick2, thick3, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        draw = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.generator)
        out = images
        bound = 0.0
        for probability, change in ((self.thin, erode), (self.thick2, lambda x: dilate(x, 2)),
                                    (self.thick3, lambda x: dilate(x, 3))):
            if probability:
                out = ops.where((draw >= bound) & (draw < bound + probability), change(images), out)
                bound += probability
        return out

    def get_config(self):
        return {**super().get_config(), "thin": self.thin, "thick2": self.thick2, "thick3": self.thick3,
                "seed": self.seed}


def dilate(images, size):
    """Grey dilation: each pixel becomes the brightest in its `size` x `size` neighbourhood."""
    return ops.max_pool(images, size, strides=1, padding="same")


def erode(images, size=2):
    """Grey erosion: each pixel becomes the darkest in its neighbourhood (light ink gets thinner)."""
    return -ops.max_pool(-images, size, strides=1, padding="same")


class RandomInk(layers.Layer):
    """Scale each image's ink by a factor drawn from [low, 1] with probability `rate`: pencil and
    poorly lit photos give faint digits whose brightest stroke is far from white."""

    def __init__(self, low=0.5, rate=0.3, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.low, self.rate, self.seed = low, rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        n = ops.shape(images)[0]
        factor = keras.random.uniform((n, 1, 1, 1), self.low, 1.0, seed=self.generator)
        apply = keras.random.uniform((n, 1, 1, 1), seed=self.generator) < self.rate
        return images * ops.where(apply, factor, 1.0)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "rate": self.rate, "seed": self.seed}
