"""Plots and the readable report of a run: what a person looks at instead of reading numbers."""

import io

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from imgcls.runs import write_bytes, write_json, write_text

PLOTS = ("curves.png", "confusion_matrix.png", "predictions.png", "misclassified.png")
UNBALANCED = 3  # largest to smallest class: the report says so, and suggests class weights


def _save(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _show(ax, image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.axis("off")


def plot_curves(history, steps, path):
    """Accuracy and loss: training over each tenth of an epoch (a curve even for one epoch),
    validation at the end of each epoch, whole-number epoch ticks."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        fine = [(row["epoch"], row[metric]) for row in steps or () if metric in row]
        if fine:
            ax.plot(*zip(*fine), label="training")
        elif history.get(metric):
            ax.plot(epochs, history[metric], marker="o", label="training")
        if history.get("val_" + metric):
            ax.plot(epochs, history["val_" + metric], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
            ax.set_xlim(0, max(1, len(epochs)) * 1.02)  # room for the last validation marker
            ax.xaxis.get_major_locator().set_params(integer=True)
        else:
            ax.text(0.5, 0.5, "no completed epoch", ha="center", va="center", transform=ax.transAxes)
    _save(fig, path)


def plot_confusion_matrix(matrix, class_names, path):
    """Counts, not shares, and each true class labelled with its number of test images, so an
    unbalanced test set shows as one."""
    matrix = np.asarray(matrix)
    size = max(6, 0.6 * len(class_names))
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format="d")
    ax.set_yticks(range(len(class_names)), [f"{name} ({n})" for name, n in zip(class_names, matrix.sum(axis=1))])
    ax.set_title("Confusion matrix (test set)")
    _save(fig, path)


def _grid(x, y, probs, indices, class_names, title, path):
    cols = 8
    rows = max(1, -(-len(indices) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        _show(ax, x[i])
        guess = int(probs[i].argmax())
        wrong = guess != y[i]
        ax.set_title(f"{class_names[guess]} {probs[i, guess]:.0%}\n(true: {class_names[y[i]]})"
                     if wrong else f"{class_names[guess]} {probs[i, guess]:.0%}",
                     color="red" if wrong else "black", fontsize=8)
    if not len(indices):
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title)
    _save(fig, path)


def plot_predictions(x, y, probs, class_names, path, count=32):
    """A fixed sample of test images with their predicted labels; mistakes in red."""
    indices = np.random.default_rng(0).choice(len(y), size=min(count, len(y)), replace=False)
    _grid(x, y, probs, indices, class_names, "Sample test predictions (mistakes in red)", path)


def plot_misclassified(x, y, probs, class_names, path, count=32):
    """The mistakes the model was most sure of: where to look for label noise or a model's blind spot."""
    wrong = np.flatnonzero(probs.argmax(axis=1) != y)
    indices = wrong[np.argsort(-probs[wrong].max(axis=1))][:count]
    _grid(x, y, probs, indices, class_names, f"Most confident mistakes ({len(wrong)} in all)", path)


def write_results(folder, metrics, dataset, probs, history=None, steps=None, config=None):
    """metrics.json, the plots and report.md of `dataset`'s test split: a run's or an evaluation's."""
    write_json(folder / "metrics.json", metrics)
    write_plots(folder, dataset.x_test, dataset.y_test, probs, metrics, dataset.class_names, history, steps)
    write_report(folder, metrics, config)


def write_plots(folder, x, y, probs, metrics, class_names, history=None, steps=None):
    y = np.asarray(y).reshape(-1)
    if history is not None:
        plot_curves(history, steps, folder / "curves.png")
    plot_confusion_matrix(metrics["confusion_matrix"], class_names, folder / "confusion_matrix.png")
    plot_predictions(x, y, probs, class_names, folder / "predictions.png")
    plot_misclassified(x, y, probs, class_names, folder / "misclassified.png")


def write_report(folder, metrics, config=None):
    """report.md: the run in one page, with the plots embedded."""
    lines = [f"# {metrics['model']} on {metrics['dataset']}", ""]
    if metrics.get("interrupted"):
        lines += ["**Training was interrupted**; these are the results of the weights it had.", ""]
    rows = [("test accuracy", f"{metrics['test_accuracy']:.2%}")]
    if metrics.get("test_accuracy_tta") is not None:
        rows += [("with test-time views (`predict --tta`)", f"{metrics['test_accuracy_tta']:.2%}")]
    rows += [("test loss", f"{metrics['test_loss']:.4f}"), ("test images", metrics["test_size"])]
    if "training_seconds" in metrics:
        rows += [("epochs", metrics["epochs"]), ("training time", f"{metrics['training_seconds']:.1f} s"),
                 ("parameters", f"{metrics['parameters']:,}")]
    rows += [("backend", metrics["backend"]), ("versions", ", ".join(f"{k} {v}" for k, v in metrics["versions"].items()))]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if config:
        lines += ["Configuration: " + ", ".join(f"`{k}={v}`" for k, v in config.items()), ""]
    if (folder / "curves.png").exists():
        lines += ["## Training curves", "", "![curves](curves.png)", ""]
    per_class = metrics["per_class"]
    trained = all("training_images" in m for m in per_class.values())  # a run's report, not an evaluation's
    lines += ["## Per-class results", ""]
    if trained:
        counts = [m["training_images"] for m in per_class.values()]
        if max(counts) >= UNBALANCED * min(counts):
            lines += [f"The classes are unbalanced: {min(counts)} to {max(counts)} training images. "
                      f"`--class-weight balanced` makes each class count as much in training.", ""]
    lines += ["| class | precision | recall | F1 | test images |" + (" training images |" if trained else ""),
              "|---|---|---|---|---|" + ("---|" if trained else "")]
    lines += [f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1-score']:.3f} | {m['support']} |"
              + (f" {m['training_images']} |" if trained else "") for name, m in per_class.items()]
    lines += ["", "## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", "",
              "## Sample predictions", "", "![predictions](predictions.png)", "",
              "## Most confident mistakes", "", "![misclassified](misclassified.png)", ""]
    write_text(folder / "report.md", "\n".join(lines))
