"""The digit finder: a photographed or scanned digit becomes a centred MNIST-convention frame."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from imgcls.digits import find_ink, to_mnist
from imgcls.robustness import capture
from imgcls.robustness.capture import compose, photograph
from conftest import in_a_box, overexposed_pencil

DIGITS = range(10)  # the first ten MNIST test digits: 7 2 1 0 4 1 4 9 5 9


def on_paper(digit, rng, size=120, frame=(220, 260), at=(50, 70), gradient=0.5):
    """`digit` (light on black) written in dark ink on paper lit unevenly, blurred and noisy."""
    ink = np.zeros(frame, np.float32)
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    top, left = at
    rows, cols = slice(max(top, 0), top + size), slice(max(left, 0), left + size)
    height, width = ink[rows, cols].shape  # the part of the digit inside the frame
    ink[rows, cols] = big[max(-top, 0):, max(-left, 0):][:height, :width]
    yy, xx = np.mgrid[0:frame[0], 0:frame[1]] / np.array(frame).reshape(2, 1, 1)
    light = 1 - gradient * (0.6 * xx + 0.4 * yy)  # a lamp on the left: the right side is darker
    paper = 230 * light * (1 - 0.8 * np.clip(ink, 0, 1))
    paper = ndimage.gaussian_filter(paper, 0.8) + rng.normal(0, 3, frame)
    return np.clip(paper, 0, 255).astype(np.uint8)


def centre_of_mass(frame):
    return np.array(ndimage.center_of_mass(frame.astype(np.float64)))


def long_side(frame):
    left, top, right, bottom = Image.fromarray(frame).getbbox()
    return max(right - left, bottom - top)


def correlation(a, b):
    return np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1]


def assert_recovers(picture, digit):
    """The frame holds the digit centred by mass, 20 px on its long side, looking like the digit."""
    frame = to_mnist(picture)
    assert frame.dtype == np.uint8 and frame.shape == (28, 28)
    assert np.abs(centre_of_mass(frame) - 13.5).max() <= 1.0
    assert 19 <= long_side(frame) <= 21
    assert frame.max() >= 240 and ((frame > 0) & (frame < 200)).sum() > 20  # grey edges, not a mask
    assert correlation(frame, to_mnist(digit)) > 0.75


@pytest.fixture(scope="module")
def digits(mnist):
    return [mnist.x_test[i] for i in DIGITS]


def test_clean_mnist_digit_converts_to_nearly_itself(mnist):
    """Up to a one-pixel shift: MNIST rounded its own centring, so some digits move by a pixel."""
    for digit in mnist.x_test[:50]:
        frame = to_mnist(digit)
        shifted = [np.roll(frame, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert max(correlation(s, digit) for s in shifted) > 0.98
        assert np.abs(centre_of_mass(frame) - centre_of_mass(digit)).max() <= 1.0


@pytest.mark.parametrize("index", DIGITS)
def test_uneven_lighting_on_paper(digits, index):
    picture = on_paper(digits[index], np.random.default_rng(index), gradient=0.6)
    assert_recovers(picture, digits[index])


def test_chalk_on_a_dark_board(digits):
    picture = 255 - on_paper(digits[0], np.random.default_rng(0))  # light strokes, uneven dark board
    assert_recovers(picture, digits[0])


@pytest.mark.parametrize("index", [0, 3, 7])
def test_ruled_line_across_the_digit(digits, index):
    picture = on_paper(digits[index], np.random.default_rng(index)).astype(np.float32)
    yy, xx = np.mgrid[0:picture.shape[0], 0:picture.shape[1]]
    for y in (110, 170):  # one through the digit, one below it, slightly tilted
        line = np.clip(1.5 - np.abs(yy - y - 0.03 * xx), 0, 1)
        picture = picture * (1 - 0.6 * line)
    picture = picture.astype(np.uint8)
    assert_recovers(picture, digits[index])


@pytest.mark.parametrize("at", [(50, -20), (-18, 70), (100, 150)])
def test_digit_touching_the_border(digits, at):
    digit = digits[2]  # a 1, cut a little by the frame's left, top or right edge
    picture = on_paper(digit, np.random.default_rng(1), at=at)
    frame = to_mnist(picture)
    assert np.abs(centre_of_mass(frame) - 13.5).max() <= 1.5
    assert 19 <= long_side(frame) <= 21
    assert correlation(frame, to_mnist(digit)) > 0.6


def test_specks_around_the_digit(digits):
    rng = np.random.default_rng(5)
    picture = on_paper(digits[1], rng).astype(np.float32)
    yy, xx = np.mgrid[0:picture.shape[0], 0:picture.shape[1]]
    for cy, cx in zip(rng.uniform(0, 220, 25), rng.uniform(0, 260, 25)):
        picture[np.hypot(yy - cy, xx - cx) < 2.5] *= 0.3
    assert_recovers(picture.astype(np.uint8), digits[1])


def test_marker_thick_strokes(digits):
    thick = ndimage.grey_dilation(digits[3], size=(3, 3))  # a 0 drawn with a marker
    picture = on_paper(thick, np.random.default_rng(3))
    frame = to_mnist(picture)
    assert correlation(frame, to_mnist(digits[3])) > 0.75


@pytest.mark.parametrize("gradient", [0.0, 0.5])  # a scan, a photo
@pytest.mark.parametrize("index", [0, 3, 7])
def test_digit_in_a_printed_box(digits, index, gradient):
    """The box is the biggest ink at the centre of the picture, and was taken for the digit."""
    picture = on_paper(digits[index], np.random.default_rng(index), gradient=gradient)
    assert_recovers(in_a_box(picture, 30, 50, 192, 212), digits[index])


@pytest.mark.parametrize("box", [(40, -10, 180, 190), (-10, 60, 170, 300)])  # one side, two sides beyond
def test_digit_in_a_box_cut_by_the_picture(digits, box):
    picture = on_paper(digits[0], np.random.default_rng(0), gradient=0.5)
    assert_recovers(in_a_box(picture, *box), digits[0])


def test_digit_touching_its_box(digits):
    """The digit's strokes run into the box: the box goes, and the digit loses only their ends."""
    picture = in_a_box(on_paper(digits[3], np.random.default_rng(3)), 62, 80, 160, 182)  # a 0 touching all four sides
    frame = to_mnist(picture)
    assert 19 <= long_side(frame) <= 21
    assert correlation(frame, to_mnist(digits[3])) > 0.75


@pytest.mark.parametrize("index", [6020, 6057, 6090])
def test_a_small_digit_on_a_photo_of_the_whole_page(mnist, monkeypatch, index):
    """The digit a tenth to a quarter of a large photo's short side is a blur of a few pixels of pen
    at the working size: it is found there, then read from the full picture around it."""
    monkeypatch.setattr(capture, "SPAN", (0.1, 0.25))
    monkeypatch.setattr(capture, "FRAME_PX", (300, 1200))
    rng = np.random.default_rng([61, index])
    photo = Image.open(io.BytesIO(photograph(compose(mnist.x_test[index], rng), rng))).convert("L")
    assert_recovers(np.asarray(photo), mnist.x_test[index])


def test_table_edge_beyond_the_paper(digits):
    picture = on_paper(digits[4], np.random.default_rng(4)).copy()
    picture[:, -18:] = 60  # the dark table along the right side
    assert_recovers(picture, digits[4])


@pytest.mark.parametrize("picture", [
    np.zeros((3000, 1), np.uint8),
    np.full((1, 5000), 200, np.uint8),
    (np.arange(3000) % 256).astype(np.uint8)[:, None],
    np.full((100, 100), 255, np.uint8),
    np.zeros((100, 100), np.uint8),
    np.zeros((0, 0), np.uint8),
    np.full((1, 1), 9, np.uint8),
    np.full((40, 60, 1), 128, np.uint8),
])
def test_odd_shapes_and_blank_pictures_give_a_frame(picture):
    frame = to_mnist(picture)
    assert frame.dtype == np.uint8 and frame.shape == (28, 28)


@pytest.mark.parametrize("picture", [
    np.full((100, 100), 255, np.uint8),
    np.zeros((100, 100), np.uint8),
    np.clip(np.random.default_rng(0).normal(200, 4, (300, 200)), 0, 255).astype(np.uint8),  # plain paper
])
def test_blank_pictures_give_a_black_frame(picture):
    assert not to_mnist(picture).any()


def test_other_frame_shapes(digits):
    frame = to_mnist(on_paper(digits[0], np.random.default_rng(0)), shape=(56, 56))
    assert frame.shape == (56, 56) and long_side(frame) == 40
    assert np.abs(centre_of_mass(frame) - 27.5).max() <= 1.5


def test_find_ink_gives_the_digit_alone(digits):
    ink, mask = find_ink(on_paper(digits[0], np.random.default_rng(0)))
    assert ink.dtype == np.float32 and 0 <= ink.min() and ink.max() == 255
    assert mask.shape == ink.shape and mask.any()
    assert not ink[~ndimage.binary_dilation(mask)].any()  # nothing away from the digit


def test_tight_crops_of_bold_digits(mnist):
    """A scan cropped to the digit (dark on white, no margin): the frame's border shows the paper
    even where a bold digit covers most of the picture. The photo path read such crops inverted."""
    scores = []
    for digit in mnist.x_test[:40]:
        rows, cols = np.nonzero(digit > 30)
        crop = 255 - digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        picture = np.asarray(Image.fromarray(crop).resize((crop.shape[1] * 4, crop.shape[0] * 4), Image.Resampling.BICUBIC))
        scores.append(correlation(to_mnist(picture), to_mnist(digit)))
    assert np.median(scores) > 0.9 and np.mean(np.array(scores) < 0.8) <= 0.05


def test_soft_scans_of_bold_digits_cropped_tight(mnist):
    """A marker digit cropped to its strokes and scanned soft leaves little paper beyond the
    strokes' blurred edges, whose grey made the page look uneven. Taken for a photo, the
    background step ate the bold strokes and left their outline (1 in 6 of these crops)."""
    scores = []
    for digit in mnist.x_test[:40]:
        bold = ndimage.grey_dilation(digit, size=(3, 3))
        rows, cols = np.nonzero(bold > 30)
        crop = Image.fromarray(255 - bold[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
        scan = crop.resize((crop.width * 4, crop.height * 4), Image.Resampling.BICUBIC)
        scan = scan.filter(ImageFilter.GaussianBlur(1.5))
        scores.append(correlation(to_mnist(np.asarray(scan)), to_mnist(bold)))
    assert np.median(scores) > 0.95 and np.mean(np.array(scores) < 0.8) <= 0.05


@pytest.mark.parametrize("light", [(1.3, 0.6, 1), (1.25, 0.5, 0)])  # brightest left, brightest at the top
@pytest.mark.parametrize("index", [0, 3, 7])
def test_faint_pencil_on_a_page_partly_clipped_to_white(digits, index, light):
    """An overexposed photo: the light clips part of the page to white, which hid the rest's
    gradient from the median deviation, so the page was read as a scan and the gradient as ink."""
    assert_recovers(overexposed_pencil(digits[index], np.random.default_rng(index), *light), digits[index])


def test_broken_table_edge_is_not_part_of_the_digit(digits):
    """A textured table beyond the paper breaks into pieces each too small to be a page edge."""
    paper = on_paper(digits[6], np.random.default_rng(6), at=(8, 70))
    picture = paper.copy()
    for left in range(0, picture.shape[1], 26):  # 20-px pieces, 6-px gaps: each touches 8% of the top
        picture[:14, left:left + 20] = 50
    frame, without = to_mnist(picture), to_mnist(paper)
    shifted = [np.roll(frame, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert max(correlation(s, without) for s in shifted) > 0.95  # the same digit, give or take a pixel



@pytest.mark.parametrize("index", [3152, 3192, 3233, 3766])
def test_thin_dark_ink_on_unevenly_lit_photos(mnist, index):
    """Captured photos where a thin digit covers less than the 1% percentile reaches and the light
    spreads the paper as far on its bright side: the median rule alone read the ink as light and
    took a lit patch of paper for the digit. In either polarity, the digit found lies on the ink."""
    rng = np.random.default_rng([7, index])
    scene = compose(mnist.x_test[index], rng)
    photo = np.asarray(Image.open(io.BytesIO(photograph(scene, rng))).convert("L"))
    for picture in (photo, 255 - photo):
        _, mask = find_ink(picture)
        ink = np.asarray(Image.fromarray(scene.ink).resize(mask.shape[::-1], Image.Resampling.BOX)) > 0.05
        assert ndimage.binary_dilation(ink, iterations=2)[mask].mean() > 0.9
