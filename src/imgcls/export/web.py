"""`imgcls export RUN --format web`: a folder holding the drawing page of `imgcls serve`, answering in
the browser with no server: from any static host, or opened as a file (file://).

The page is the served one (imgcls/static: markup, style, drawing, upload, top-3 bars) with its
answers from page/local.js instead of /model and /predict: page/convert.js converts pictures as
`imgcls predict` does (a port of imgcls.images and imgcls.digits), and ONNX Runtime Web runs
model.onnx in WebAssembly. A page opened from a file may not fetch the files beside it, so the model
and the runtime's WebAssembly also come as scripts (model.js, ort-wasm.js: base64, the .wasm gzipped).
"""

import base64
import gzip
import json
import shutil
import tempfile
from pathlib import Path

from imgcls.data.cache import cache_dir
from imgcls.data.console import say
from imgcls.data.sources import from_npm, verify
from imgcls.errors import ImgclsError
from imgcls.runs import atomic_folder

ORT_WEB = "onnxruntime-web@1.30.0"  # npm's latest release (September 2026)
# The runtime files the page needs, from the package's dist/: the WebAssembly-only build (run on one thread)
ORT_FILES = {
    "ort.wasm.min.js": "sha256:faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": "sha256:e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "sha256:3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE = Path(__file__).resolve().parent / "page"
SCRIPTS = ("ort.wasm.min.js", "ort-wasm.js", "model.js", "convert.js", "local.js", "app.js")  # in this order
SERVED_ONLY = {  # what the served index.html says, and what the exported page says instead
    'href="/static/style.css"': 'href="style.css"',
    '<footer class="muted"><a href="/docs">API documentation</a></footer>':
        f'<footer class="muted">Runs in this browser with ONNX Runtime Web {ORT_WEB.split("@")[1]}: '
        'pictures are not sent anywhere</footer>',
    '<script src="/static/app.js"></script>': "\n  ".join(f'<script src="{name}" defer></script>' for name in SCRIPTS),
}


def runtime_files(progress=True) -> Path:
    """The folder holding ORT_FILES: the cached copy if its checksums hold, else fetched again with
    `npm pack` from the npm registry, checked and cached."""
    folder = cache_dir() / ORT_WEB.replace("@", "-")
    if folder.is_dir():
        try:
            verify(folder, ORT_FILES)
            return folder
        except ImgclsError as e:
            say(f"cached {ORT_WEB} is not as released ({e}); fetching it again", progress)
    say(f"fetching {ORT_WEB} (33 MB) from the npm registry", progress)
    source = from_npm(ORT_WEB, "package/dist", read=lambda dist: dist, checksums=ORT_FILES, names=ORT_FILES)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-ort-web-", dir=folder.parent) as scratch:
        try:
            dist = source.load(scratch, progress)
        except ImgclsError as e:
            raise ImgclsError(f"cannot fetch {ORT_WEB} for the web page (it comes once from the npm registry: "
                              f"check the connection and npm): {e}") from None
        with atomic_folder(folder) as tmp:
            for name in ORT_FILES:
                shutil.copyfile(dist / name, tmp / name)
    return folder


def page_info(metadata, input_shape, metrics, tta_views=None):
    """What the page shows and needs, as `imgcls serve` answers /model; `tta_views`, if given, the
    test-time views the page averages (page/local.js makes them as imgcls.views does)."""
    from imgcls.predict import style_for

    return {"name": metadata["model"], "dataset": metadata.get("dataset"), "file": "model.onnx",
            "classes": metadata["class_names"], "input_shape": list(input_shape),
            "preprocessing": style_for(metadata.get("dataset"), input_shape), "metrics": metrics,
            "tta_views": tta_views}


def script(name, value, about):
    """A script defining the constant `name` (JSON), for pages that cannot fetch files."""
    return f"// {about}\nconst {name} = {json.dumps(value, separators=(',', ':'))};\n"


def write_page(model, folder, info, progress=True):
    """Write the page for `model` into `folder` (replaced whole, or not at all); `info` is `page_info`."""
    from imgcls.export import tensorflow

    runtime = runtime_files(progress)
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    for served, exported in SERVED_ONLY.items():
        if served not in page:
            raise RuntimeError(f"imgcls/static/index.html no longer holds {served!r}: update SERVED_ONLY")
        page = page.replace(served, exported)
    wasm = gzip.compress((runtime / "ort-wasm-simd-threaded.wasm").read_bytes(), compresslevel=9, mtime=0)
    loader = (runtime / "ort-wasm-simd-threaded.mjs").read_bytes()
    with atomic_folder(folder) as tmp:
        tensorflow.export_onnx(model, tmp / "model.onnx")
        onnx = (tmp / "model.onnx").read_bytes()
        (tmp / "index.html").write_text(page, encoding="utf-8")
        for source in (STATIC / "style.css", STATIC / "app.js", PAGE / "convert.js", PAGE / "local.js",
                       runtime / "ort.wasm.min.js"):
            shutil.copyfile(source, tmp / source.name)
        (tmp / "model.js").write_text(script(
            "IMGCLS_MODEL", {"info": info, "onnx": base64.b64encode(onnx).decode()},
            "The model (model.onnx, base64) and what the page shows about it."), encoding="utf-8")
        (tmp / "ort-wasm.js").write_text(script(
            "ORT_WASM", {"mjs": base64.b64encode(loader).decode(), "wasm": base64.b64encode(wasm).decode()},
            f"{ORT_WEB}'s ort-wasm-simd-threaded.mjs and .wasm (gzipped), base64. Copyright (c) Microsoft "
            "Corporation, MIT License."), encoding="utf-8")
