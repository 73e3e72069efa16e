"""Export and deploy: one model as Keras, ONNX, LiteRT and LiteRT int8 files, and `imgcls serve` on each.

Files: `export_run` writes each file and checks it on the test set in its own runtime, timing it at
batch 1 and 256 with the Keras model timed right after it, in this process (imgcls.export's
check_export); the Keras row is the best of those three Keras measurements, as each figure is
itself the best of several windows (a neighbour's work only ever slows a window down).
Serving: `imgcls serve RUN --runtime R` started as a child process, from launch until /ready
answers, and its resident memory (with any children's) after one /predict. The runtimes take
turns, SERVE_STARTS times, and the fastest start is reported: start-up time is the measure most
disturbed by other work on a shared machine.
"""

import dataclasses
import re
import tempfile
import time
from pathlib import Path

import httpx

from imgcls.data import load_dataset
from imgcls.errors import ImgclsError
from imgcls.export import NEEDS, SPEED_BATCHES, export_name, export_run, size
from imgcls.export.runtimes import read_export_metadata, require

EXPORTS = {"onnx": ("onnx", None), "litert": ("litert", None), "litert_int8": ("litert", "int8")}
SERVED = ("keras", "onnx", "litert")  # `serve --runtime litert` on an export folder runs the float file
SERVE_STARTS = 3
CHECK_IMAGES = 10_000  # the whole MNIST test set: accuracy and agreement to 0.01 point


def bench_export(options):
    """Measure `options["run"]`, or a model trained now with the default MNIST recipe; the files
    go to a temporary folder, so a run folder given is left as it was."""
    try:
        for module in {m for fmt, _ in EXPORTS.values() for m in NEEDS[fmt]}:
            require(module)
    except ImgclsError as e:
        print(f"Skipping export: {e}")
        return {"skipped": str(e)}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        if options.get("run"):
            from imgcls.saving import resolve_model_path

            return {"measured": str(options["run"]),
                    **measure(resolve_model_path(options["run"]), Path(folder) / "export")}
        from imgcls.config import resolve_config
        from imgcls.train import train

        config = dataclasses.replace(resolve_config(preset="default"), out=str(Path(folder) / "run"))
        print(f"\n== export: training the default recipe ({config.model}, {config.epochs} epochs)")
        train(config, dataset=load_dataset("mnist"), progress=False)
        return {"measured": f"default recipe ({config.model}, {config.epochs} epochs), trained now",
                **measure(Path(config.out) / "model.keras", Path(folder) / "export")}


def measure(model_file, export_folder, runtimes=SERVED, starts=SERVE_STARTS, check_images=CHECK_IMAGES):
    """{"files": {keras, onnx, litert, litert_int8: size, accuracy, images/s}, "serve": {runtime:
    start-up seconds, resident MiB}} for one saved model, its exports written to `export_folder`."""
    import keras

    for fmt, quantize in EXPORTS.values():
        print(f"== export: {export_name(fmt, quantize)}")
        export_run(model_file, fmt, quantize=quantize, out=export_folder, check_images=check_images)
    exports = read_export_metadata(export_folder)["exports"]
    files = {name: {"file": export_name(*how), **exports[export_name(*how)]} for name, how in EXPORTS.items()}
    first = next(iter(files.values()))
    files = {"keras": {"file": Path(model_file).name, "bytes": size(model_file), "runtime": f"Keras {keras.__version__}",
                       "check_images": first["check_images"], "accuracy": first["keras_accuracy"],
                       "images_per_second": {str(b): max(r["keras_images_per_second"][str(b)] for r in files.values())
                                             for b in SPEED_BATCHES}},
             **files}
    return {"files": files, "serve": serve_figures(model_file, export_folder, runtimes, starts)}


def serve_figures(model_file, export_folder, runtimes, starts):
    """{runtime: {"start_seconds": fastest, "starts": all, "rss_mib": largest}} of `imgcls serve`."""
    from imgcls.bench.load import drawing, free_port, start_server  # it imports this package: not at the top

    payload, seconds, rss = drawing(), {r: [] for r in runtimes}, {r: [] for r in runtimes}
    for _ in range(starts):
        for runtime in runtimes:  # taking turns: a burst of other work falls on every runtime alike
            print(f"== export: imgcls serve --runtime {runtime}")
            port = free_port()
            began = time.perf_counter()
            server = start_server(model_file if runtime == "keras" else export_folder, port, runtime)
            seconds[runtime].append(round(time.perf_counter() - began, 2))
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/predict", timeout=60,
                                    files={"file": ("drawing.png", payload, "image/png")})
                if answer.status_code != 200:
                    raise ImgclsError(f"serve --runtime {runtime}: /predict answered {answer.status_code}")
                rss[runtime].append(resident_mib(server.pid))
            finally:
                server.terminate()
                server.wait(30)
    return {r: {"start_seconds": min(seconds[r]), "starts": seconds[r], "rss_mib": max(rss[r])} for r in runtimes}


def resident_mib(pid):
    """Resident memory of a process and its descendants, MiB, from Linux's /proc."""
    pending, kib = [pid], 0
    while pending:
        proc = Path(f"/proc/{pending.pop()}")
        kib += int(re.search(r"^VmRSS:\s+(\d+) kB", (proc / "status").read_text(), re.M).group(1))
        for children in proc.glob("task/*/children"):
            pending += map(int, children.read_text().split())
    return round(kib / 1024, 1)


def print_export(result):
    if "skipped" in result:
        print(f"\nexport: skipped ({result['skipped']})")
        return
    files = result["files"]
    print(f"\nExport of {result['measured']}; images/s in one process, each file's Keras figures measured "
          f"right after it\n  {'file':18} {'runtime':22} {'bytes':>10} {'accuracy':>8} {'agrees':>7} "
          + " ".join(f"{f'b{b} img/s':>11}" for b in SPEED_BATCHES)
          + " " + " ".join(f"{f'Keras b{b}':>11}" for b in SPEED_BATCHES))
    for record in files.values():
        agrees = f"{record['agreement']:.2%}" if "agreement" in record else "-"
        keras_rates = record.get("keras_images_per_second", {})
        print(f"  {record['file']:18} {record['runtime']:22} {record['bytes']:>10,} {record['accuracy']:>8.2%} "
              f"{agrees:>7} " + " ".join(f"{record['images_per_second'][str(b)]:>11,.0f}" for b in SPEED_BATCHES)
              + " " + " ".join(f"{keras_rates[str(b)]:>11,.0f}" if keras_rates else f"{'-':>11}"
                               for b in SPEED_BATCHES))
    print(f"  (on {files['keras']['check_images']:,} test images; Keras row: the best of its measurements)")
    print("\nimgcls serve --runtime R: launch to /ready (fastest; every start), resident memory after one /predict")
    for runtime, row in result["serve"].items():
        print(f"  {runtime:8} {row['start_seconds']:>6.2f} s ({', '.join(map(str, row['starts']))})"
              f" {row['rss_mib']:>8.1f} MiB")


def export_line(result):
    """The part's last line, for scripts: export <file>_b<batch>=<images/s> ...
    serve_start_<runtime>_s=<seconds> ... serve_rss_<runtime>_mib=<MiB> ..."""
    if "skipped" in result:
        return "export skipped"
    rates = [f"{name}_b{b}={record['images_per_second'][str(b)]:.0f}"
             for b in SPEED_BATCHES for name, record in result["files"].items()]
    serve = result["serve"]
    return "export " + " ".join([*rates, *(f"serve_start_{r}_s={row['start_seconds']:.2f}" for r, row in serve.items()),
                                 *(f"serve_rss_{r}_mib={row['rss_mib']:.0f}" for r, row in serve.items())])
