"""Speed: time to accuracy against the tutorial recipe, inference speed and training efficiency.

Every comparison trains or runs both sides one after the other in the same process, on the same
data, so a speedup is a ratio measured in one run on one machine, not two absolute times.
"""

import dataclasses
import tempfile
import time

import keras
import numpy as np

from imgcls.config import resolve_config
from imgcls.train import steps_done, train

class TimeToAccuracy(keras.callbacks.Callback):
    """Checks test accuracy at fixed points, `checks_per_epoch` times an epoch, with the clock
    stopped while it checks; records the training seconds at each point. With a `target`, a check
    more than `near` below it puts the next one an epoch later, not a fraction: a long run far from
    its mark spends little on checks (the CIFAR-10 bench spent minutes on them)."""

    def __init__(self, x_test, y_test, checks_per_epoch=4, target=None, near=0.05):
        super().__init__()
        self.x_test, self.y_test = x_test, np.asarray(y_test).reshape(-1)
        self.checks_per_epoch, self.target, self.near = checks_per_epoch, target, near
        self.points = []  # (epochs done, training seconds, test accuracy)

    def on_train_begin(self, logs=None):
        self.steps_per_epoch = self.params["steps"]
        self.every = max(1, self.steps_per_epoch // self.checks_per_epoch)
        self.next_check, self.checking, self.start = self.every, 0.0, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution.
        step = self.epoch * self.steps_per_epoch + steps_done(batch, self.steps_per_epoch)
        if step >= self.next_check:
            paused = time.perf_counter()
            probs = self.model.predict_on_batch(self.x_test)
            accuracy = float(np.mean(np.argmax(probs, axis=1) == self.y_test))
            self.points.append((round(step / self.steps_per_epoch, 3),
                                round(paused - self.start - self.checking, 2), accuracy))
            self.checking += time.perf_counter() - paused
            far = self.target is not None and accuracy < self.target - self.near
            stride = self.every * (self.checks_per_epoch if far else 1)
            while self.next_check <= step:
                self.next_check += stride

    def on_train_end(self, logs=None):
        self.seconds = round(time.perf_counter() - self.start - self.checking, 2)

    def seconds_to(self, mark):
        """Training seconds until test accuracy first reached `mark`, or None."""
        return next((seconds for _, seconds, accuracy in self.points if accuracy >= mark), None)

    def epochs_to(self, mark):
        """Epochs of training until test accuracy first reached `mark`, or None."""
        return next((epochs for epochs, _, accuracy in self.points if accuracy >= mark), None)


def time_to_accuracy(dataset, preset, target, seed=0, **overrides):
    """Train `preset` (with `overrides` of its config) on `dataset`; its accuracy-over-time record,
    and the trained model. Compute is counted as 3 forward passes per training image (forward,
    and backward at twice the cost) plus one per test-time-augmented test view."""
    config = resolve_config(preset=preset, dataset=dataset.name, seed=seed, **overrides)
    print(f"\n== {preset} recipe on {dataset.name}: {config.model}, {config.epochs} epochs, batch {config.batch_size}, "
          f"seed {seed}")
    with tempfile.TemporaryDirectory() as folder:
        config = dataclasses.replace(config, out=folder)
        tracker = TimeToAccuracy(dataset.x_test, dataset.y_test, target=target)
        run = train(config, dataset=dataset, callbacks=[tracker])
    flops, trained = forward_flops(run.model), run.metrics["epochs"] * run.metrics["train_size"]
    training_flop = 3 * flops * trained
    tta_views = config.tta_views if run.metrics.get("test_accuracy_tta") is not None else 0
    epochs_to_target = tracker.epochs_to(target)
    result = {"preset": preset, "model": config.model, "dataset": dataset.name, "target": target, "seed": seed,
              "seconds_to_target": tracker.seconds_to(target),
              "pflop_to_target": None if epochs_to_target is None else
              round(3 * flops * epochs_to_target * run.metrics["train_size"] / 1e15, 4),
              "final_accuracy": run.metrics["test_accuracy"],
              "final_accuracy_tta": run.metrics.get("test_accuracy_tta"), "epochs": run.metrics["epochs"],
              "training_seconds": tracker.seconds, "checking_seconds": round(tracker.checking, 1),
              "checks": tracker.points,
              "train_images_per_second": round(trained / tracker.seconds),
              "training_pflop": round(training_flop / 1e15, 4),
              "tta_pflop": round(flops * tta_views * len(dataset.y_test) / 1e15, 5),
              "training_gflops": round(training_flop / tracker.seconds / 1e9, 2)}
    return result, tracker


def bench_mnist(dataset, target=0.99):
    """The seed recipe, then the default one; the speedup is the ratio of their times to the mark."""
    seed, seed_tracker = time_to_accuracy(dataset, "seed", target)
    default, default_tracker = time_to_accuracy(dataset, "default", target)
    return {"seed": seed, "default": default, **speedup(seed_tracker, default_tracker, target)}


def speedup(baseline, ours, target):
    """How many times sooner `ours` reached `target` than `baseline` (TimeToAccuracy records). If the
    baseline never got there, the mark is the best accuracy it did reach, and the result says so."""
    mark = target if baseline.seconds_to(target) is not None else max(a for _, _, a in baseline.points)
    baseline_s, ours_s = baseline.seconds_to(mark), ours.seconds_to(mark)
    return {"mark": mark, "mark_lowered": mark != target, "seed_seconds_to_mark": baseline_s,
            "default_seconds_to_mark": ours_s,
            "speedup": round(baseline_s / ours_s, 2) if baseline_s and ours_s else None}


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


# The kernels of each kind of convolution, every weight used once per output position (a separable
# convolution's pointwise kernel runs at its depthwise part's output size)
CONVOLUTION_KERNELS = {keras.layers.Conv2D: ("kernel",), keras.layers.DepthwiseConv2D: ("kernel",),
                       keras.layers.SeparableConv2D: ("depthwise_kernel", "pointwise_kernel")}


def forward_flops(model):
    """Multiply-adds x 2 of the convolution and dense layers for one image (the rest is small)."""
    flops = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
        for kind, names in CONVOLUTION_KERNELS.items():
            if isinstance(layer, kind):
                out_h, out_w = layer.output.shape[1:3]
                flops += 2 * out_h * out_w * sum(int(np.prod(getattr(layer, name).shape)) for name in names)
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
