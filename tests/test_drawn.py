"""Drawn digits: MNIST digits traced into pen strokes, and drawn through the real page in Chromium."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from imgcls.images import to_model_input
from imgcls.models import build_model
from imgcls.robustness.drawn import CHROMIUM, read_drawn, render_strokes, strokes_for, trace_strokes
from imgcls.saving import save_model
from imgcls.serve import create_app
from conftest import serve_in_thread

CLASSES = [str(i) for i in range(10)]


def examples(mnist, per_class=3):
    """The first test digits of each class: loops (0, 6, 8, 9) and open strokes alike."""
    return np.concatenate([np.flatnonzero(mnist.y_test == k)[:per_class] for k in range(10)])


def covered(ink, by, grow):
    """The share of `ink` lying within `by` grown by `grow` pixels."""
    return (ink & ndimage.binary_dilation(by, iterations=grow)).sum() / ink.sum()


def redraw_in_place(digit):
    """The traced strokes redrawn over the digit at ten times its size with a pen as wide as the
    digit's own (ink area over stroke length), then shrunk back to 28x28."""
    strokes = trace_strokes(digit)
    length = sum(np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in strokes)
    pen = np.clip((digit > 127).sum() / length, 1.5, 4)
    big = render_strokes([[(x * 10 + 5, y * 10 + 5) for x, y in s] for s in strokes], pen * 10, (280, 280))
    return np.asarray(Image.fromarray(big).resize((28, 28), Image.Resampling.BOX))


def test_traced_strokes_redraw_the_digit(mnist):
    for i in examples(mnist):
        digit, redrawn = mnist.x_test[i] > 96, redraw_in_place(mnist.x_test[i]) > 96
        assert covered(redrawn, digit, 1) > 0.93, (i, mnist.y_test[i])
        assert covered(digit, redrawn, 1) > 0.93, (i, mnist.y_test[i])


def test_a_zero_is_one_closed_stroke(mnist):
    for i in np.flatnonzero(mnist.y_test == 0)[:3]:
        (stroke,) = trace_strokes(mnist.x_test[i])
        assert np.linalg.norm(stroke[0] - stroke[-1]) < 1.5 and len(stroke) > 6


def test_strokes_are_deterministic_for_a_seed(mnist):
    digit = mnist.x_test[0]
    first, again = strokes_for(digit, np.random.default_rng(5)), strokes_for(digit, np.random.default_rng(5))
    assert first == again
    assert strokes_for(digit, np.random.default_rng(6)) != first


def test_placed_strokes_fit_the_canvas_and_read_as_the_digit(mnist):
    """Every size, place, slant and pen stays on the canvas, and what the server makes of the
    drawing (cropped, scaled to 20x20, centred by mass) overlaps the original digit."""
    rng = np.random.default_rng(0)
    back, forth, spans, pens = [], [], [], []
    for i in examples(mnist):
        polylines, pen = strokes_for(mnist.x_test[i], rng, canvas=(280, 240))
        points = np.concatenate(polylines)
        assert (points >= pen / 2).all() and (points <= np.array([280, 240]) - pen / 2).all()
        spans.append((points.max(0) - points.min(0)).max() + pen)
        pens.append(pen)
        seen = to_model_input(Image.fromarray(render_strokes(polylines, pen, (280, 240))), (28, 28), "digits") > 96
        digit = mnist.x_test[i] > 96
        back.append(covered(seen, digit, 2))
        forth.append(covered(digit, seen, 2))
    assert min(back) > 0.8 and np.mean(back) > 0.95
    assert np.mean(forth) > 0.9
    assert min(spans) < 0.45 * 240 and max(spans) > 0.75 * 240  # small digits and large ones
    assert min(pens) < 6 and max(pens) > 20  # fine pens and thick ones


def test_render_strokes_draws_round_ended_lines():
    image = render_strokes([[(10, 10), (50, 10)], [(30, 40)]], 8, (64, 48))
    assert image.shape == (48, 64) and image.dtype == np.uint8
    assert image[10, 8] == 255 and image[10, 52] == 255 and image[10, 30] == 255  # caps beyond the ends
    assert image[40, 30] == 255 and image[30, 30] == 0 and image[16, 30] == 0


@pytest.fixture
def untrained_server(tmp_path):
    """The real service for an untrained network, in a thread, counting the /predict requests
    that reach it."""
    path = tmp_path / "model.keras"
    save_model(build_model("cnn1", (28, 28), 10), path,
               {"class_names": CLASSES, "dataset": "mnist", "model": "cnn1"})
    app, predicts = create_app(path), []

    async def counting(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/predict":
            predicts.append(scope["method"])
        await app(scope, receive, send)

    for url in serve_in_thread(counting):
        yield url, predicts


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_digits_drawn_on_the_page_get_the_pages_answer(untrained_server, mnist):
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    url, predicts = untrained_server
    picked = examples(mnist, per_class=1)[[0, 4, 8]]  # a 0, a 4 (two strokes), an 8
    result = read_drawn(url, mnist.x_test[picked], mnist.y_test[picked], seed=1)
    assert len(result["predicted"]) == 3 and set(result["predicted"]) <= set(CLASSES)
    assert result["requests"] == result["strokes"] and sum(result["strokes"]) >= 4
    assert predicts == ["POST"] * sum(result["strokes"])  # one upload per stroke, from the page
    assert 0 <= result["accuracy"] <= 1
