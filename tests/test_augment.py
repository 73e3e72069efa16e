import keras
import numpy as np
import pytest

from imgcls.augment import POLICIES, OnShare, RandomNoise, RandomStroke, augmentation, epoch_callbacks
from imgcls.errors import ImgclsError

SHAPES = {"shift": (28, 28), "nudge": (32, 32, 3), "flip": (32, 32, 3), "altflip": (32, 32, 3), "auto": (32, 32, 3),
          "noise": (32, 32, 3), "digits": (28, 28)}


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_train[:64].astype("float32")


def batch_for(kind, digits):
    shape = SHAPES[kind]
    if len(shape) == 2:
        return digits
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (16, *shape)).astype("float32")


def run(layer, x, training):
    return keras.ops.convert_to_numpy(layer(x, training=training))


@pytest.mark.parametrize("kind", POLICIES)
def test_policy_keeps_shape_dtype_and_range(kind, digits):
    x = batch_for(kind, digits)
    keras.utils.set_random_seed(0)
    out = run(augmentation(kind, SHAPES[kind]), x, training=True)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert np.abs(out - x).mean() > 1  # it changed the pictures


@pytest.mark.parametrize("kind", POLICIES)
def test_policy_is_identity_outside_training(kind, digits):
    x = batch_for(kind, digits)
    layer = augmentation(kind, SHAPES[kind])
    np.testing.assert_array_equal(run(layer, x, training=False), x)


@pytest.mark.parametrize("kind", POLICIES)
def test_policy_is_deterministic_under_the_global_seed(kind, digits):
    x = batch_for(kind, digits)
    outputs = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        outputs.append(run(augmentation(kind, SHAPES[kind]), x, training=True))
    np.testing.assert_array_equal(*outputs)


def test_digits_policy_keeps_the_ink_near_the_middle(digits):
    # Digits must stay digits: most of the ink still lies in MNIST's central 20x20 box.
    keras.utils.set_random_seed(0)
    out = run(augmentation("digits", (28, 28)), digits, training=True)
    inside = out[:, 4:24, 4:24].sum(axis=(1, 2)) / out.sum(axis=(1, 2))
    assert np.median(inside) > 0.9


def ink(images):
    return images.sum(axis=(1, 2, 3))


def test_stroke_thickness_really_thins_and_thickens(digits):
    x = digits[..., None]
    only = {"thin": dict(thin=1.0, thick2=0, thick3=0, hollow=0), "thick2": dict(thin=0, thick2=1.0, thick3=0, hollow=0),
            "thick3": dict(thin=0, thick2=0, thick3=1.0, hollow=0)}
    mass = {name: ink(run(RandomStroke(**p), x, training=True)) for name, p in only.items()}
    assert np.all(mass["thin"] < ink(x))
    assert np.all(mass["thick2"] > ink(x))
    assert np.all(mass["thick3"] > mass["thick2"])


def test_hollow_strokes_keep_only_the_outline(digits):
    x = digits[..., None]
    out = run(RandomStroke(thin=0, thick2=0, thick3=0, hollow=1.0), x, training=True)
    solid = keras.ops.convert_to_numpy(keras.ops.max_pool(-x, 3, strides=1, padding="same")) <= -250
    assert solid.sum() > 100 and out[solid].max() <= 5  # inside the thick parts of the stroke: no ink
    assert ink(out).min() > 0


def test_stroke_thickness_varies_per_image(digits):
    keras.utils.set_random_seed(0)
    x = digits[..., None]
    change = ink(run(RandomStroke(thin=0.3, thick2=0.3, thick3=0.3, hollow=0), x, training=True)) / ink(x)
    assert (change < 0.99).any() and (change > 1.01).any() and np.isclose(change, 1).any()


def test_wrapper_trains_and_the_inner_model_saves_without_random_layers(digits, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28))
    x = keras.layers.Rescaling(1 / 255)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    wrapper = keras.Sequential([augmentation("digits", (28, 28)), model])
    wrapper.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    wrapper.fit(digits.astype("uint8"), np.arange(len(digits)) % 10, batch_size=32, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    names = [type(layer).__name__ for layer in loaded.layers]
    assert not any(name.startswith("Random") or name == "Sequential" for name in names)
    expected = model.predict(digits, verbose=0)
    np.testing.assert_allclose(loaded.predict(digits, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(wrapper.predict(digits, verbose=0), expected, atol=1e-6)  # no augmentation


def test_on_share_augments_only_that_share_of_the_batch(digits):
    keras.utils.set_random_seed(0)
    x = digits[..., None]
    out = run(OnShare(RandomNoise(rate=1.0, amount=0.3), share=0.25), x, training=True)
    changed = np.abs(out - x).max(axis=(1, 2, 3)) > 0
    assert changed[:16].all() and not changed[16:].any()


def test_noise_policy_adds_noise_of_varied_strength_to_half_of_each_batch():
    keras.utils.set_random_seed(0)
    x = np.full((64, 32, 32, 3), 128.0, "float32")  # mid-grey: nothing clipped
    moved = run(augmentation("noise", (32, 32, 3)), x, training=True) - x
    strength = moved.std(axis=(1, 2, 3)) / 255
    assert (strength[32:] == 0).all() and (strength[:32] > 0).all()  # the first half, every picture
    assert strength[:32].max() < 0.1 * 1.05 and strength[:32].min() < 0.02  # from none to 10% of the range
    assert np.abs(moved[:32].mean(axis=(1, 2, 3))).max() < 1  # noise, not a change of brightness


def steps(kind):
    return [type(layer).__name__ for layer in augmentation(kind, (32, 32, 3)).layers]


def test_auto_combines_with_other_policies():
    # "auto,noise" once meant "auto" alone: auto's shift and flip replaced the whole list.
    assert steps("auto") == ["RandomFlip", "RandomTranslation"]
    assert steps("auto,noise") == ["RandomFlip", "RandomTranslation", "OnShare"]
    assert steps("auto") == steps("shift,flip")


def test_unknown_policy_names_the_valid_ones():
    with pytest.raises(ImgclsError, match="digits"):
        augmentation("digit", (28, 28))


def test_digits_policy_rebuilds_from_its_config():
    # Keras clones and summarises layers through their configs; the custom layers must take part.
    config = augmentation("digits", (28, 28)).get_config()
    assert keras.Sequential.from_config(config).get_config() == config


def test_nudge_shifts_whole_pixels_by_at_most_two_with_mirrored_edges():
    """airbench's pad-and-crop: every picture moves by whole pixels, at most 2 each way, and its
    edges are filled from the picture itself (mirrored), never with black."""
    rng = np.random.default_rng(1)
    x = rng.uniform(1, 255, (32, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(3)
    out = run(augmentation("nudge", (32, 32, 3)), x, training=True)
    assert out.min() > 0  # nothing filled with black
    moved = 0
    for picture, nudged in zip(x, out):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if np.array_equal(nudged[2:-2, 2:-2], np.roll(picture, (dy, dx), axis=(0, 1))[2:-2, 2:-2])]
        assert shifts, "not a whole-pixel shift of at most 2"
        moved += shifts[0] != (0, 0)
    assert moved > len(x) // 2


def test_altflip_shows_every_picture_both_ways_over_two_epochs():
    """airbench's alternating flip: each epoch mirrors about half the pictures, the next epoch the
    other half, whatever the order the batches come in."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (200, 8, 8, 3)).astype("float32")
    layer = augmentation("altflip", (8, 8, 3))
    (alternate,) = epoch_callbacks(layer)

    def mirrored(batch):
        out = run(layer, batch, training=True)
        assert all(np.array_equal(o, p) or np.array_equal(o, p[:, ::-1]) for o, p in zip(out, batch))
        return np.array([not np.array_equal(o, p) for o, p in zip(out, batch)])

    alternate.on_epoch_begin(0)
    first = mirrored(x)
    order = rng.permutation(len(x))
    alternate.on_epoch_begin(1)
    second = mirrored(x[order])[np.argsort(order)]
    alternate.on_epoch_begin(2)
    third = mirrored(x)
    assert 70 < first.sum() < 130
    np.testing.assert_array_equal(second, ~first)
    np.testing.assert_array_equal(third, first)
