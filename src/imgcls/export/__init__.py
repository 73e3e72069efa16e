"""Export a run's model to ONNX, LiteRT, a TensorFlow SavedModel or a web page that runs it in the
browser (`web`), and check the exported file in its own runtime before anyone relies on it.

`export_run` writes, into RUN/export/ by default: the model file, labels.json (class names in output
order), metadata.json (what `runtimes.load_exported` needs, and the checks of every file exported
there) and model_card.md. Every exported file takes the Keras model's input, raw uint8 pixels with
a dynamic batch size, and gives softmax probabilities.

Keras and TensorFlow are imported inside the functions that use them: importing this package is
also importing `imgcls.export.runtimes`, which must load without them.
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from imgcls.errors import ImgclsError, InvalidValue, unknown
from imgcls.export import runtimes, web
from imgcls.runs import atomic_folder, atomic_path, read_metrics, write_json, write_text

FORMATS = {"onnx": "model.onnx", "litert": "model.tflite", "saved_model": "saved_model", "web": "web"}
QUANTIZED = {("litert", "int8"): "model_int8.tflite"}
NEEDS = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",), "saved_model": (),
         "web": ("tf2onnx", "onnx", "onnxruntime")}
RUNTIME_NAMES = {"onnx": ("ONNX Runtime", "onnxruntime"), "litert": ("LiteRT", "ai-edge-litert"),
                 "saved_model": ("TensorFlow", "tensorflow-cpu"), "web": ("ONNX Runtime", "onnxruntime")}
CALIBRATION_IMAGES = 200  # training images that set int8 ranges; more changed nothing measurable
SPEED_BATCHES = (1, 256)  # one picture at a time (a service), and a full batch of predict or serve
SPEED_SECONDS = 1.0  # per figure, in SPEED_WINDOWS windows: steady rates, the best window reported
SPEED_WINDOWS = 5
CHECK_BATCH = 256
AUGMENTATION = ("RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomContrast",
                "RandomBrightness")  # the identity at inference; older runs saved them inside the model
PREPROCESSING = {
    "digits": "the MNIST convention: greyscale, a light digit on a black background (dark ink on light "
              "paper is inverted and the paper's grey removed), the digit's bounding box scaled to about "
              "20x20 keeping its aspect ratio and placed in the 28x28 frame with its centre of mass in "
              "the middle",
    "objects": "the Fashion-MNIST convention: greyscale, a light object on a black background, its "
               "bounding box scaled to fill the frame and centred",
    "plain": "the model's colour mode and size only: convert to {mode} and resize to {size}",
}


def export_run(run, fmt, quantize=None, out=None, check_images=1000, tta=False) -> Path:
    """Export the model of `run` (a run folder or a model file) to `fmt` ("onnx", "litert",
    "saved_model" or "web"; "litert" with quantize="int8" for int8), check it in its own runtime on
    `check_images` test images of the run's dataset, and write labels.json, metadata.json and
    model_card.md beside it in `out` (default RUN/export/). With `tta` (web only), the page averages
    the test-time views the run was measured with, as `imgcls predict --tta` does; the other
    formats' callers can (metadata.json says `tta_views`). Returns the exported file's path."""
    target_name = export_name(fmt, quantize)
    if isinstance(check_images, bool) or not isinstance(check_images, int) or check_images < 1:
        raise InvalidValue("check_images", f"must be a whole number of at least 1, got {check_images!r}")
    if tta and fmt != "web":
        raise ImgclsError("--tta is for --format web: other exported files predict one view at a time, and their "
                          "callers average the views metadata.json names, as imgcls predict --runtime onnx --tta does")
    for module in NEEDS[fmt]:
        runtimes.require(module)
    from imgcls.predict import views_for_tta
    from imgcls.saving import load_model

    model, metadata, path = load_model(run)
    views = views_for_tta(metadata, path) if tta else None
    model = inference_model(model)
    data = run_dataset(model, metadata, path)
    folder = Path(out) if out else path.parent / "export"
    target = folder / target_name
    calibration = sample(data.x_train) if quantize else None
    if fmt == "web":
        web.write_page(model, target, web.page_info(metadata, model.input_shape[1:], read_metrics(path) or {}, views))
    else:
        write_model(model, fmt, target, calibration)
    source = {"file": str(path), "sha256": sha256(path)}
    info = {"model": metadata["model"], "dataset": metadata.get("dataset"), "class_names": metadata["class_names"],
            "input_shape": list(model.input_shape), "input_dtype": "uint8", "source": source,
            "exports": earlier_exports(folder, source)}
    if "tta_views" in metadata:
        info["tta_views"] = metadata["tta_views"]
    write_json(folder / "labels.json", metadata["class_names"])
    write_json(folder / "metadata.json", info)  # now loadable: checked the way a service will load it
    if fmt == "web":  # the page's model.onnx; the browser runs it in ONNX Runtime Web (tests compare)
        predictor = runtimes.OnnxPredictor(target / "model.onnx")
    else:
        predictor, _ = runtimes.load_exported(target, fmt)
    record = check_export(model, predictor, data, check_images) | {"bytes": size(target), "runtime": runtime_name(fmt)}
    if views:
        record["tta_views"] = views  # the page averages them
    if quantize:
        record["float"] = float_litert(model, data, check_images)
    info["exports"][target.name] = record
    write_json(folder / "metadata.json", info)
    write_text(folder / "model_card.md", model_card(info, read_metrics(path) or {}))
    return target


def export_name(fmt, quantize):
    """The file name for `fmt` and `quantize`, or an ImgclsError for a pair that does not exist."""
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    if quantize is None:
        return FORMATS[fmt]
    if (fmt, quantize) not in QUANTIZED:
        raise ImgclsError(f"quantize={quantize!r} is not available for {fmt}; "
                          f"valid: {', '.join(f'{f} {q}' for f, q in QUANTIZED)}")
    return QUANTIZED[fmt, quantize]


def is_augmentation(layer):
    """A random augmentation layer, or a Sequential made only of them."""
    import keras

    if isinstance(layer, keras.Sequential):
        return bool(layer.layers) and all(map(is_augmentation, layer.layers))
    return type(layer).__name__ in AUGMENTATION


def inference_model(model):
    """`model` without the random augmentation layers older runs saved inside it (ONNX Runtime has
    no kernels for their random ops; they are the identity at inference anyway), weights copied;
    `model` itself when it has none. Works on a model fresh from disk, never called."""
    import keras

    if not any(map(is_augmentation, model.layers)):
        return model

    def clone(layer):
        if is_augmentation(layer):  # a Sequential, not a bare Identity: its call takes the `mask` argument
            return keras.Sequential([keras.layers.Identity()], name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    stripped = keras.models.clone_model(model, clone_function=clone)
    for source, layer in zip(model.layers, stripped.layers):
        if not is_augmentation(source):  # their seed state has no place in the Identity
            layer.set_weights(source.get_weights())
    return stripped


def run_dataset(model, metadata, path):
    """The dataset the model was trained on, for its test images (checks) and training images
    (int8 calibration); a folder's pictures are converted to the model's input size and colours."""
    from imgcls.evaluate import dataset_for

    name = metadata.get("dataset")
    if not name:
        raise ImgclsError(f"{path} does not say which dataset it was trained on: nothing to check an export on")
    return dataset_for(model, name)


def sample(x, y=None, n=CALIBRATION_IMAGES, seed=0):
    """A fixed random sample of n images (and their labels), all when there are fewer: every class,
    not the first few, since a folder dataset lists its pictures class by class. Read into memory."""
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
    return np.asarray(x[rows]) if y is None else (np.asarray(x[rows]), np.asarray(y[rows]).reshape(-1))


def write_model(model, fmt, target, calibration=None):
    """Write `model` as `fmt` to `target` atomically: a crash leaves the old file or the new one."""
    from imgcls.export import tensorflow

    if fmt == "saved_model":
        with atomic_folder(target) as tmp:
            tensorflow.export_saved_model(model, tmp)
        return
    with atomic_path(target) as tmp:
        if fmt == "onnx":
            tensorflow.export_onnx(model, tmp)
        else:
            tensorflow.export_litert(model, tmp, calibration)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def size(path):
    """Bytes of a file, or of all the files in a folder (a SavedModel)."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def earlier_exports(folder, source):
    """The checks of files exported earlier into `folder` from the same model file, still there: one
    model card covers every format exported from one model."""
    try:
        earlier = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("source") != source:
        return {}
    return {name: record for name, record in earlier.get("exports", {}).items() if (folder / name).exists()}


def predict_all(predictor, x):
    return np.concatenate([np.asarray(predictor.predict_on_batch(x[i:i + CHECK_BATCH]))
                           for i in range(0, len(x), CHECK_BATCH)])


def images_per_second(predictor, x, batch):
    """The best rate at `batch` images a call over SPEED_WINDOWS windows, after one call to warm up
    (allocation, tracing): other work on a shared CPU only ever slows a window down."""
    rows = np.resize(x, (batch, *x.shape[1:]))  # repeats images when there are fewer than `batch`
    predictor.predict_on_batch(rows)
    best = 0.0
    for _ in range(SPEED_WINDOWS):
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < SPEED_SECONDS / SPEED_WINDOWS:
            predictor.predict_on_batch(rows)
            calls += 1
        best = max(best, calls * batch / (time.perf_counter() - start))
    return round(best, 1)


def check_export(model, predictor, data, n):
    """Accuracy and top-1 agreement of the exported predictor against the Keras model on `n` test
    images (a fixed sample), and both one's speed, measured one after the other in this process."""
    x, y = sample(data.x_test, data.y_test, n)
    ours, keras_top = predict_all(predictor, x).argmax(axis=1), predict_all(model, x).argmax(axis=1)
    return {"check_images": len(x), "accuracy": round(float(np.mean(ours == y)), 6),
            "keras_accuracy": round(float(np.mean(keras_top == y)), 6),
            "agreement": round(float(np.mean(ours == keras_top)), 6),
            "images_per_second": {str(b): images_per_second(predictor, x, b) for b in SPEED_BATCHES},
            "keras_images_per_second": {str(b): images_per_second(model, x, b) for b in SPEED_BATCHES}}


def float_litert(model, data, n):
    """Size and accuracy of the float .tflite of the same model, for the int8 file to be judged by."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        write_model(model, "litert", path)
        x, y = sample(data.x_test, data.y_test, n)  # the images check_export takes
        probs = predict_all(runtimes.LiteRTPredictor(path), x)
        return {"bytes": size(path), "accuracy": round(float(np.mean(probs.argmax(axis=1) == y)), 6)}


def runtime_name(fmt):
    name, distribution = RUNTIME_NAMES[fmt]
    return f"{name} {importlib.metadata.version(distribution)}"


def preprocessing(dataset, input_shape):
    """What a caller must do to a real picture before the model sees it, in words."""
    from imgcls.predict import style_for

    style = style_for(dataset, input_shape)
    mode = "RGB" if input_shape[-1:] == (3,) else "greyscale (one channel)"
    return PREPROCESSING[style].format(mode=mode, size=f"{input_shape[1]}x{input_shape[0]}"), style


VIEWS = {2: "the picture and its mirror image (columns reversed), at equal weights",
         6: "the picture and its mirror image at 1/4 each, and at 1/8 each both moved a pixel down and right "
            "and a pixel up and left, the edge reflected into the gap (as numpy.pad's reflect mode)"}


def percent(value):
    return f"{value:.2%}" if isinstance(value, (int, float)) else "not recorded"


def speeds(record):
    """Images per second in the file's runtime, then Keras's, at each of SPEED_BATCHES."""
    return [record[key][str(b)] for key in ("images_per_second", "keras_images_per_second") for b in SPEED_BATCHES]


def model_card(info, metrics):
    """model_card.md: the contract of the exported files (input, output, preprocessing) and their
    checks against the Keras model."""
    shape = tuple(info["input_shape"][1:])
    classes = len(info["class_names"])
    how, style = preprocessing(info["dataset"], shape)
    batch_shape = ", ".join(["batch", *map(str, shape)])
    lines = [
        f"# {info['model']} ({info['dataset']}): exported model",
        "",
        f"Exported by `imgcls export` from `{info['source']['file']}`.",
        "",
        "## Input",
        "",
        f"One tensor, `pixels`: uint8, shape ({batch_shape}), raw pixel values 0-255; any batch size. "
        "The model converts to float and rescales inside: pass the pixels as they are, not normalised.",
        "",
        "## Output",
        "",
        f"One tensor: float32, shape (batch, {classes}), softmax probabilities (each row sums to 1) over "
        "the classes of `labels.json`, in that order; the most probable is the prediction.",
        "",
        "## Preprocessing for real pictures",
        "",
        f"The model was trained on {info['dataset']} images, so a picture must be converted to what "
        f"those look like: {how}. `imgcls.images.to_model_input(image, input_shape, \"{style}\")` does "
        "this (its module docstring gives the current rules).",
        "",
        "## Accuracy",
        "",
        f"The run's test accuracy (Keras, {metrics.get('test_size', 0):,} test images, metrics.json): "
        f"{percent(metrics.get('test_accuracy'))}.",
        *([f"\nWith test-time views (metadata.json's `tta_views`: {info['tta_views']}): "
           f"{percent(metrics.get('test_accuracy_tta'))}, each picture's probabilities averaged over "
           f"{VIEWS[info['tta_views']]}. `imgcls.views.ViewAveraged` wraps any of the files below to do so, as "
           "`imgcls predict RUN --runtime onnx --tta` does."] if info.get("tta_views") else []),
        "",
        "Each exported file, run in its own runtime on a fixed random sample of the test set (of every "
        "class; its size in the table), against the Keras model on the same images:",
        "",
        "| file | runtime | bytes | test images | accuracy | Keras accuracy | top-1 agreement with Keras |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| `{name}` | {r['runtime']} | {r['bytes']:,} | {r['check_images']:,} | {percent(r['accuracy'])} | "
          f"{percent(r['keras_accuracy'])} | {percent(r['agreement'])} |" for name, r in info["exports"].items()],
        *[f"\n`{name}` has int8 weights and activations, their ranges calibrated on {CALIBRATION_IMAGES} "
          f"training images; the float LiteRT file of the same model: {r['float']['bytes']:,} bytes, "
          f"accuracy {percent(r['float']['accuracy'])} on the same images."
          for name, r in info["exports"].items() if "float" in r],
        *[f"\n`{name}/` is a page that runs the model in the browser, no server needed (open its index.html): "
          f"its model.onnx is checked here in ONNX Runtime; the page runs the same file in {web.ORT_WEB} "
          "(WebAssembly) and converts pictures as `imgcls predict` does"
          + (f", averaging the {r['tta_views']} test-time views." if r.get("tta_views") else ".")
          for name, r in info["exports"].items() if name == FORMATS["web"]],
        "",
        "## Speed",
        "",
        "Images per second, each file in its own runtime and the Keras model measured right after it, "
        f"in the same process ({platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}): "
        "compare rows side by side only with their own Keras figures.",
        "",
        "| file | " + " | ".join(f"{who}batch {b}" for who in ("", "Keras ") for b in SPEED_BATCHES) + " |",
        "| --- |" + " ---: |" * 2 * len(SPEED_BATCHES),
        *[f"| `{name}` | " + " | ".join(f"{rate:,.0f}" for rate in speeds(r)) + " |"
          for name, r in info["exports"].items()],
        "",
    ]
    return "\n".join(lines)
