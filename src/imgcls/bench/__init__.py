"""Benchmarks, one home: `imgcls bench` runs the parts named in PARTS and writes one results file,
atomically, to bench/results/<time>.json; `python -m imgcls.bench.load` load-tests the service
and writes bench/results/serve-<time>.json the same way.

Every comparison trains or runs both sides one after the other in the same process, on the same
data, so a speedup is a ratio measured in one run on one machine, not two absolute times.
"""

import os
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from imgcls.bench.backends import backends_line, bench_backends, print_backends
from imgcls.bench.cifar_c import bench_cifar_c, cifar_c_line, print_cifar_c
from imgcls.bench.export import bench_export, export_line, print_export
from imgcls.bench.photos import bench_photos, bench_record, photos_line, print_photos, print_record
from imgcls.bench.speed import bench_inference, bench_mnist, peak_gflops, time_to_accuracy
from imgcls.bench.stream import bench_stream, print_stream
from imgcls.bench.transfer import bench_transfer, transfer_line
from imgcls.bench.wild import bench_wild, print_wild, wild_line
from imgcls.data import load_dataset
from imgcls.errors import ImgclsError
from imgcls.models import build_model
from imgcls.runs import environment, write_json

RESULTS = Path("bench/results")


def _inference(options):
    x = np.random.default_rng(0).integers(0, 256, (2048, 28, 28), dtype=np.uint8)
    return bench_inference({name: build_model(name, (28, 28), 10) for name in ("fast_wide", "fast", "cnn2")}, x)


def _load_cifar10(options):
    """CIFAR-10 from the cache or --cifar-dir, or None, said plainly, when neither has it."""
    data_dir = options.get("cifar_dir")
    try:
        return load_dataset("cifar10", data_dir=data_dir if data_dir and Path(data_dir).exists() else None)
    except ImgclsError as e:
        print(f"Skipping CIFAR-10: {e}")
        return None


def _with_cifar10(measure):
    """A part measuring `measure(cifar10, options)`, or saying it skipped when CIFAR-10 is missing."""
    def part(options):
        cifar = _load_cifar10(options)
        if cifar is None:
            return {"skipped": f"no CIFAR-10: not cached and {options.get('cifar_dir')} is absent"}
        return measure(cifar, options)
    return part


def _unless_skipped(show):
    return lambda result: None if "skipped" in result else show(result)


@dataclass(frozen=True)
class Part:
    """What a part measures (options -> JSON-ready result), and how its result prints as a table
    and as one line for scripts; the speed parts share one table and the summary line instead."""

    measure: Callable
    show: Callable | None = None
    line: Callable | None = None


# In the order a full run takes them.
PARTS = {
    "mnist": Part(lambda options: bench_mnist(load_dataset("mnist"))),
    "best": Part(lambda options: time_to_accuracy(load_dataset("mnist"), "best", 0.995)[0]),
    "fashion": Part(lambda options: bench_photos(load_dataset("fashion_mnist"), options.get("seeds", 1)),
                    print_photos),
    "cifar10": Part(_with_cifar10(lambda cifar, options: bench_photos(cifar, options.get("seeds", 1))),
                    _unless_skipped(print_photos)),
    "cifar10-94": Part(_with_cifar10(lambda cifar, options: bench_record(cifar)), _unless_skipped(print_record)),
    "cifar10-c": Part(_with_cifar10(bench_cifar_c), _unless_skipped(print_cifar_c), cifar_c_line),
    "inference": Part(_inference),
    "efficiency": Part(lambda options: peak_gflops()),
    "wild": Part(bench_wild, print_wild, wild_line),
    "export": Part(bench_export, print_export, export_line),
    "stream": Part(bench_stream, print_stream),
    "backends": Part(bench_backends, print_backends, backends_line),
    "transfer": Part(_with_cifar10(lambda cifar, options: bench_transfer(cifar)), line=transfer_line),
}
ON_REQUEST = ("cifar10-94", "cifar10-c")  # an hour, and a CIFAR-10 training or --run: only with --only
DEFAULT_PARTS = tuple(name for name in PARTS if name not in ON_REQUEST)
SPEED_PARTS = ("mnist", "best", "fashion", "cifar10", "cifar10-94", "inference", "efficiency")
PHOTO_PARTS = ("fashion", "cifar10")


def run_bench(parts=DEFAULT_PARTS, out_dir=RESULTS, **options):
    """Run the chosen parts, print a table, save JSON; returns the results."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ImgclsError(f"unknown bench part(s): {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    results = {"started": datetime.now().isoformat(timespec="seconds"), "machine": machine(), **environment()}
    chosen = {name: part for name, part in PARTS.items() if name in parts}
    for name, part in chosen.items():
        results[name] = part.measure(options)
    path = Path(out_dir) / f"{datetime.now():%Y%m%d-%H%M%S}.json"
    write_json(path, results)
    print_table(results)
    for name, part in chosen.items():
        if part.show:
            part.show(results[name])
    print(f"Results: {path}")
    if set(parts) & set(SPEED_PARTS):
        print(summary_line(results))
    if set(parts) & set(PHOTO_PARTS):
        print(photos_line(results))
    for name, part in chosen.items():
        if part.line:
            print(part.line(results[name]))
    return results


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}
def _pct(value):
    return "-" if value is None else f"{value:.2%}"


def _secs(value):
    return "not reached" if value is None else f"{value:.1f}"


def print_table(results):
    rows = []
    if "mnist" in results:
        rows += [results["mnist"]["seed"], results["mnist"]["default"]]
    rows += [results["best"]] if "best" in results else []
    for key in ("fashion", "cifar10", "cifar10-94"):
        result = results.get(key, {"skipped": True})
        rows += [] if "skipped" in result else result.get("runs", [result])
    print(f"\nMachine: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
          f"{results['backend']} backend, " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    if rows:
        print(f"\n{'dataset':14} {'recipe':8} {'model':10} {'seed':>4} {'target':>7} {'s to target':>12} "
              f"{'final acc':>9} {'with TTA':>8} {'train s':>8} {'epochs':>6} {'PFLOP':>7} {'GFLOP/s':>8} "
              f"{'of peak':>7}")
        for r in rows:
            share = r.get("share_of_peak")
            print(f"{r['dataset']:14} {r['preset']:8} {r['model']:10} {r.get('seed', 0):>4} {_pct(r['target']):>7} "
                  f"{_secs(r['seconds_to_target']):>12} {_pct(r['final_accuracy']):>9} "
                  f"{_pct(r['final_accuracy_tta']):>8} {r['training_seconds']:>8.1f} {r['epochs']:>6} "
                  f"{r.get('training_pflop', 0):>7.4f} {r['training_gflops']:>8.2f} "
                  f"{'-' if share is None else f'{share:.0%}':>7}")
    for key in ("cifar10", "cifar10-94", "transfer"):
        if "skipped" in results.get(key, {}):
            print(f"{key}: skipped ({results[key]['skipped']})")
    if "mnist" in results:
        m = results["mnist"]
        note = (f" (the seed recipe never reached 99.0%, so the mark is the {_pct(m['mark'])} it did reach)"
                if m["mark_lowered"] else "")
        print(f"\nSpeedup to {_pct(m['mark'])} test accuracy, seed / default: "
              f"{_secs(m['seed_seconds_to_mark'])} s / {_secs(m['default_seconds_to_mark'])} s = "
              f"{m['speedup']}x{note}")
    if "inference" in results:
        print("\nPrediction, images/s:   batch 1   batch 256")
        for name, speeds in results["inference"].items():
            print(f"  {name:20} {speeds['batch_1']:>9.0f} {speeds['batch_256']:>11.0f}")
    if "efficiency" in results:
        print(f"\nfloat32 matrix-product peak: {results['efficiency']} GFLOP/s "
              "(training GFLOP/s above are a share of it)")


def summary_line(results):
    """The benchmark's last line, for scripts: speedup=<x> default_acc=<a> best_acc=<b>."""
    speedup = results.get("mnist", {}).get("speedup")
    default_acc = results.get("mnist", {}).get("default", {}).get("final_accuracy")
    best_acc = results.get("best", {}).get("final_accuracy")
    return f"speedup={speedup or 'n/a'} default_acc={default_acc or 'n/a'} best_acc={best_acc or 'n/a'}"
