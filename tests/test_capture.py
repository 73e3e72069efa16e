"""Captured digits: MNIST test digits turned into photo-like pictures of ink on paper."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from imgcls.robustness.capture import capture, compose, write_captured_set


def rng(seed):
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def digits(mnist):
    """A few real test digits, two of each of the first five classes."""
    picks = np.concatenate([np.flatnonzero(mnist.y_test == label)[:2] for label in range(5)])
    return mnist.x_test[picks], mnist.y_test[picks]


def grey(image):
    return np.asarray(image.convert("L"), np.float32)


def test_same_seed_same_picture_other_seed_another(digits):
    digit = digits[0][0]
    first, again, other = capture(digit, rng(5)), capture(digit, rng(5)), capture(digit, rng(6))
    assert first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert first.size != other.size or not np.array_equal(np.asarray(first), np.asarray(other))


def test_dark_ink_on_light_paper_in_a_larger_frame(digits):
    on_ink = 0
    for seed, digit in enumerate(digits[0]):
        # capture draws exactly what compose draws, then the camera's part: the same layout
        ink = compose(digit, rng(seed)).ink
        picture = grey(capture(digit, rng(seed)))
        assert picture.shape == ink.shape and min(picture.shape) >= 64
        median = np.median(picture)
        assert median > 100  # light paper, whatever the light
        assert picture[ink > 0.5].mean() < median - 40  # dark ink
        darkest = picture <= np.percentile(picture, 0.5)
        near_ink = ndimage.binary_dilation(ink > 0.1, iterations=2)
        on_ink += (darkest & near_ink).sum() >= 0.8 * darkest.sum()
    # a shadowed corner or the table can now and then out-darken a fine, blurred stroke
    assert on_ink >= len(digits[0]) - 1


def test_the_digit_is_tilted_scaled_and_smooth(digits):
    digit = digits[0][1]
    scenes = [compose(digit, rng(seed)) for seed in range(12)]
    spans = []
    for scene in scenes:
        rows, cols = np.nonzero(scene.ink > 0.5)
        spans.append(max(np.ptp(rows), np.ptp(cols)) / min(scene.ink.shape))
        # anti-aliased, not blocky: the outline is mostly partly covered pixels
        solid = scene.ink > 0.5
        outline = (solid & ~ndimage.binary_erosion(solid)).sum()
        assert ((scene.ink > 0) & (scene.ink < 1)).sum() > outline
    assert 0.2 < min(spans) and max(spans) <= 1
    assert max(spans) > 1.5 * min(spans)
    strokes = [scene.stroke / scene.ink.shape[0] for scene in scenes]
    assert max(strokes) > 2 * min(strokes)  # pens from fine to marker


def test_sizes_vary_and_frames_are_not_all_square(digits):
    sizes = {capture(digit, rng(seed)).size for seed, digit in enumerate(digits[0])}
    assert len(sizes) >= 6
    assert any(w != h for w, h in sizes)
    assert all(64 <= side <= 400 for size in sizes for side in size)


def test_an_empty_digit_is_an_empty_page():
    picture = grey(capture(np.zeros((28, 28), np.uint8), rng(0)))
    assert np.median(picture) > 100


def test_write_captured_set_writes_jpegs_by_label(digits, tmp_path):
    x, y = digits
    written = write_captured_set(x, y, tmp_path / "captured", seed=3)
    assert [label for _, label in written] == [int(label) for label in y]
    files = sorted(p.relative_to(tmp_path / "captured").as_posix() for p in (tmp_path / "captured").rglob("*"))
    expected = sorted(f"{label}/{index}.jpg" for index, label in enumerate(y))
    assert files == sorted({str(label) for label in y} | set(expected))
    for index, (path, label) in enumerate(written):
        assert path == tmp_path / "captured" / str(label) / f"{index}.jpg"
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as image:
            assert image.format == "JPEG"
            # the saved file is the picture capture returns for that index
            again = capture(x[index], np.random.default_rng([3, index]))
            assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(again))
