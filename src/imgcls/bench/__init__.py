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
from imgcls.bench.export import bench_export, export_line, print_export
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
    return bench_inference({name: build_model(name, (28, 28), 10) for name in ("fast", "cnn2")}, x)


def _load_cifar10(options):
    """CIFAR-10 from the cache or --cifar-dir, or None, said plainly, when neither has it."""
    data_dir = options.get("cifar_dir")
    try:
        return load_dataset("cifar10", data_dir=data_dir if data_dir and Path(data_dir).exists() else None)
    except ImgclsError as e:
        print(f"Skipping CIFAR-10: {e}")
        return None


def _cifar10(options):
    cifar = _load_cifar10(options)
    if cifar is None:
        return {"skipped": f"no CIFAR-10: not cached and {options.get('cifar_dir')} is absent"}
    return time_to_accuracy(cifar, "default", 0.85)[0]


def _transfer(options):
    cifar = _load_cifar10(options)
    if cifar is None:
        return {"skipped": f"no CIFAR-10: not cached and {options.get('cifar_dir')} is absent"}
    return bench_transfer(cifar)


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
    "fashion": Part(lambda options: time_to_accuracy(load_dataset("fashion_mnist"), "default", 0.93)[0]),
    "cifar10": Part(_cifar10),
    "inference": Part(_inference),
    "efficiency": Part(lambda options: peak_gflops()),
    "wild": Part(bench_wild, print_wild, wild_line),
    "export": Part(bench_export, print_export, export_line),
    "stream": Part(bench_stream, print_stream),
    "backends": Part(bench_backends, print_backends, backends_line),
    "transfer": Part(_transfer, line=transfer_line),
}
SPEED_PARTS = ("mnist", "best", "fashion", "cifar10", "inference", "efficiency")


def run_bench(parts=tuple(PARTS), out_dir=RESULTS, **options):
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
    rows += [results[k] for k in ("best", "fashion", "cifar10") if k in results and "skipped" not in results[k]]
    print(f"\nMachine: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
          f"{results['backend']} backend, " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    if rows:
        print(f"\n{'dataset':14} {'recipe':8} {'model':10} {'target':>7} {'s to target':>12} "
              f"{'final acc':>9} {'with TTA':>8} {'train s':>8} {'epochs':>6} {'GFLOP/s':>8}")
        for r in rows:
            print(f"{r['dataset']:14} {r['preset']:8} {r['model']:10} {_pct(r['target']):>7} "
                  f"{_secs(r['seconds_to_target']):>12} {_pct(r['final_accuracy']):>9} "
                  f"{_pct(r['final_accuracy_tta']):>8} "
                  f"{r['training_seconds']:>8.1f} {r['epochs']:>6} {r['training_gflops']:>8.2f}")
    if "cifar10" in results and "skipped" in results["cifar10"]:
        print(f"cifar10: skipped ({results['cifar10']['skipped']})")
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
