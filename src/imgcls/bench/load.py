"""Load test for `imgcls serve`: requests/s and latency percentiles at several concurrency levels.

    python -m imgcls.bench.load [MODEL_OR_RUN] [--url http://127.0.0.1:PORT] [--requests 300] [--levels 1,8,32]

Without --url it starts the service itself, in a separate process (so that the client does not
share the server's interpreter), on a free loopback port; without a model it serves an untrained
cnn2 for MNIST, which costs the same per request as a trained one. Each request posts the same
280x280 PNG drawing, as the page does. Results: a table here, JSON in bench/results/ (atomically).
"""

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image, ImageDraw

from imgcls.bench import RESULTS
from imgcls.errors import ImgclsError
from imgcls.runs import write_json



def drawing():
    """A white 7 on black, 280x280, as a PNG: what the page sends after a stroke."""
    image = Image.new("L", (280, 280))
    ImageDraw.Draw(image).line([(70, 56), (210, 56), (126, 238)], fill=255, width=22, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def untrained_model(folder):
    from imgcls.models import build_model
    from imgcls.saving import save_model

    path = Path(folder) / "model.keras"
    save_model(build_model("cnn2", (28, 28), 10), path,
               {"class_names": [str(i) for i in range(10)], "dataset": "mnist", "model": "cnn2"})
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model, port, runtime="keras"):
    """`imgcls serve MODEL --runtime RUNTIME` in a child process, as a user starts it; returns it
    once /ready answers (polled every 50 ms: the bench's start-up times are read from this)."""
    command = [sys.executable, "-m", "imgcls", "serve", str(model), "--port", str(port), "--runtime", runtime]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ImgclsError(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.terminate()
    raise ImgclsError("the server did not answer /ready within 120 s")


def cpu_seconds(pid):
    """User + system CPU time of a process and its threads (Linux /proc). On a shared machine the
    server's CPU time per request is steadier than requests/s, which depends on the neighbours."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_level(url, payload, concurrency, requests, max_seconds):
    """Send up to `requests` requests (stopping after `max_seconds`) from `concurrency` clients.

    Each client is a thread with its own keep-alive connection: httpx's async client costs several
    milliseconds of CPU a request, which on a small machine would measure the client, not the server.
    """
    latencies, errors = [], []
    tickets = iter(range(requests))  # next() on a shared iterator hands each request out once
    start = time.perf_counter()

    def client_loop():
        with httpx.Client(base_url=url, timeout=60) as client:
            while next(tickets, None) is not None and time.perf_counter() - start < max_seconds:
                began = time.perf_counter()
                try:
                    answer = client.post("/predict", files={"file": ("drawing.png", payload, "image/png")})
                    ok = answer.status_code == 200 and "top" in answer.json()
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                errors.append(not ok)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client_loop) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - start
    ms = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return {"concurrency": concurrency, "requests": len(latencies), "errors": sum(errors),
            "seconds": round(seconds, 2), "requests_per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(ms[0], 1), "p95_ms": round(ms[1], 1), "p99_ms": round(ms[2], 1)}


def print_table(rows):
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
          f" {'server CPU ms/req':>18}")
    for r in rows:
        print(f"{r['concurrency']:>7} {r['requests']:>8} {r['errors']:>6} {r['requests_per_second']:>8} "
              f"{r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} {r.get('server_cpu_ms_per_request', '-'):>18}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", metavar="MODEL_OR_RUN", help="default: an untrained cnn2 for MNIST")
    parser.add_argument("--url", help="a server already running on this machine (127.0.0.1 or localhost)")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels, comma-separated")
    parser.add_argument("--max-seconds", type=float, default=60, help="time limit per level")
    args = parser.parse_args()
    if args.url and urlparse(args.url).hostname not in ("127.0.0.1", "localhost"):
        parser.error("--url must point at this machine (127.0.0.1 or localhost)")

    with tempfile.TemporaryDirectory() as folder:
        server, url = None, args.url
        if not url:
            port = free_port()
            server = start_server(args.model or untrained_model(folder), port)
            url = f"http://127.0.0.1:{port}"
        try:
            payload = drawing()
            rows = []
            for concurrency in map(int, args.levels.split(",")):
                cpu = cpu_seconds(server.pid) if server else None
                rows.append(run_level(url, payload, concurrency, args.requests, args.max_seconds))
                if server:
                    used = cpu_seconds(server.pid) - cpu
                    rows[-1]["server_cpu_ms_per_request"] = round(used * 1000 / rows[-1]["requests"], 2)
        finally:
            if server:
                server.terminate()
                server.wait(30)

    print_table(rows)
    report = {"date": datetime.now().isoformat(timespec="seconds"), "url": url,
              "model": str(args.model or "untrained cnn2 (MNIST)"), "payload_bytes": len(payload),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "levels": rows}
    path = RESULTS / f"serve-{datetime.now():%Y%m%d-%H%M%S}.json"
    write_json(path, report)
    print(f"Results: {path}")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ImgclsError as e:
        sys.exit(f"load test: {e}")
