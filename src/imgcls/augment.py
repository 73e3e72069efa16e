"""Random augmentation for training only, as a wrapper around the model being trained.

`keras.Sequential([augmentation(kind, input_shape), model])` is what gets fitted and only `model`
is saved, so a saved model holds no random layers and loads in any runtime. The augmentation
takes raw float pixels 0-255 shaped like the dataset's arrays, (N, H, W) or (N, H, W, C), returns
the same shape and range, and is the identity with training=False (Keras's predict and evaluate);
like Keras's own image layers, it augments when called directly.

Policies (`kind`, a comma list):
- "shift": translations up to 1/8 of the side, as the fast CIFAR-10 recipes use.
- "nudge": translations up to 2 pixels, edges mirrored, as airbench's pad-and-crop: a small
  shift that keeps a photo's edges natural.
- "flip": horizontal mirror images, for photos and clothes (never digits: a mirrored 2 is no digit).
- "altflip": flips that alternate by epoch, as airbench's: each image is seen one way in one epoch
  and the other way in the next (training needs `epoch_callbacks`).
- "auto": shift, and flip for colour images.
- "noise": camera noise, for photos: Gaussian noise of a random strength, up to 10% of the range,
  on half of each batch (see `CameraNoise`).
- "digits": how handwriting differs between writers, pens, paper and cameras, on half of each
  batch: slant, size, aspect and position (one affine warp), pen width and hollow strokes (grey
  dilation and erosion), faint ink, blur, stray lines, uneven light behind the ink, salt and
  pepper noise (see `digits`).

The custom layers use keras.ops only, so every backend runs them. Keras's RandomElasticTransform
is not used: inside `model.fit` (a batch of unknown size) it gives every image in a batch the
first image's distortion; an elastic field of our own did not improve any benchmark either.
"""

import math

import keras
from keras import layers, ops

from imgcls.errors import unknown

POLICIES = ("auto", "shift", "nudge", "flip", "altflip", "noise", "digits")


def augmentation(kind, input_shape):
    """The training-only augmentation layer for `kind` (see the module docstring) on batches of
    raw pixels shaped (N, *input_shape)."""
    input_shape = tuple(input_shape)
    kinds = set(kind.split(","))
    for name in sorted(kinds - set(POLICIES)):
        raise unknown("augmentation", name, POLICIES)
    channels = input_shape[2] if len(input_shape) == 3 else 1
    if "auto" in kinds:
        kinds |= {"shift", "flip"} if channels == 3 else {"shift"}
    steps = []
    if "flip" in kinds:
        steps.append(layers.RandomFlip("horizontal"))
    if "altflip" in kinds:
        steps.append(AlternatingFlip())
    if "shift" in kinds:
        steps.append(layers.RandomTranslation(0.125, 0.125, fill_mode="constant"))
    if "nudge" in kinds:
        steps.append(layers.RandomTranslation(2 / input_shape[0], 2 / input_shape[1], fill_mode="reflect",
                                              interpolation="nearest"))
    if "noise" in kinds:
        steps.append(OnShare(CameraNoise(), 0.5))
    if "digits" in kinds:
        steps.append(digits())
    if len(input_shape) == 2:  # image layers need a channel axis
        steps = [layers.Reshape((*input_shape, 1)), *steps, layers.Reshape(input_shape)]
    return keras.Sequential([keras.Input(input_shape), *steps], name="augmentation")


@keras.saving.register_keras_serializable("imgcls")
class AlternatingFlip(layers.Layer):
    """Mirror half of the images in even epochs and the other half in odd ones: over any two epochs
    every image is seen both ways, where random flips show half of them the same way twice. Which
    half is a function of the image, the parity of its pixel sum, which mirroring keeps, so no image
    needs an index; `parity` is the epoch's, set by the `AlternateFlips` callback. On CIFAR-10's
    airnet for 3 epochs (seed 0) it did no better than random flips (84.8 against 85.0% with TTA)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parity = self.add_variable((), initializer="zeros", trainable=False, name="parity")

    def call(self, images, training=True):
        if not training:
            return images
        pixel_sum = ops.sum(ops.floor(images), axis=tuple(range(1, len(images.shape))), keepdims=True)
        flip = ops.not_equal(ops.mod(pixel_sum, 2.0), ops.cast(self.parity, images.dtype))
        return ops.where(flip, ops.flip(images, axis=2), images)


class AlternateFlips(keras.callbacks.Callback):
    """Set each AlternatingFlip layer's parity to the epoch's (also right for a resumed run)."""

    def __init__(self, layers):
        super().__init__()
        self.flips = layers

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.flips:
            layer.parity.assign(float(epoch % 2))


def epoch_callbacks(augmentation_model):
    """The callbacks that training with `augmentation_model` needs: those that tell its layers the epoch."""
    flips = [layer for layer in augmentation_model.layers if isinstance(layer, AlternatingFlip)]
    return [AlternateFlips(flips)] if flips else []


@keras.saving.register_keras_serializable("imgcls")
class CameraNoise(layers.Layer):
    """Sensor noise: each pixel value moved by a normal draw, at a strength drawn per picture from
    0 to `strength` of the range. On CIFAR-10's recipe (half of each batch, seeds 0-1) it lifted the
    accuracy on CIFAR-10-C's corruptions from 68.2% to 78.5% with mirror TTA, its noise from 35-49%
    to 80-87%, for 0.1-0.3 point of clean accuracy (see the README's "Robustness")."""

    def __init__(self, strength=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.strength, self.seed = strength, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        sigma = _uniform(self, images, 0.0, self.strength * 255)
        noise = keras.random.normal(ops.shape(images), seed=self.generator)
        return ops.clip(images + sigma * noise, 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "seed": self.seed}


def digits(share=0.5):
    """The "digits" policy: every change below on a share of each batch, the rest left clean.
    Measured with `fast` for two epochs: augmenting half of each batch ended at 99.2-99.3% on
    MNIST's test set against 99.0-99.1% for whole batches, as robust on MNIST-C (96-97%), and
    costs half as much."""
    handwriting = [RandomWarp(), RandomStroke(), RandomInk()]
    page_and_camera = [RandomBlur(), RandomMarks(), RandomBackground(), RandomNoise()]
    return OnShare(keras.Sequential(handwriting + page_and_camera, name="digits"), share)


@keras.saving.register_keras_serializable("imgcls")
class RandomWarp(layers.Layer):
    """Rotate, scale, stretch, shear and shift each image in one bilinear resampling: chaining
    Keras's RandomRotation, RandomZoom, RandomShear and RandomTranslation would blur thin strokes
    four times over, at several times the cost (each of those layers alone costs more than this).

    rotation: degrees either way; zoom: relative size change either way (drawn on a log scale);
    aspect: relative width-to-height change either way; shear: horizontal shift per pixel of
    height, either way (slanted handwriting); shift: fraction of the side either way.
    """

    def __init__(self, rotation=15.0, zoom=0.15, aspect=0.15, shear=0.3, shift=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.aspect, self.shear, self.shift = rotation, zoom, aspect, shear, shift
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        n, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

        def uniform(bound):
            return keras.random.uniform((n,), -bound, bound, seed=self.generator)

        angle = uniform(math.radians(self.rotation))
        scale = ops.exp(uniform(math.log1p(self.zoom)))
        stretch = ops.exp(uniform(math.log1p(self.aspect)))
        shear = uniform(self.shear)
        # Where each output pixel (x, y) samples the input, about the centre c:
        # c + rotation @ shear @ diag(scale * stretch, scale / stretch) @ ((x, y) - c) + shift.
        x_scale, y_scale = scale * stretch, scale / stretch
        cos, sin = ops.cos(angle), ops.sin(angle)
        a0, a1 = cos * x_scale, (cos * shear - sin) * y_scale
        b0, b1 = sin * x_scale, (sin * shear + cos) * y_scale
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2 = cx - a0 * cx - a1 * cy + uniform(self.shift * width)
        b2 = cy - b0 * cx - b1 * cy + uniform(self.shift * height)
        zero = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant")

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom, "aspect": self.aspect,
                "shear": self.shear, "shift": self.shift, "seed": self.seed}


@keras.saving.register_keras_serializable("imgcls")
class RandomStroke(layers.Layer):
    """Change each image's pen at random: thinner (a 2x2 grey erosion), thicker (a 2x2 or 3x3 grey
    dilation) or hollow (the stroke's outline: outlined and double-struck digits, edge maps), with
    probabilities `thin`, `thick2`, `thick3`, `hollow`; otherwise unchanged. MNIST's strokes are
    all about 2-3 pixels wide; fine pens, felt pens and fingers are not."""

    def __init__(self, thin=0.15, thick2=0.15, thick3=0.1, hollow=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.thin, self.thick2, self.thick3, self.hollow, self.seed = thin, thick2, thick3, hollow, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        thick, thin = dilate(images), erode(images)
        # 2x2 windows twice make a 3x3 one: three poolings instead of four
        pens = ((self.thin, thin), (self.thick2, thick), (self.thick3, dilate(thick)), (self.hollow, thick - thin))
        draw = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.generator)
        out, bound = images, 0.0
        for probability, changed in pens:
            out = ops.where((draw >= bound) & (draw < bound + probability), changed, out)
            bound += probability
        return out

    def get_config(self):
        return {**super().get_config(), "thin": self.thin, "thick2": self.thick2, "thick3": self.thick3,
                "hollow": self.hollow, "seed": self.seed}


def dilate(images):
    """Grey dilation: each pixel becomes the brightest of its 2x2 neighbourhood (light ink thickens)."""
    return ops.max_pool(images, 2, strides=1, padding="same")


def erode(images):
    """Grey erosion: each pixel becomes the darkest of its 2x2 neighbourhood (light ink thins)."""
    return -ops.max_pool(-images, 2, strides=1, padding="same")


@keras.saving.register_keras_serializable("imgcls")
class RandomInk(layers.Layer):
    """Scale each image's ink by a factor drawn from [low, 1] with probability `rate`: pencil and
    poorly lit photos give faint digits whose brightest stroke is far from white."""

    def __init__(self, low=0.5, rate=0.3, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.low, self.rate, self.seed = low, rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        n = ops.shape(images)[0]
        factor = keras.random.uniform((n, 1, 1, 1), self.low, 1.0, seed=self.generator)
        apply = keras.random.uniform((n, 1, 1, 1), seed=self.generator) < self.rate
        return images * ops.where(apply, factor, 1.0)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable("imgcls")
class OnShare(layers.Layer):
    """Apply `layer` to a share of each batch only, the first `share` of it (batches come
    shuffled), passing the rest through: the model keeps seeing clean digits, and the
    augmentation costs that share of the time."""

    def __init__(self, layer, share=0.5, **kwargs):
        super().__init__(**kwargs)
        self.layer, self.share = layer, share

    # Both said outright, so Keras need not trace call() with an unknown batch size: JAX cannot slice
    # a share of a batch whose size it does not know yet.
    def build(self, input_shape):
        self.layer.build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, images, training=True):
        if not training:
            return images
        n = ops.shape(images)[0]
        if isinstance(n, int):  # JAX and torch know the batch size here; JAX needs the share's size known
            k = math.ceil(self.share * n)
        else:  # TensorFlow's graphs may leave the batch size unknown until they run
            k = ops.cast(ops.ceil(self.share * ops.cast(n, "float32")), "int32")
        rest = tuple(images.shape[1:])
        zeros = (0,) * len(rest)
        head = ops.slice(images, (0, *zeros), (k, *rest))
        tail = ops.slice(images, (k, *zeros), (n - k, *rest))
        return ops.concatenate([self.layer(head, training=True), tail], axis=0)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer),
                "share": self.share}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "layer": keras.saving.deserialize_keras_object(config["layer"])})


def _chance(layer, images, rate):
    """(N, 1, 1, 1) booleans: which images of the batch get the change, each with probability `rate`."""
    return keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=layer.generator) < rate


def _uniform(layer, images, low, high):
    return keras.random.uniform((ops.shape(images)[0], 1, 1, 1), low, high, seed=layer.generator)


def _grid(images):
    """Pixel row and column coordinates, centred, shaped (1, H, W, 1) for broadcasting."""
    height, width = images.shape[1], images.shape[2]
    y = ops.reshape(ops.arange(height, dtype="float32") - (height - 1) / 2, (1, height, 1, 1))
    x = ops.reshape(ops.arange(width, dtype="float32") - (width - 1) / 2, (1, 1, width, 1))
    return y, x


@keras.saving.register_keras_serializable("imgcls")
class RandomBlur(layers.Layer):
    """Blur a share `rate` of the images by a random amount (a blend with a 3x3 box blur): out of
    focus or shaken photos, low-resolution scans."""

    def __init__(self, rate=0.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        amount = ops.where(_chance(self, images, self.rate), _uniform(self, images, 0.3, 1.0), 0.0)
        return images + amount * (ops.average_pool(images, 3, strides=1, padding="same") - images)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable("imgcls")
class RandomMarks(layers.Layer):
    """Stray ink on a share `rate` of the images: a line across the picture at a random angle,
    solid or dashed, straight or wavy (ruled paper, a crossing stroke, a scribble)."""

    def __init__(self, rate=0.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        y, x = _grid(images)
        angle = _uniform(self, images, 0.0, math.pi)
        offset = _uniform(self, images, -0.4, 0.4) * images.shape[1]
        across = x * ops.cos(angle) + y * ops.sin(angle) - offset
        along = y * ops.cos(angle) - x * ops.sin(angle)
        period = _uniform(self, images, 3.0, 6.0)
        wave = ops.where(_chance(self, images, 0.3), _uniform(self, images, 0.0, 2.5), 0.0)
        across = across - wave * (4 * ops.abs(along / period - ops.floor(along / period + 0.5)) - 1)
        width = _uniform(self, images, 0.7, 1.8)
        line = ops.clip(1 + width - ops.abs(across), 0.0, 1.0)
        dashes = ops.where(_chance(self, images, 0.3), ops.floor(along / period * 2) % 2, 1.0)
        ink = line * dashes * _uniform(self, images, 0.5, 1.0) * 255
        return ops.where(_chance(self, images, self.rate), ops.maximum(images, ink), images)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable("imgcls")
class RandomNoise(layers.Layer):
    """Salt and pepper on a share `rate` of the images, up to `amount` of their pixels turned
    white or black: dust, paper grain, sensor noise."""

    def __init__(self, rate=0.1, amount=0.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.amount, self.seed = rate, amount, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        share = _uniform(self, images, 0.0, self.amount)
        draw = keras.random.uniform(ops.shape(images), seed=self.generator)
        speckled = ops.where(draw < share, ops.where(draw < share / 2, 0.0, 255.0), images)
        return ops.where(_chance(self, images, self.rate), speckled, images)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "amount": self.amount, "seed": self.seed}


@keras.saving.register_keras_serializable("imgcls")
class RandomBackground(layers.Layer):
    """Light behind the ink on a share `rate` of the images: an even grey level up to `level`,
    smooth shading up to `shade`, and with probability `patch` a light region beyond a random
    straight edge (a shadow, the paper's edge, the table), all as fractions of white. Blended as
    light is (a screen blend), so white ink stays white while the background rises."""

    def __init__(self, rate=0.3, level=0.6, shade=0.5, patch=0.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.level, self.shade, self.patch, self.seed = rate, level, shade, patch, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        n, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        lattice = keras.random.uniform((n, 3, 3, 1), seed=self.generator)
        shading = ops.image.resize(lattice, (height, width), interpolation="bilinear")
        y, x = _grid(images)
        angle = _uniform(self, images, 0.0, 2 * math.pi)
        edge = x * ops.cos(angle) + y * ops.sin(angle) - _uniform(self, images, 0.2, 0.5) * height
        region = ops.where(_chance(self, images, self.patch), ops.clip(edge, 0.0, 1.0), 0.0)
        light = (_uniform(self, images, 0.0, self.level) + _uniform(self, images, 0.0, self.shade) * shading
                 + _uniform(self, images, 0.5, 1.0) * region)
        light = ops.where(_chance(self, images, self.rate), ops.clip(light, 0.0, 1.0) * 255, 0.0)
        return ops.clip(images + light - images * light / 255, 0.0, 255.0)  # float round-off past 255

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "level": self.level, "shade": self.shade,
                "patch": self.patch, "seed": self.seed}
