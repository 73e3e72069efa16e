"""The digit conversion end to end: pictures from the capture simulator come back as the digit,
and `imgcls predict` on clean MNIST digits saved as PNG files costs less than half a point."""

import dataclasses

import numpy as np
from PIL import Image

from imgcls.config import resolve_config
from imgcls.digits import to_mnist
from imgcls.predict import predict_files
from imgcls.robustness.capture import capture
from imgcls.train import train


def correlation(a, b):
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_photographed_digits_from_the_capture_simulator(mnist):
    same = [correlation(to_mnist(np.asarray(capture(d, np.random.default_rng([7, i])).convert("L"))), to_mnist(d))
            for i, d in enumerate(mnist.x_test[:40])]
    assert np.median(same) > 0.6  # tilted up to 20 degrees and redrawn with another pen: similar, not equal


def test_predict_on_clean_pngs_costs_less_than_half_a_point(mnist, tmp_path):
    """A small model, its test digits saved as PNG files and read back through `imgcls predict`'s
    conversion, against the same digits fed as arrays."""
    data = dataclasses.replace(mnist, x_train=mnist.x_train[:10000], y_train=mnist.y_train[:10000])
    run = train(resolve_config(model="cnn1", epochs=1, out=str(tmp_path / "run")), dataset=data, progress=False)
    x, y = mnist.x_test[:1000], mnist.y_test[:1000]
    direct = np.mean(np.asarray(run.model.predict(x, verbose=0)).argmax(1) == y)
    for i, digit in enumerate(x):
        Image.fromarray(digit).save(tmp_path / f"{i:04d}.png")
    results = predict_files(run.model, mnist.class_names, [tmp_path], dataset="mnist")
    read_back = np.mean([r["top"][0]["class"] == str(label) for r, label in zip(results, y)])
    assert read_back >= direct - 0.005, (direct, read_back)
