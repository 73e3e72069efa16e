"""Serve a saved model over HTTP: a JSON API (OpenAPI docs at /docs) and a drawing page at /.

The model is loaded once, in Keras's safe mode, when the app is created. Decoding and inference run
in a thread pool, so the event loop keeps answering while the model works; concurrent requests
share model calls (see Batcher). Every bad request gets a JSON {"detail": ...} and its status, and
the service goes on serving:
422 no image or malformed request, 415 not an image, 413 body over the upload limit, more than
MAX_IMAGES images, an image whose header declares too many pixels or a request whose images declare
more than MAX_REQUEST_PIXELS together (refused before decoding: a decompression bomb stays small),
408 a body not received within BODY_SECONDS, 401 a missing or wrong API key (when one is set),
400 a Host header that is not allowed (DNS rebinding), 503 over the connection limit.
"""

import asyncio
import base64
import binascii
import contextlib
import hmac
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from imgcls.errors import ImgclsError
from imgcls.images import ImageTooLarge, declared_pixels, open_image, to_model_input
from imgcls.predict import BATCH_SIZE, check_top_k, style_for, top_classes, with_tta
from imgcls.runs import read_metrics

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB; more is refused
MAX_IMAGES = 64  # per request: tiny images would otherwise fit by the thousand in the upload limit
MAX_REQUEST_PIXELS = 100_000_000  # per request, all images together: bounds one request's decoding work
BODY_SECONDS = 30  # to receive a whole request body: a slow drip cannot hold a worker for ever
HEADER_SECONDS = 10  # to receive a request's headers (slowloris)
MAX_CONNECTIONS = 500  # open at once; more are answered 503, long before the open-files limit
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
STATIC = Path(__file__).parent / "static"
HOW_TO_SEND = "send multipart/form-data with an image file, or JSON with base64 image data"

PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "one image"},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "several images (the answer is then a list)"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "description": "base64 image data (a data: URL is fine too)"},
        "images": {"type": "array", "items": {"type": "string"}, "description": "several images"},
        "top_k": {"type": "integer", "minimum": 1}}}},
}}}
PREDICT_ANSWER = {200: {"content": {"application/json": {"examples": {
    "one": {"value": {"top": [{"class": "7", "probability": 0.98}, {"class": "1", "probability": 0.01}]}},
    "several": {"value": {"results": [{"file": "a.png", "top": [{"class": "7", "probability": 0.98}]}]}},
}}}}}


class UploadLimit:
    """ASGI middleware refusing request bodies over `max_bytes` with 413 (at once when the
    Content-Length says so, and while reading for clients that send none or understate it), and
    bodies not received within `seconds` with 408."""

    def __init__(self, app, max_bytes, seconds=None):
        self.app, self.max_bytes, self.seconds = app, max_bytes, seconds or BODY_SECONDS
        self.message = f"request body over the upload limit of {max_bytes:,} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"detail": self.message}, 413)(scope, receive, send)
        received, deadline = 0, time.monotonic() + self.seconds

        async def counting_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                # Connection: close, or the half-sent body would keep the connection open
                raise HTTPException(408, f"the request body took more than {self.seconds} s to arrive",
                                    headers={"Connection": "close"}) from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, counting_receive, send)


def load_predictor(model_or_run, runtime):
    """(model, metadata, file): a Keras model in safe mode, or an exported one in its runtime."""
    if runtime == "keras":
        from imgcls.saving import load_model  # here: it imports Keras, which other runtimes do without

        return load_model(model_or_run)
    from imgcls.export.runtimes import exported_file, load_exported

    model, metadata = load_exported(model_or_run, runtime)
    return model, metadata, exported_file(model_or_run, runtime)


def decode_base64(text, name):
    if not isinstance(text, str):
        raise HTTPException(422, f"{name} must be a base64 string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise HTTPException(422, f"{name} is not valid base64") from None


def parse_top_k(value):
    try:
        return check_top_k(value)
    except ImgclsError as e:
        raise HTTPException(422, str(e)) from None


async def read_request(request):
    """([(name, image bytes)], whether the client sent a list, top_k from the body or None)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type:
        raise HTTPException(422, f"no image: {HOW_TO_SEND}")
    if content_type == "multipart/form-data":
        return await read_multipart(request)
    if content_type == "application/json":
        return await read_json(request)
    raise HTTPException(415, f"unsupported content type {content_type}: {HOW_TO_SEND}")


async def read_multipart(request):
    form = await request.form()
    files = [(key, value) for key, value in form.multi_items()
             if key in ("file", "files") and isinstance(value, UploadFile)]
    if not files:
        raise HTTPException(422, "no image: send a multipart file field named 'file' (or 'files')")
    uploads = [(upload.filename or key, await upload.read()) for key, upload in files]
    several = len(files) > 1 or files[0][0] == "files"
    return uploads, several, form.get("top_k")


async def read_json(request):
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
        raise HTTPException(422, "the body is not valid JSON") from None
    if not isinstance(body, dict) or ("image" not in body and "images" not in body):
        raise HTTPException(422, 'no image: send JSON {"image": "<base64>"} or {"images": [...]}')
    if "image" in body:
        return [("image", decode_base64(body["image"], "image"))], False, body.get("top_k")
    if not isinstance(body["images"], list) or not body["images"]:
        raise HTTPException(422, "images must be a non-empty list of base64 strings")
    uploads = [(f"images[{i}]", decode_base64(text, f"images[{i}]")) for i, text in enumerate(body["images"])]
    return uploads, True, body.get("top_k")


class Batcher:
    """One model call for the inputs of all the requests waiting: while a call runs, new requests
    queue up and go together in the next. A lone request goes at once (no waiting window).
    With bench/load.py at 32 clients it took about a quarter less server CPU per request than one
    model call per request, at the same latency."""

    def __init__(self, model, max_rows=BATCH_SIZE, observe=None):
        self.model, self.max_rows, self.observe = model, max_rows, observe or (lambda rows: None)
        self.waiting = []  # (rows, future) of the requests not yet given to the model
        self.task = None  # the task draining `waiting`, while there is work

    async def predict(self, rows):
        """The model's probabilities for `rows` (a uint8 batch)."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((rows, future))
        if self.task is None:
            self.task = asyncio.create_task(self.drain())
        return await future

    async def drain(self):
        try:
            while self.waiting:
                batch, total = [], 0
                while self.waiting and total < self.max_rows:
                    batch.append(self.waiting.pop(0))
                    total += len(batch[-1][0])
                rows = np.concatenate([rows for rows, _ in batch])
                self.observe(len(rows))
                try:
                    probs = await run_in_threadpool(self.model.predict_on_batch, rows)
                except Exception as e:  # these requests fail; the service goes on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                end = 0
                for rows, future in batch:
                    end += len(rows)
                    if not future.done():  # its client may have gone
                        future.set_result(np.asarray(probs[end - len(rows):end]))
        finally:
            self.task = None


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process):
    requests by route and status, latency by route, and the number of images per model call."""

    ROUTES = ("/", "/health", "/ready", "/model", "/predict", "/metrics", "/docs", "/openapi.json")

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("imgcls_requests", "HTTP requests answered", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("imgcls_request_seconds", "Time to answer a request", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.batch_rows = Histogram("imgcls_model_batch_images", "Images per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)

    def middleware(self, app):
        """ASGI middleware observing every HTTP request, refused ones (413, 400, ...) included."""
        async def observe(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            path = scope["path"]
            route = path if path in self.ROUTES else "/static" if path.startswith("/static/") else "other"
            status, started = 500, time.perf_counter()

            async def sending(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                self.requests.labels(route, str(status)).inc()
                self.latency.labels(route).observe(time.perf_counter() - started)
        return observe


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers: a client that sends
    them a byte at a time (slowloris) is cut off instead of holding a connection for ever. uvicorn
    itself times out only idle keep-alive connections."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.header_deadline = self.loop.call_later(HEADER_SECONDS, self.headers_too_slow)

    def headers_too_slow(self):
        if self.cycle is None and not self.transport.is_closing():  # no request under way
            self.transport.close()

    def on_response_complete(self):
        super().on_response_complete()
        self.header_deadline.cancel()
        self.header_deadline = self.loop.call_later(HEADER_SECONDS, self.headers_too_slow)

    def connection_lost(self, exc):
        self.header_deadline.cancel()
        super().connection_lost(exc)


class OncePer(logging.Filter):
    """Let a repeated log message through once per `seconds`: at the open-files limit the accept
    loop would otherwise log the same error thousands of times a second."""

    def __init__(self, seconds=10.0):
        super().__init__()
        self.seconds, self.last = seconds, {}

    def filter(self, record):
        now, key = time.monotonic(), record.getMessage()[:80]
        if now - self.last.get(key, -self.seconds) < self.seconds:
            return False
        self.last[key] = now
        return True


def create_app(model_or_run, max_upload_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS,
               max_request_pixels=MAX_REQUEST_PIXELS, preprocess=True, api_key=None, allowed_hosts=LOOPBACK,
               runtime="keras", tta=False):
    """The FastAPI app serving one model; raises ImgclsError if the model cannot be loaded.

    With `api_key`, /predict and /model want it (header X-API-Key, or Authorization: Bearer).
    Requests whose Host is not in `allowed_hosts` are refused ("*" allows any). `runtime` "onnx" (or
    "litert") serves the run's exported model (`imgcls export`) without importing TensorFlow. With
    `tta`, answers average the test-time views the model was measured with (imgcls.predict.with_tta)."""
    model, metadata, path = load_predictor(model_or_run, runtime)
    if tta:
        model = with_tta(model, metadata, path)
    input_shape = tuple(model.input_shape[1:])
    class_names = metadata["class_names"]
    style = style_for(metadata.get("dataset"), input_shape, preprocess)
    model.predict_on_batch(np.zeros((1, *input_shape), dtype=np.uint8))  # builds it now, not in a request
    metrics = Metrics()
    batcher = Batcher(model, observe=metrics.batch_rows.observe)
    state = {"ready": True}  # false once shutting down: load balancers stop sending work first
    info = {"name": metadata["model"], "dataset": metadata.get("dataset"), "file": path.name,
            "classes": class_names, "input_shape": list(input_shape), "preprocessing": style,
            "metrics": read_metrics(path), "tta_views": model.views if tta else None}

    def to_row(name, data):
        try:
            return to_model_input(open_image(io.BytesIO(data), name, max_pixels), input_shape, style)
        except ImageTooLarge as e:
            raise HTTPException(413, str(e)) from None
        except ImgclsError as e:
            raise HTTPException(415, str(e)) from None

    def to_rows(uploads):
        total = 0
        for name, data in uploads:  # headers only: the whole request's work is known before decoding
            total += declared_pixels(io.BytesIO(data))
        if total > max_request_pixels:
            raise HTTPException(413, f"the images of this request declare {total:,} pixels together, over "
                                     f"the limit of {max_request_pixels:,}")
        return np.stack([to_row(name, data) for name, data in uploads])

    def check_key(request: Request):
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send it as X-API-Key or Authorization: Bearer)")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        state["ready"] = False

    app = FastAPI(title="imgcls", summary=f"Classify images with {metadata['model']} "
                  f"({metadata.get('dataset') or 'unknown dataset'})", lifespan=lifespan)
    app.state.model = model
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(metrics.middleware)  # outermost: it sees the refusals of the others too
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health():
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        """The model is loaded and warmed up, and the service is not shutting down (readiness)."""
        if not state["ready"]:
            return JSONResponse({"status": "shutting down"}, 503)
        return {"status": "ready"}

    @app.get("/metrics", dependencies=[Depends(check_key)], include_in_schema=False)
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/model", dependencies=[Depends(check_key)])
    async def model_info():
        """The model's name, classes, input shape, preprocessing and its run's metrics."""
        return info

    @app.post("/predict", openapi_extra=PREDICT_BODY, responses=PREDICT_ANSWER, dependencies=[Depends(check_key)])
    async def predict_endpoint(request: Request, top_k: int = Query(3, ge=1)):
        """Top-k classes of an image (multipart `file`, or JSON `image` in base64), or of several
        (`files` or `images`): then the answer is {"results": [...]}, in order."""
        uploads, several, body_top_k = await read_request(request)
        if len(uploads) > MAX_IMAGES:
            raise HTTPException(413, f"{len(uploads)} images in one request; the limit is {MAX_IMAGES}")
        k = parse_top_k(body_top_k) if body_top_k is not None else top_k
        probs = await batcher.predict(await run_in_threadpool(to_rows, uploads))
        tops = [top_classes(p, class_names, k) for p in probs]
        if several:
            return {"results": [{"file": name, "top": top} for (name, _), top in zip(uploads, tops)]}
        return {"top": tops[0]}

    return app


def serve(model_or_run, host="127.0.0.1", port=8000, max_connections=MAX_CONNECTIONS, allowed_hosts=None,
          **options):
    """Run the service with uvicorn until interrupted (loopback only unless `host` says otherwise).

    Allowed Host headers default to the loopback names and `host` itself; binding beyond loopback
    without an API key is allowed, with a warning."""
    if host not in LOOPBACK and not options.get("api_key"):
        print(f"imgcls: warning: serving on {host} without an API key: anyone who can reach this machine "
              f"can use the model (set --api-key or IMGCLS_API_KEY)", file=sys.stderr)
    if allowed_hosts is None:
        allowed_hosts = ["*"] if host in ("0.0.0.0", "::") else [*LOOPBACK, host]
    app = create_app(model_or_run, allowed_hosts=allowed_hosts, **options)
    logging.getLogger("asyncio").addFilter(OncePer())
    uvicorn.run(app, host=host, port=port, http=HeaderDeadline, limit_concurrency=max_connections,
                timeout_keep_alive=5)
