"""CIFAR-10-C corruptions on real photos (scikit-image's, at CIFAR-10's 32x32): reproducible,
shape-keeping, stronger with severity, each doing what it says; and the bench part that reads them."""

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.color import rgb2hsv

import imgcls.robustness.cifar_c as cifar_c
from imgcls.bench.cifar_c import cifar_c_line, evenly, measure, print_cifar_c
from imgcls.errors import ImgclsError
from imgcls.robustness.cifar_c import CORRUPTIONS, corrupt

PAPER_ORDER = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "fog", "brightness", "contrast", "elastic", "pixelate", "jpeg"]
FIXED = ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg"]  # no random numbers
# the paper's severities grow steadily for these; glass blur and the elastic warp trade one kind of
# damage for another between levels
GROWING = [name for name in PAPER_ORDER if name not in ("glass_blur", "elastic")]


@pytest.fixture(scope="module")
def photos():
    """Eight real photos at 32x32: four whole, four middle crops."""
    pictures = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    crops = [p[p.shape[0] // 4:-p.shape[0] // 4, p.shape[1] // 4:-p.shape[1] // 4] for p in pictures]
    return np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.Resampling.LANCZOS))
                     for p in pictures + crops])


def change(photos, name, severity, seed=0):
    return np.abs(corrupt(photos, name, severity, seed).astype(float) - photos).mean()


def test_fourteen_corruptions_in_the_papers_order_frost_left_out():
    assert list(CORRUPTIONS) == PAPER_ORDER
    assert all(len(levels) == 5 for _, levels in CORRUPTIONS.values())


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_every_photo_changes_keeping_shape_and_dtype(name, photos):
    out = corrupt(photos, name, 3)
    assert out.shape == photos.shape and out.dtype == np.uint8
    assert (out != photos).any(axis=(1, 2, 3)).all()


@pytest.mark.parametrize("name", GROWING)
def test_higher_severities_change_more(name, photos):
    changes = [change(photos, name, severity) for severity in (1, 3, 5)]
    assert changes[0] < changes[1] < changes[2]


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_a_seed_gives_the_same_photos_whatever_came_before_or_follows(name, photos, monkeypatch):
    first = corrupt(photos, name, 4)
    corrupt(photos, "fog", 4, seed=5)
    np.testing.assert_array_equal(corrupt(photos, name, 4), first)
    np.testing.assert_array_equal(corrupt(photos[:3], name, 4), first[:3])
    monkeypatch.setattr(cifar_c, "_CHUNK", 3)  # batch by batch: the same pictures
    np.testing.assert_array_equal(corrupt(photos, name, 4), first)
    other = corrupt(photos, name, 4, seed=1)
    assert np.array_equal(other, first) == (name in FIXED)


def test_gaussian_noise_has_the_severitys_spread(photos):
    grey = np.full((64, 32, 32, 3), 128, np.uint8)  # mid-grey: nothing clipped
    noise = corrupt(grey, "gaussian_noise", 5).astype(float) - 128
    assert noise.std() == pytest.approx(0.10 * 255, rel=0.03) and abs(noise.mean()) < 0.5


def test_impulse_noise_turns_the_severitys_share_of_values_black_or_white():
    grey = np.full((64, 32, 32, 3), 128, np.uint8)
    out = corrupt(grey, "impulse_noise", 5)
    assert np.isin(out[out != 128], (0, 255)).all()
    assert (out != 128).mean() == pytest.approx(0.07, rel=0.1)
    assert (out == 0).mean() == pytest.approx((out == 255).mean(), rel=0.15)


def test_contrast_pulls_each_channel_toward_its_mean(photos):
    out = corrupt(photos, "contrast", 5).astype(float)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 0.15 * photos.std(axis=(1, 2)), atol=0.5)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), photos.mean(axis=(1, 2)), atol=0.5)


def test_brightness_raises_the_hsv_value(photos):
    value = lambda images: rgb2hsv(images / 255.0)[..., 2]  # noqa: E731
    before, after = value(photos), value(corrupt(photos, "brightness", 5))
    room = before < 0.65  # not clipped at white
    np.testing.assert_allclose(after[room], before[room] + 0.3, atol=0.01)


def test_pixelate_and_jpeg_are_pillows_own(photos):
    small = corrupt(photos, "pixelate", 5)
    expected = [np.asarray(Image.fromarray(p).resize((20, 20), Image.Resampling.BOX).resize(
        (32, 32), Image.Resampling.BOX)) for p in photos]
    np.testing.assert_array_equal(small, expected)
    buffer = io.BytesIO()
    Image.fromarray(photos[0]).save(buffer, "JPEG", quality=40)
    np.testing.assert_array_equal(corrupt(photos, "jpeg", 5)[0], np.asarray(Image.open(buffer)))


def test_blurs_soften_and_keep_the_mean(photos):
    def roughness(images):
        return np.abs(np.diff(images.astype(float), axis=2)).mean()
    # glass blur scatters pixels between its two blurs, so it smooths less than the others
    for name, most in (("defocus_blur", 0.8), ("motion_blur", 0.8), ("zoom_blur", 0.8), ("glass_blur", 0.9)):
        out = corrupt(photos, name, 5)
        assert roughness(out) < most * roughness(photos), name
        assert abs(out.astype(float).mean() - photos.mean()) < 6, name


def test_snow_and_fog_lighten_the_scene(photos):
    for name in ("snow", "fog"):
        assert corrupt(photos, name, 5).astype(float).mean() > photos.mean() - 1
    # fog lowers the contrast under its haze, snow adds bright streaks
    assert corrupt(photos, "fog", 5).std() < photos.std()
    assert (corrupt(photos, "snow", 5) == 255).mean() > (photos == 255).mean() + 0.05


def test_bad_input_is_refused_with_the_reason(photos):
    with pytest.raises(ImgclsError, match="uint8 colour pictures shaped"):
        corrupt(photos[..., 0], "fog", 1)
    with pytest.raises(ImgclsError, match="uint8 colour pictures shaped"):
        corrupt(photos.astype(float), "fog", 1)
    with pytest.raises(ImgclsError, match="frost"):
        corrupt(photos, "frost", 1)
    with pytest.raises(ImgclsError, match="severity must be 1 to 5"):
        corrupt(photos, "fog", 6)


def test_bench_part_measures_a_cifar10_run_plain_and_with_its_views(photos, tmp_path, monkeypatch, capsys):
    """A tiny CIFAR-10-shaped run trained on the photos (eight classes, mirror TTA) through the
    part's measure: every corruption and severity, clean beside corrupted, plain and with views."""
    from types import SimpleNamespace

    import keras

    import imgcls.bench.cifar_c as part
    from imgcls.saving import save_model

    monkeypatch.setattr(part, "IMAGES", 4)  # every other photo
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    labels = np.arange(8)
    model.fit(photos, labels, epochs=60, verbose=0)
    file = tmp_path / "model.keras"
    save_model(model, file, {"class_names": [str(i) for i in range(8)], "dataset": "cifar10", "tta_views": 2})
    result = measure(file, SimpleNamespace(x_test=photos, y_test=labels))
    assert result["images"] == 4 and result["tta_views"] == 2
    for kind in ("plain", "tta"):
        assert result[kind]["clean"] == 1.0  # it learnt the eight photos
        assert list(result[kind]["by_corruption"]) == PAPER_ORDER
        assert all(len(row) == 5 for row in result[kind]["by_corruption"].values())
        assert result[kind]["mean"] == pytest.approx(np.mean(list(result[kind]["by_corruption"].values())), abs=1e-4)
        assert result[kind]["mean"] < 1.0  # some corrupted photos are misread
    line = cifar_c_line(result)
    assert line.startswith("cifar10_c clean=1.0000 mean=") and "tta_mean=" in line
    print_cifar_c(result)
    out = capsys.readouterr().out
    assert "CIFAR-10-C with 2 test views" in out and "snow" in out
    assert cifar_c_line({"skipped": "no CIFAR-10"}) == "cifar10_c clean=n/a mean=n/a"


def test_the_bench_takes_as_many_pictures_of_each_class_however_the_set_is_listed():
    by_class = np.repeat(np.arange(10), 1000)  # the JPEG folders: class by class
    shuffled = np.random.default_rng(0).permutation(by_class)
    for labels in (by_class, shuffled):
        x, y = evenly(np.arange(10_000), labels, 2000)
        assert len(x) == 2000 and np.array_equal(labels[x], y)
        assert np.bincount(y, minlength=10).min() >= (200 if labels is by_class else 170)
    assert np.array_equal(evenly(np.arange(8), np.arange(8), 4)[0], [0, 2, 4, 6])


def test_bench_part_refuses_a_model_of_another_dataset(tmp_path, photos):
    from types import SimpleNamespace

    import keras

    from imgcls.saving import save_model

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    save_model(model, tmp_path / "m.keras", {"class_names": [str(i) for i in range(10)], "dataset": "mnist"})
    with pytest.raises(ImgclsError, match="trained on mnist; cifar10-c is for CIFAR-10 models"):
        measure(tmp_path / "m.keras", SimpleNamespace(x_test=photos, y_test=np.arange(8)))
