"""Robustness of a photo model: `imgcls bench --only cifar10-c [--run RUN]`.

A CIFAR-10 model's accuracy on CIFAR-10-C (imgcls.robustness.cifar_c: 14 corruptions of Hendrycks
& Dietterich, five severities each) made from IMAGES test pictures spread evenly over the test set
(the JPEG folders list it class by class), beside its accuracy on the same pictures clean; plain
and averaged over the run's own test-time views where it has them, as `imgcls predict --tta`
answers. The corrupted pictures are made afresh each time (all of them would take 430 MB), fed as
arrays. Without --run the default CIFAR-10 recipe is trained first.
"""

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from imgcls.config import resolve_config
from imgcls.errors import ImgclsError
from imgcls.evaluate import predict_proba
from imgcls.robustness.cifar_c import CORRUPTIONS, SEVERITIES, corrupt
from imgcls.saving import load_model, resolve_model_path
from imgcls.views import ViewAveraged

IMAGES = 2000  # every fifth test picture: each corruption's accuracy from 10,000 predictions
SEED = 0
BATCH = 500


def bench_cifar_c(cifar, options):
    """Measure `options["run"]`, or the default CIFAR-10 recipe trained here."""
    if options.get("run"):
        return measure(resolve_model_path(str(options["run"])), cifar)
    from imgcls.train import train

    with tempfile.TemporaryDirectory(prefix="cifar10-c-", ignore_cleanup_errors=True) as folder:
        config = dataclasses.replace(resolve_config(dataset="cifar10"), out=folder)
        print(f"\n== cifar10-c: training the default recipe ({config.model}, {config.epochs} epochs)")
        train(config, dataset=cifar, progress=False)
        return {**measure(Path(folder) / "model.keras", cifar), "measured": "default"}


def evenly(x, y, count):
    """`count` pictures spread evenly over the set, every k-th: as many of each class whether the
    set is listed class by class (the JPEG folders) or shuffled."""
    every = slice(None, None, max(1, len(x) // count))
    return x[every][:count], y[every][:count]


def measure(model_file, cifar):
    """Clean and corrupted accuracies of one saved CIFAR-10 model, plain and with its views."""
    model, metadata, _ = load_model(model_file)
    if metadata.get("dataset") != "cifar10":
        raise ImgclsError(f"{model_file} was trained on {metadata.get('dataset')}; cifar10-c is for CIFAR-10 models")
    views = ViewAveraged(model, metadata["tta_views"]) if metadata.get("tta_views") else None
    x, y = evenly(cifar.x_test, np.asarray(cifar.y_test).reshape(-1), IMAGES)

    def accuracies(images):
        """(plain, with views or None), as evaluation predicts: every view of a batch in one call."""
        if views is None:
            return float(np.mean(predict_proba(model, images, BATCH).argmax(1) == y)), None
        probs = predict_proba(model, images, BATCH, views)
        return float(np.mean(probs[0].argmax(1) == y)), float(np.mean(views.average(probs).argmax(1) == y))

    clean = accuracies(x)
    table = {}
    for name in CORRUPTIONS:
        table[name] = [accuracies(corrupt(x, name, severity, SEED)) for severity in SEVERITIES]
        print(f"cifar10-c {name}: " + " ".join(f"{plain:.3f}" for plain, _ in table[name]), flush=True)
    kinds = ("plain", "tta") if views else ("plain",)
    result = {"measured": str(model_file), "images": len(x), "tta_views": metadata.get("tta_views")}
    for k, kind in enumerate(kinds):
        per = {name: [round(row[k], 4) for row in rows] for name, rows in table.items()}
        result[kind] = {"clean": round(clean[k], 4),
                        "mean": round(float(np.mean([v for row in per.values() for v in row])), 4),
                        "by_severity": [round(float(np.mean([row[s] for row in per.values()])), 4)
                                        for s in range(len(SEVERITIES))],
                        "by_corruption": per}
    return result


def print_cifar_c(result):
    best = result.get("tta") or result["plain"]
    with_views = f" with {result['tta_views']} test views" if result.get("tta") else ""
    print(f"\nCIFAR-10-C{with_views} ({result['images']} test pictures, {len(CORRUPTIONS)} corruptions x 5 "
          f"severities): clean {best['clean']:.2%}, corrupted {best['mean']:.2%}; by severity "
          + " / ".join(f"{v:.1%}" for v in best["by_severity"]))
    for name, row in best["by_corruption"].items():
        print(f"  {name:15} " + " ".join(f"{v:6.1%}" for v in row) + f"   mean {np.mean(row):.1%}")


def cifar_c_line(result):
    """The part's last line, for scripts: cifar10_c clean=... mean=... [tta_clean=... tta_mean=...]."""
    if "skipped" in result:
        return "cifar10_c clean=n/a mean=n/a"
    fields = [f"clean={result['plain']['clean']:.4f}", f"mean={result['plain']['mean']:.4f}"]
    if result.get("tta"):
        fields += [f"tta_clean={result['tta']['clean']:.4f}", f"tta_mean={result['tta']['mean']:.4f}"]
    return "cifar10_c " + " ".join(fields)
