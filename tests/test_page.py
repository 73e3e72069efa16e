"""The drawing page in a real browser (headless Chromium): draw a digit with the mouse, see the answer."""

import io
import os
from pathlib import Path

import keras
import pytest
from PIL import Image, ImageOps

from imgcls.models import build_model
from imgcls.saving import save_model
from imgcls.serve import create_app
from conftest import press_stroke, serve_in_thread

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def digit_model(mnist, tmp_path_factory):
    """A dense network trained for seconds: enough to read a clearly drawn 7."""
    keras.utils.set_random_seed(0)
    model = build_model("dense", (28, 28), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(mnist.x_train[:10000], mnist.y_train[:10000], epochs=2, batch_size=128, verbose=0)
    path = tmp_path_factory.mktemp("run") / "model.keras"
    save_model(model, path, {"class_names": list(mnist.class_names), "dataset": "mnist", "model": "dense"})
    return path


@pytest.fixture(scope="module")
def server_url(digit_model):
    yield from serve_in_thread(create_app(digit_model))


@pytest.fixture
def page(server_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 820, "height": 560})
        page.goto(server_url)
        page.wait_for_selector("body[data-ready]")
        yield page
        browser.close()


def test_drawing_a_digit_shows_its_prediction(page):
    press_stroke(page)
    with page.expect_response("**/predict**") as answer:
        page.mouse.up()  # the end of a stroke sends the drawing
    assert answer.value.ok
    page.locator(".bar").nth(2).wait_for()
    labels = page.locator(".bar .label").all_inner_texts()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "page.png")
    assert len(labels) == 3 and labels[0] == "7", labels
    page.click("#clear")
    assert page.locator(".bar").count() == 0


def test_uploading_a_picture_shows_its_prediction(page, mnist, tmp_path):
    """A dark digit on white, ten times MNIST's size: the server's preprocessing makes it MNIST-like."""
    picture = ImageOps.invert(Image.fromarray(mnist.x_test[0])).resize((280, 280))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    with page.expect_response("**/predict**") as answer:
        page.set_input_files("#upload", files=[{"name": "seven.png", "mimeType": "image/png",
                                                "buffer": buffer.getvalue()}])
    assert answer.value.ok
    page.locator(".bar").nth(2).wait_for()
    assert page.locator("#status").inner_text() == ""


def test_the_page_sends_the_api_key_given_in_its_address(digit_model):
    import contextlib

    with contextlib.closing(serve_in_thread(create_app(digit_model, api_key="s3cret"))) as urls:
        url = next(urls)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            page.goto(url + "#key=s3cret")
            page.wait_for_selector("body[data-ready]")
            assert "classes" in page.locator("#model").inner_text()  # /model answered with the key
            page.goto("about:blank")
            page.goto(url)  # no key: the page says what is wrong instead of failing silently
            page.wait_for_timeout(1000)
            assert "classes" not in page.locator("#model").inner_text()
            browser.close()
