"""The HTTP service: good requests get top-k classes; bad ones a clear JSON error, and serving goes on."""

import base64
import io
import json
import struct
from concurrent.futures import ThreadPoolExecutor
import warnings
import zlib

import keras
import numpy as np
import pytest
from PIL import Image

from imgcls.errors import ImgclsError
from imgcls.models import build_model
from imgcls.saving import save_model
from imgcls.serve import create_app
from imgcls.views import ViewAveraged

CLASSES = ["zero", "one", "two"]
LIMIT = 100_000


def png(size=(28, 28), colour=0, mode="L"):
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def png_declaring(width, height):
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's calling card."""
    data = bytearray(png((1, 1)))
    ihdr = struct.pack(">II", width, height) + data[24:29]  # the header keeps its bit depth and colour type
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def b64(data):
    return base64.b64encode(data).decode()


def make_client(app):
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():  # starlette would rather use httpx2; httpx works the same here
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    save_model(build_model("dense", (28, 28), len(CLASSES)), folder / "model.keras",
               {"class_names": CLASSES, "dataset": "mnist", "model": "dense"})
    (folder / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    return folder


@pytest.fixture(scope="module")
def client(run_folder):
    return make_client(create_app(run_folder, max_upload_bytes=LIMIT))


def assert_top(top, k=3):
    assert len(top) == k and {t["class"] for t in top} <= set(CLASSES)
    assert all(0 <= t["probability"] <= 1 for t in top)
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)


def test_health_and_model(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["name"] == "dense" and info["classes"] == CLASSES and info["input_shape"] == [28, 28]
    assert info["dataset"] == "mnist" and info["preprocessing"] == "digits"
    assert info["metrics"] == {"test_accuracy": 0.5}


def test_predict_multipart_and_base64(client):
    answer = client.post("/predict", files={"file": ("digit.png", png(colour=255))})
    assert answer.status_code == 200
    assert_top(answer.json()["top"])
    assert_top(client.post("/predict?top_k=2", files={"file": ("d.png", png())}).json()["top"], k=2)
    assert_top(client.post("/predict", files={"file": ("d.png", png())}, data={"top_k": "1"}).json()["top"], k=1)
    by_json = client.post("/predict", json={"image": b64(png(colour=255)), "top_k": 2}).json()
    assert by_json["top"] == answer.json()["top"][:2]
    data_url = client.post("/predict", json={"image": "data:image/png;base64," + b64(png(colour=255))})
    assert data_url.json()["top"] == answer.json()["top"]


def test_predict_batches(client):
    pictures = [png(colour=255), png(size=(300, 200), colour=128, mode="RGB"), png()]
    files = [("files", (f"{i}.png", data)) for i, data in enumerate(pictures)]
    results = client.post("/predict", files=files).json()["results"]
    assert [r["file"] for r in results] == ["0.png", "1.png", "2.png"]
    for result in results:
        assert_top(result["top"])
    by_json = client.post("/predict", json={"images": [b64(p) for p in pictures]}).json()["results"]
    assert [r["top"] for r in by_json] == [r["top"] for r in results]
    one = client.post("/predict", files={"file": ("0.png", pictures[0])}).json()["top"]
    assert one == results[0]["top"]


BAD_REQUESTS = [
    ("no file field", 422, {"files": {"picture": ("a.png", png())}}, "no image"),
    ("no image in JSON", 422, {"json": {"top_k": 3}}, "no image"),
    ("no body", 422, {}, "no image"),
    ("bad base64", 422, {"json": {"image": "not base64!"}}, "not valid base64"),
    ("bad JSON", 422, {"content": b"{", "headers": {"content-type": "application/json"}}, "not valid JSON"),
    ("bad top_k", 422, {"json": {"image": b64(png()), "top_k": "many"}}, "top_k"),
    ("text file", 415, {"files": {"file": ("notes.png", b"hello")}}, "notes.png is not an image"),
    ("text as base64", 415, {"json": {"images": [b64(png()), b64(b"hello")]}}, "images[1] is not an image"),
    ("wrong content type", 415, {"content": b"hello", "headers": {"content-type": "text/plain"}}, "text/plain"),
    ("declared too large", 413, {"files": {"file": ("big.png", b"\0" * (LIMIT + 1))}}, "upload limit"),
    ("streamed too large", 413, {"content": (b"\0" * 10_000 for _ in range(11)),
                                 "headers": {"content-type": "application/json"}}, "upload limit"),
    ("too many images", 413, {"json": {"images": [b64(png())] * 65}}, "65 images"),
    ("too many pixels", 413, {"files": {"file": ("bomb.png", png_declaring(8000, 8000))}}, "8000x8000"),
    ("decompression bomb", 413, {"files": {"file": ("bomb.png", png_declaring(50000, 50000))}}, "bomb.png"),
]


@pytest.mark.parametrize(("status", "request_", "message"), [r[1:] for r in BAD_REQUESTS],
                         ids=[r[0] for r in BAD_REQUESTS])
def test_bad_requests_get_a_clear_error(client, status, request_, message):
    answer = client.post("/predict", **request_)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def test_service_keeps_serving_after_errors(client):
    for _, _, request_, _ in BAD_REQUESTS:
        request_ = dict(request_)
        if "content" in request_ and not isinstance(request_["content"], bytes):
            request_["content"] = (b"\0" * 10_000 for _ in range(11))  # a fresh stream
        assert client.post("/predict", **request_).status_code >= 400
    assert client.get("/health").status_code == 200
    assert_top(client.post("/predict", files={"file": ("d.png", png())}).json()["top"])


def test_concurrent_requests_share_model_calls_and_get_their_own_answers(run_folder, monkeypatch):
    app = create_app(run_folder)
    pictures = [png(size=(20 + i, 30), colour=10 * i) for i in range(16)]
    with make_client(app) as client:  # one event loop for all requests, as under uvicorn
        alone = [client.post("/predict", files={"file": ("p.png", p)}).json() for p in pictures]
        calls = []
        model = app.state.model
        original = model.predict_on_batch
        monkeypatch.setattr(model, "predict_on_batch", lambda x: calls.append(len(x)) or original(x))
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda p: client.post("/predict", files={"file": ("p.png", p)}).json(),
                                     pictures))
    assert together == alone
    assert sum(calls) == 16 and len(calls) < 16


def test_page_and_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)


def test_colour_models_take_any_picture(tmp_path):
    save_model(build_model("dense", (32, 32, 3), 2), tmp_path / "model.keras",
               {"class_names": ["cat", "dog"], "dataset": "cifar10", "model": "dense"})
    client = make_client(create_app(tmp_path / "model.keras"))
    assert client.get("/model").json()["metrics"] is None
    for picture in (png(size=(500, 300), colour=(200, 10, 10), mode="RGB"), png(size=(20, 20), mode="LA")):
        top = client.post("/predict", files={"file": ("p.png", picture)}).json()["top"]
        assert len(top) == 2 and {t["class"] for t in top} == {"cat", "dog"}


def test_tta_serves_the_views_the_model_was_measured_with(tmp_path, run_folder):
    """--tta: each answer averages the picture and its mirror, as the run's test_accuracy_tta did;
    refused, with the reason, for a model never measured so."""
    keras.utils.set_random_seed(0)
    model = build_model("cnn1", (28, 28), 3)
    save_model(model, tmp_path / "model.keras", {"class_names": CLASSES, "dataset": "fashion_mnist",
                                                 "model": "cnn1", "tta_views": 2})
    client = make_client(create_app(tmp_path / "model.keras", tta=True, preprocess=False))
    assert client.get("/model").json()["tta_views"] == 2
    pixels = np.zeros((1, 28, 28), dtype=np.uint8)
    pixels[0, 4:24, 2:9] = 255  # a bar on the left: its mirror is another picture
    buffer = io.BytesIO()
    Image.fromarray(pixels[0]).save(buffer, "PNG")
    top = client.post("/predict", files={"file": ("bar.png", buffer.getvalue())}).json()["top"]
    expected = ViewAveraged(model, 2).predict_on_batch(pixels)[0]
    assert not np.allclose(expected, model.predict_on_batch(pixels)[0], atol=1e-5)  # so the views show
    np.testing.assert_allclose([t["probability"] for t in top], np.sort(expected)[::-1], atol=2e-6)
    with pytest.raises(ImgclsError, match="was not trained with test-time augmentation"):
        create_app(run_folder, tta=True)
    assert make_client(create_app(run_folder)).get("/model").json()["tta_views"] is None


def test_metrics_count_requests_statuses_latency_and_batch_sizes(run_folder):
    client = make_client(create_app(run_folder))
    assert client.get("/ready").json() == {"status": "ready"}
    for _ in range(3):
        assert client.post("/predict", files={"file": ("a.png", png())}).status_code == 200
    assert client.post("/predict", files={"file": ("b.txt", b"not an image")}).status_code == 415
    assert client.post("/predict", files=[("files", (f"{i}.png", png())) for i in range(5)]).status_code == 200
    text = client.get("/metrics").text
    assert 'imgcls_requests_total{route="/predict",status="200"} 4.0' in text
    assert 'imgcls_requests_total{route="/predict",status="415"} 1.0' in text
    assert 'imgcls_request_seconds_count{route="/predict"} 5.0' in text
    assert "imgcls_model_batch_images_count 4.0" in text and "imgcls_model_batch_images_sum 8.0" in text


def test_ready_turns_false_when_the_service_shuts_down(run_folder):
    app = create_app(run_folder)
    with make_client(app) as client:  # the context runs the app's lifespan: start, then shutdown
        assert client.get("/ready").status_code == 200
    assert make_client(app).get("/ready").status_code == 503
