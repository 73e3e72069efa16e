"""MNIST-C corruptions on real test digits: reproducible, shape-keeping, and each doing what it says."""

import numpy as np
import pytest
from scipy import ndimage

from imgcls.errors import ImgclsError
from imgcls.robustness.corruptions import CORRUPTIONS, corrupt, corruption_rng, mnist_c

PAPER_ORDER = ["shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
               "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag",
               "canny_edges"]
FIXED = ["scale", "brightness", "stripe", "canny_edges"]  # the ones that draw no random numbers
RANDOM = [name for name in PAPER_ORDER if name not in FIXED]


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:12]


@pytest.fixture(scope="module")
def corrupted(digits):
    return mnist_c(digits, seed=0)


def centre_of_mass(images):
    return np.array([ndimage.center_of_mass(image.astype(float)) for image in images])


def test_the_fifteen_corruptions_in_the_papers_order(corrupted):
    assert list(CORRUPTIONS) == PAPER_ORDER
    assert list(corrupted) == PAPER_ORDER


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_every_picture_changes_but_keeps_shape_and_dtype(name, digits, corrupted):
    out = corrupted[name]
    assert out.shape == digits.shape and out.dtype == np.uint8
    assert (out != digits).any(axis=(1, 2)).all()
    single = CORRUPTIONS[name](digits[0], corruption_rng(name, 0))
    assert single.shape == (28, 28) and single.dtype == np.uint8


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_a_seed_gives_the_same_pictures_whatever_came_before(name, digits, corrupted):
    # `corrupted` was made with all the others before it; this one alone, after a different seed
    corrupt(digits, "fog", seed=5)
    np.testing.assert_array_equal(corrupt(digits, name, seed=0), corrupted[name])
    np.testing.assert_array_equal(mnist_c(digits, seed=0, names=[name])[name], corrupted[name])


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_another_seed_changes_only_the_random_ones(name, digits, corrupted):
    other = corrupt(digits, name, seed=1)
    if name in RANDOM:
        assert not np.array_equal(other, corrupted[name])
    else:
        np.testing.assert_array_equal(other, corrupted[name])


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_batches_equal_one_image_at_a_time_in_order(name, digits, corrupted):
    rng = corruption_rng(name, 0)
    one_by_one = np.stack([CORRUPTIONS[name](image, rng) for image in digits])
    np.testing.assert_array_equal(one_by_one, corrupted[name])
    np.testing.assert_array_equal(corrupt(digits[:5], name), corrupted[name][:5])


def test_shot_noise_counts_three_photons_at_full_white(corrupted):
    assert set(np.unique(corrupted["shot_noise"])) <= {0, 85, 170, 255}


def test_impulse_noise_turns_about_a_sixth_of_pixels_black_or_white(digits, corrupted):
    out = corrupted["impulse_noise"]
    changed = out != digits
    assert set(np.unique(out[changed])) <= {0, 255}
    salt = (out == 255) & (digits < 255)
    assert 0.06 < salt.mean() < 0.11  # half of 17%, less the few pixels that were already white


@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "rotate", "translate"])
def test_blurs_and_moves_keep_the_ink(name, digits, corrupted):
    ratio = corrupted[name].sum(axis=(1, 2)) / digits.sum(axis=(1, 2))
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio


def test_blurs_soften_the_strokes(digits, corrupted):
    for name in ["glass_blur", "motion_blur"]:
        assert (corrupted[name].max(axis=(1, 2)) < digits.max(axis=(1, 2))).mean() > 0.5


def test_translate_moves_the_centre_of_mass_three_pixels_each_way(digits, corrupted):
    shift = centre_of_mass(corrupted["translate"]) - centre_of_mass(digits)
    np.testing.assert_allclose(np.abs(shift), 3, atol=0.3)
    assert len({tuple(np.sign(s)) for s in shift}) > 1  # directions vary


def test_rotate_turns_the_digit_by_about_23_degrees(digits, corrupted):
    def orientation(images):
        out = []
        for image in images.astype(float):
            rows, cols = np.nonzero(image)
            w = image[rows, cols]
            cov = np.cov(np.stack([cols, rows]), aweights=w)
            out.append(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
        return np.array(out)
    turn = np.abs(orientation(corrupted["rotate"]) - orientation(digits))
    assert np.median(np.degrees(turn)) == pytest.approx(23, abs=5)


def test_scale_shrinks_the_digit_to_seven_tenths(digits, corrupted):
    def height(images):
        return np.array([np.ptp(np.nonzero(image > 127)[0]) for image in images])
    ratio = height(corrupted["scale"]) / height(digits)
    assert np.all((ratio > 0.6) & (ratio < 0.8)), ratio


def test_brightness_lifts_the_background_to_mid_grey(digits, corrupted):
    out = corrupted["brightness"]
    assert np.all(out[digits == 0] == 128)
    assert out.mean() > digits.mean() + 100


def test_stripe_inverts_the_outer_seven_columns_only(digits, corrupted):
    out = corrupted["stripe"]
    np.testing.assert_array_equal(out[:, :, :7], 255 - digits[:, :, :7])
    np.testing.assert_array_equal(out[:, :, 21:], 255 - digits[:, :, 21:])
    np.testing.assert_array_equal(out[:, :, 7:21], digits[:, :, 7:21])


def test_fog_veils_the_picture_and_lowers_contrast(digits, corrupted):
    out = corrupted["fog"].astype(int)
    assert np.all(out.max(axis=(1, 2)) - out.min(axis=(1, 2)) < 160)
    assert (out[digits == 0] > 0).mean() > 0.95  # the black background is hazed over


def test_spatter_paints_dark_grey_mud_over_the_picture(digits, corrupted):
    out, before = corrupted["spatter"].astype(int), digits.astype(int)
    changed = out != before
    assert changed.any()
    low, high = np.minimum(before, 63), np.maximum(before, 63)
    assert np.all((out[changed] >= low[changed] - 1) & (out[changed] <= high[changed] + 1))


def test_dotted_line_only_adds_ink_in_dashes(digits, corrupted):
    out = corrupted["dotted_line"]
    assert np.all(out >= digits)
    gaps = (np.arange(28) // 2) % 2 == 0
    np.testing.assert_array_equal(out[:, :, gaps], digits[:, :, gaps])


def test_zigzag_only_adds_ink_between_columns_2_and_25(digits, corrupted):
    out = corrupted["zigzag"]
    assert np.all(out >= digits)
    np.testing.assert_array_equal(out[:, :, :2], digits[:, :, :2])
    np.testing.assert_array_equal(out[:, :, 26:], digits[:, :, 26:])


def test_canny_edges_leave_thin_outlines_of_the_digit(digits, corrupted):
    edges = corrupted["canny_edges"] > 0
    assert set(np.unique(corrupted["canny_edges"])) == {0, 255}
    assert edges.any(axis=(1, 2)).all()
    thick = ndimage.binary_erosion(edges, structure=np.ones((1, 3, 3)))
    assert not thick.any()  # no solid 3x3 patch: lines, not filled strokes
    near_ink = ndimage.binary_dilation(digits > 127, structure=np.ones((1, 3, 3)), iterations=2)
    assert np.all(near_ink[edges])


def test_unknown_names_are_a_clear_error(digits):
    with pytest.raises(ImgclsError, match="unknown corruption 'fogg'.*fog.*Valid: shot_noise"):
        corrupt(digits, "fogg")
    with pytest.raises(ImgclsError, match="canny_edges"):
        mnist_c(digits, names=["rotate", "blur"])


def test_images_must_be_uint8_28x28(digits):
    with pytest.raises(ImgclsError, match="uint8"):
        corrupt(digits / 255.0, "rotate")
    with pytest.raises(ImgclsError, match=r"\(N, 28, 28\)"):
        corrupt(digits[0], "rotate")
