"""Benchmarks: time to accuracy against the tutorial recipe, inference speed and efficiency.

Every comparison trains or runs both sides one after the other in the same process, on the same
data, so a speedup is a ratio measured in one run on one machine, not two absolute times.
"""

import dataclasses
import tempfile
import time
from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from imgcls.artifacts import write_json
from imgcls.config import resolve_config
from imgcls.data import load_dataset
from imgcls.errors import ImgclsError
from imgcls.evaluate import environment
from imgcls.models import build_model
from imgcls.train import train

PARTS = ("mnist", "best", "fashion", "cifar10", "inference", "efficiency")


class TimeToAccuracy(keras.callbacks.Callback):
    """Checks test accuracy at fixed points, `checks_per_epoch` times an epoch, with the clock
    stopped while it checks; records the training seconds at each point."""

    def __init__(self, x_test, y_test, checks_per_epoch=4):
        super().__init__()
        self.x_test, self.y_test = x_test, np.asarray(y_test).reshape(-1)
        self.checks_per_epoch = checks_per_epoch
        self.points = []  # (epochs done, training seconds, test accuracy)

    def on_train_begin(self, logs=None):
        self.steps_per_epoch = self.params["steps"]
        self.every = max(1, self.steps_per_epoch // self.checks_per_epoch)
        self.next_check, self.checking, self.start = self.every, 0.0, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution, `batch` being its last step.
        step = self.epoch * self.steps_per_epoch + batch + 1
        if step >= self.next_check:
            paused = time.perf_counter()
            probs = self.model.predict_on_batch(self.x_test)
            accuracy = float(np.mean(np.argmax(probs, axis=1) == self.y_test))
            self.points.append((round(step / self.steps_per_epoch, 3),
                                round(paused - self.start - self.checking, 2), accuracy))
            self.checking += time.perf_counter() - paused
            while self.next_check <= step:
                self.next_check += self.every

    def on_train_end(self, logs=None):
        self.seconds = round(time.perf_counter() - self.start - self.checking, 2)

    def seconds_to(self, mark):
        """Training seconds until test accuracy first reached `mark`, or None."""
        return next((seconds for _, seconds, accuracy in self.points if accuracy >= mark), None)


def time_to_accuracy(dataset, preset, target):
    """Train `preset` on `dataset`; its accuracy-over-time record, and the trained model."""
    config = resolve_config(preset=preset, dataset=dataset.name)
    print(f"\n== {preset} recipe on {dataset.name}: {config.model}, {config.epochs} epochs, batch {config.batch_size}")
    with tempfile.TemporaryDirectory() as folder:
        config = dataclasses.replace(config, out=folder)
        tracker = TimeToAccuracy(dataset.x_test, dataset.y_test)
        run = train(config, dataset=dataset, callbacks=[tracker])
    result = {"preset": preset, "model": config.model, "dataset": dataset.name, "target": target,
              "seconds_to_target": tracker.seconds_to(target),
              "final_accuracy": run.metrics["test_accuracy"],
              "final_accuracy_tta": run.metrics.get("test_accuracy_tta"), "epochs": run.metrics["epochs"],
              "training_seconds": tracker.seconds, "checks": tracker.points,
              "training_gflops": round(3 * forward_flops(run.model) * run.metrics["epochs"] * run.metrics["train_size"]
                                       / tracker.seconds / 1e9, 2)}
    return result, tracker


def bench_mnist(dataset, target=0.99):
    """The seed recipe, then the default one; the speedup is the ratio of their times to the mark."""
    seed, seed_tracker = time_to_accuracy(dataset, "seed", target)
    default, default_tracker = time_to_accuracy(dataset, "default", target)
    # If the tutorial never gets there, compare at the accuracy it did reach, and say so.
    mark = target if seed["seconds_to_target"] is not None else max(a for _, _, a in seed_tracker.points)
    seed_s, default_s = seed_tracker.seconds_to(mark), default_tracker.seconds_to(mark)
    return {"mark": mark, "mark_lowered": mark != target, "seed": seed, "default": default,
            "seed_seconds_to_mark": seed_s, "default_seconds_to_mark": default_s,
            "speedup": round(seed_s / default_s, 2) if seed_s and default_s else None}


def images_per_second(model, x, batch_size, seconds=3.0):
    """Prediction throughput at `batch_size`, after one warm-up call, for about `seconds`."""
    batches = [x[i:i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)]
    model.predict_on_batch(batches[0])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in batches:
            model.predict_on_batch(batch)
            done += len(batch)
            if time.perf_counter() - start >= seconds:
                break
    return round(done / (time.perf_counter() - start), 1)


def bench_inference(models, x):
    return {name: {f"batch_{b}": images_per_second(model, x, b) for b in (1, 256)}
            for name, model in models.items()}


def forward_flops(model):
    """Multiply-adds x 2 of the convolution and dense layers for one image (the rest is small)."""
    flops = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape  # (kh, kw, in, out)
            out_h, out_w = layer.output.shape[1:3]
            flops += 2 * out_h * out_w * int(np.prod(kernel))
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return flops


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaf_layers(layer)
        else:
            yield layer


def peak_gflops(n=2048, seconds=3.0):
    """float32 matrix-product throughput: the machine's practical ceiling."""
    a = keras.random.normal((n, n), seed=0)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
        done += 1
    return round(2 * n**3 * done / (time.perf_counter() - start) / 1e9, 1)


def run_bench(parts=PARTS, cifar_dir=None, out_dir="bench/results"):
    """Run the chosen parts, print a table, save JSON; returns the results."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ImgclsError(f"unknown bench part(s): {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    results = {"started": datetime.now().isoformat(timespec="seconds"), "machine": machine(), **environment()}
    needs_mnist = {"mnist", "best"} & set(parts)
    mnist = load_dataset("mnist") if needs_mnist else None
    if "mnist" in parts:
        results["mnist"] = bench_mnist(mnist)
    if "best" in parts:
        results["best"] = time_to_accuracy(mnist, "best", 0.995)[0]
    if "fashion" in parts:
        results["fashion"] = time_to_accuracy(load_dataset("fashion_mnist"), "default", 0.93)[0]
    if "cifar10" in parts:
        cifar = _cifar10(cifar_dir)
        results["cifar10"] = time_to_accuracy(cifar, "default", 0.85)[0] if cifar else {
            "skipped": f"no CIFAR-10: not cached and {cifar_dir} is absent"}
    if "inference" in parts:
        shape = (28, 28)
        x = np.random.default_rng(0).integers(0, 256, (2048, *shape), dtype=np.uint8)
        results["inference"] = bench_inference(
            {name: build_model(name, shape, 10) for name in ("fast", "cnn2")}, x)
    if "efficiency" in parts:
        results["peak_gflops"] = peak_gflops()
    path = Path(out_dir) / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    write_json(path, results)
    print_table(results)
    print(f"Results: {path}")
    print(summary_line(results))
    return results


def _cifar10(data_dir):
    """CIFAR-10 from the cache or `data_dir`; None, said plainly, when neither has it."""
    try:
        return load_dataset("cifar10", data_dir=data_dir if data_dir and Path(data_dir).exists() else None)
    except ImgclsError as e:
        print(f"Skipping CIFAR-10: {e}")
        return None


def machine():
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
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
    if "peak_gflops" in results:
        print(f"\nfloat32 matrix-product peak: {results['peak_gflops']} GFLOP/s "
              "(training GFLOP/s above are a share of it)")


def summary_line(results):
    """The benchmark's last line, for scripts: speedup=<x> default_acc=<a> best_acc=<b>."""
    speedup = results.get("mnist", {}).get("speedup")
    default_acc = results.get("mnist", {}).get("default", {}).get("final_accuracy")
    best_acc = results.get("best", {}).get("final_accuracy")
    return f"speedup={speedup or 'n/a'} default_acc={default_acc or 'n/a'} best_acc={best_acc or 'n/a'}"
