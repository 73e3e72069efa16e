"""The service under abuse: each case gets its status or a closed connection, and the service goes on
serving. Socket-level cases run against a real uvicorn server on a loopback port, in a thread."""

import io
import logging
import socket
import struct
import threading
import time
import zlib

import pytest
import uvicorn
from PIL import Image

from imgcls import serve
from imgcls.errors import ImgclsError
from imgcls.models import build_model
from imgcls.saving import save_model
from imgcls.serve import HeaderDeadline, OncePer, create_app

CLASSES = ["zero", "one", "two"]


def png(size=(28, 28)):
    buffer = io.BytesIO()
    Image.new("L", size, 0).save(buffer, "PNG")
    return buffer.getvalue()


def png_declaring(width, height):
    """A PNG of a few bytes whose header claims width x height pixels."""
    data = bytearray(png((1, 1)))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "model.keras"
    save_model(build_model("dense", (28, 28), 3), path, {"class_names": CLASSES, "dataset": "mnist", "model": "dense"})
    return path


def client_for(app, host="127.0.0.1"):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=f"http://{host}")


@pytest.fixture
def live(model_file, monkeypatch):
    """Start a real server (HeaderDeadline protocol, connection limit) with short deadlines; yields
    a function (options) -> port."""
    monkeypatch.setattr(serve, "HEADER_SECONDS", 1)
    monkeypatch.setattr(serve, "BODY_SECONDS", 1)
    servers = []

    def start(max_connections=100):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(create_app(model_file), http=HeaderDeadline, limit_concurrency=max_connections,
                                log_level="critical")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        servers.append(server)
        while not server.started:
            time.sleep(0.05)
        return sock.getsockname()[1]

    yield start
    for server in servers:
        server.should_exit = True


def raw(port, data=b""):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def answer(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def get_health(port):
    with raw(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n") as sock:
        return answer(sock)


def test_headers_sent_a_byte_at_a_time_are_cut_off(live):
    port = live()
    sock = raw(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    started = time.monotonic()
    assert answer(sock) == b""  # closed by the server, no answer
    assert time.monotonic() - started < 4
    assert get_health(port).startswith(b"HTTP/1.1 200")


def test_a_body_that_never_arrives_gets_408(live):
    port = live()
    sock = raw(port, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"image\": ")
    started = time.monotonic()
    reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408") and b"took more than 1 s" in reply
    assert time.monotonic() - started < 3  # answered and closed at the deadline
    assert get_health(port).startswith(b"HTTP/1.1 200")


def test_connections_over_the_limit_get_503(live):
    port = live(max_connections=2)
    idle = [raw(port), raw(port)]
    time.sleep(0.2)
    assert get_health(port).startswith(b"HTTP/1.1 503")
    for sock in idle:
        sock.close()
    time.sleep(0.2)
    assert get_health(port).startswith(b"HTTP/1.1 200")


def test_a_request_whose_images_declare_too_many_pixels_together_is_refused_before_decoding(model_file):
    client = client_for(create_app(model_file))
    bombs = [("files", (f"{i}.png", png_declaring(6000, 6000), "image/png")) for i in range(3)]  # 108 MP
    started = time.monotonic()
    response = client.post("/predict", files=bombs)
    assert response.status_code == 413 and "declare 108,000,000 pixels together" in response.json()["detail"]
    assert time.monotonic() - started < 2  # nothing was decoded
    assert client.post("/predict", files={"file": ("ok.png", png())}).status_code == 200


def test_the_api_key_is_required_where_set(model_file):
    client = client_for(create_app(model_file, api_key="s3cret"))
    picture = {"file": ("a.png", png())}
    assert client.post("/predict", files=picture).status_code == 401
    assert client.get("/model", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/predict", files=picture, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200  # for load balancers, no key


def test_host_headers_of_other_sites_are_refused(model_file):
    """DNS rebinding: a web page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    app = create_app(model_file)
    assert client_for(app, "evil.example").get("/model").status_code == 400
    assert client_for(app, "localhost").get("/model").status_code == 200


def test_serving_beyond_loopback_without_a_key_warns(model_file, monkeypatch, capsys):
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **options: None)
    serve.serve(model_file, host="0.0.0.0")
    assert "without an API key" in capsys.readouterr().err
    serve.serve(model_file, host="0.0.0.0", api_key="k")
    assert "without an API key" not in capsys.readouterr().err


@pytest.mark.parametrize(("body", "detail"), [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"image": "%s", "top_k": 1e400}', "top_k must be a whole number"),
    ('{"image": "%s", "top_k": true}', "top_k must be a whole number"),
])
def test_odd_json_gets_422_not_500(model_file, body, detail):
    import base64

    client = client_for(create_app(model_file))
    content = body % base64.b64encode(png()).decode() if "%s" in body else body
    response = client.post("/predict", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and detail in response.json()["detail"]


@pytest.mark.parametrize(("metadata", "message"), [
    ({"class_names": ["a", "b"], "dataset": "mnist", "model": "dense"}, "names 2 classes but the model predicts 3"),
    ({"class_names": CLASSES, "dataset": ["mnist"], "model": "dense"}, "dataset is not a name"),
])
def test_a_model_whose_metadata_does_not_fit_is_refused_at_start(tmp_path, metadata, message):
    path = tmp_path / "model.keras"
    save_model(build_model("dense", (28, 28), 3), path, metadata)
    with pytest.raises(ImgclsError, match=message):
        create_app(path)


def test_a_repeated_log_line_passes_once_per_interval():
    records = [logging.LogRecord("asyncio", logging.ERROR, "", 0, "socket.accept() out of system resource",
                                 None, None) for _ in range(1000)]
    once = OncePer(seconds=60)
    assert sum(once.filter(r) for r in records) == 1
    other = logging.LogRecord("asyncio", logging.ERROR, "", 0, "another problem", None, None)
    assert once.filter(other)


@pytest.mark.parametrize("size", [(3000, 1), (1, 3000)])
def test_very_thin_pictures_are_answered(model_file, size):
    client = client_for(create_app(model_file))
    buffer = io.BytesIO()
    Image.new("L", size, 255).save(buffer, "PNG")
    assert client.post("/predict", files={"file": ("thin.png", buffer.getvalue())}).status_code == 200
