"""Test-set metrics: accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""

from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, log_loss

from imgcls import reports
from imgcls.batches import Batches
from imgcls.data import Dataset, load_dataset
from imgcls.data.console import say
from imgcls.data.lazy import LazyImages
from imgcls.errors import ImgclsError
from imgcls.images import IMAGE_SUFFIXES, open_image, to_model_input
from imgcls.predict import measured_views, style_for
from imgcls.runs import environment, short_name
from imgcls.saving import load_model
from imgcls.views import ViewAveraged


def predict_proba(model, x, batch_size=512, averaging=None):
    """Class probabilities for raw pixels, (images, classes); with `averaging` (an
    imgcls.views.ViewAveraged), (views, images, classes), each batch reaching the model with its
    views in one call, so that every image is read once. Quiet, since callers show their own
    progress. Lazy images (a folder too big for memory) are read a batch at a time."""
    if isinstance(x, LazyImages):
        batch_size = 64  # smaller batches: the read-ahead queue holds several
    elif averaging is None:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    probs = np.asarray(model.predict(Batches(x, batch_size=batch_size, view=averaging and averaging.stack),
                                     verbose=0))
    if averaging is None:
        return probs
    sizes = [averaging.views * min(batch_size, len(x) - start) for start in range(0, len(x), batch_size)]
    return np.concatenate([batch.reshape(averaging.views, -1, batch.shape[-1])
                           for batch in np.split(probs, np.cumsum(sizes)[:-1])], axis=1)


def evaluate(model, x, y, class_names, batch_size=512, views=None):
    """Metrics of `model` on (x, y); returns (metrics, probabilities) so plots reuse the predictions.

    With `views` (2 or 6: see imgcls.views), also the accuracy of predictions averaged over that many
    views of each image (test-time augmentation): a point or more on photos, for one more pass per
    added view.
    """
    y = np.asarray(y).reshape(-1)
    extra = {}
    if views:
        averaging = ViewAveraged(model, views)
        probs = predict_proba(model, x, batch_size, averaging)
        extra["test_accuracy_tta"] = round(float(np.mean(averaging.average(probs).argmax(axis=1) == y)), 6)
        probs = probs[0]
    else:
        probs = predict_proba(model, x, batch_size)
    predicted = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    # Clipped at 1e-7 as Keras's cross-entropy does, so this equals model.evaluate's loss.
    loss = log_loss(y, np.clip(probs, 1e-7, 1.0), labels=labels)
    report = classification_report(y, predicted, labels=labels, target_names=class_names,
                                   output_dict=True, zero_division=0)
    per_class = {name: {k: round(float(report[name][k]), 4) for k in ("precision", "recall", "f1-score")}
                 | {"support": int(report[name]["support"])} for name in class_names}
    metrics = {
        "test_accuracy": round(float(np.mean(predicted == y)), 6),
        **extra,
        "test_loss": round(loss, 6),
        "test_size": int(len(y)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
    }
    return metrics, probs


def evaluate_saved(model_or_run, dataset=None, data_dir=None, out=None, images=None, preprocess=True,
                   cache_mode="auto", memory_budget=None):
    """Evaluate a saved model on the test split of `dataset` (default: the one it was trained on), or
    on a labelled folder of real pictures, `images`/<class>/*, converted as `imgcls predict` does;
    writes metrics.json, the plots and report.md to `out` (default <model folder>/eval-<name>).
    A model trained with --tta also gets the accuracy with its test-time views, as training gave it.
    A folder dataset is read as cache_mode and memory_budget say (see load_folder).
    Returns (folder, metrics)."""
    model, metadata, path = load_model(model_or_run)
    if images:
        data = read_labelled_pictures(images, metadata, tuple(model.input_shape[1:]), preprocess)
    else:
        name = dataset or metadata.get("dataset")
        if not name:
            raise ImgclsError(f"{path} does not say which dataset it was trained on; pass --dataset")
        data = dataset_for(model, name, data_dir, cache_mode=cache_mode, memory_budget=memory_budget)
    metrics, probs = evaluate(model, data.x_test, data.y_test, data.class_names,
                              views=measured_views(metadata, path))  # a run measured with TTA: again
    metrics = {"dataset": data.name, "model": metadata["model"], "model_file": str(path),
               **metrics, **environment()}
    folder = Path(out) if out else path.parent / f"eval-{short_name(data.name)}"
    folder.mkdir(parents=True, exist_ok=True)
    reports.write_results(folder, metrics, data, probs)
    return folder, metrics


def dataset_for(model, name, data_dir=None, **folder_options):
    """Dataset `name` as `model` takes it: a folder's pictures converted to the model's input size
    and colours, whatever their own, and kept as `folder_options` (cache_mode, memory_budget) say;
    an ImgclsError when its classes do not match the model's."""
    shape = tuple(model.input_shape[1:])
    options = {"image_size": shape[:2], "color_mode": "rgb" if shape[-1:] == (3,) else "grayscale"} \
        if name.startswith("folder:") else {}
    data = load_dataset(name, data_dir=data_dir, **options, **folder_options)
    if len(data.class_names) != model.output_shape[-1]:
        raise ImgclsError(f"{data.name} has {len(data.class_names)} classes but the model predicts "
                          f"{model.output_shape[-1]}")
    return data


def read_labelled_pictures(root, metadata, input_shape, preprocess=True):
    """A Dataset whose test split is every picture in root/<class>/*, converted for the model as
    `imgcls predict` converts it (so the plots show what the model saw). Class folders must be
    named after the model's classes, a "/" in a name written "_" (Fashion-MNIST's "T-shirt/top" is
    T-shirt_top/); a file that cannot be read is skipped and named."""
    root, class_names = Path(root), metadata["class_names"]
    if not root.is_dir():
        raise ImgclsError(f"{root} is not a folder of class folders (<class>/<picture>)")
    labels = {name.replace("/", "_"): label for label, name in enumerate(class_names)}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    strangers = [p.name for p in folders if p.name not in labels]
    if strangers:
        raise ImgclsError(f"{root} has folders that are not classes of the model: {', '.join(strangers)}; "
                          f"its class folders: {', '.join(labels)}")
    style = style_for(metadata.get("dataset"), input_shape, preprocess)
    x, y, skipped = [], [], []
    for folder in folders:
        for file in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                x.append(to_model_input(open_image(file), input_shape, style))
                y.append(labels[folder.name])
            except ImgclsError as e:
                skipped.append(str(e))
    if skipped:
        say(f"skipped {len(skipped)} unreadable pictures: {skipped[0]}{'; ...' if len(skipped) > 1 else ''}")
    if not x:
        raise ImgclsError(f"no readable pictures in {root}/<class>/ for classes {', '.join(class_names)}")
    empty = np.zeros((0, *input_shape), np.uint8)
    return Dataset(f"images:{root.name}", empty, np.zeros(0, np.uint8), np.stack(x), np.array(y), class_names,
                   source=str(root))
