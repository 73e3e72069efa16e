"""Exported models in their own runtimes, behind the two things predict and serve use of a Keras
model: `.predict_on_batch(uint8 batch) -> probabilities` and `.input_shape` ((None, H, W[, C])).

This module imports neither TensorFlow nor Keras: a service on the ONNX file starts in a fraction of
the time and memory. Class names and the rest of the metadata come from the labels.json and
metadata.json that `imgcls.export.export_run` writes beside the exported file.
"""

import importlib
import json
import threading
from pathlib import Path

import numpy as np

from imgcls.errors import ImgclsError, first_line, unknown

EXTRA = "pip install 'imgcls[export]'"
# What each runtime loads from an export folder, in order of preference.
FILES = {"onnx": ("model.onnx",), "litert": ("model.tflite", "model_int8.tflite"), "saved_model": ("saved_model",)}


def require(module):
    """Import an optional package of the export extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImgclsError(f"{module.split('.')[0]} is not installed: {EXTRA}") from None


def shape_with_batch(dims):
    """Keras's shape convention: None for the dynamic batch (ONNX names it, LiteRT writes -1)."""
    return tuple(d if isinstance(d, (int, np.integer)) and d >= 0 else None for d in dims)


class OnnxPredictor:
    """An ONNX Runtime session; thread-safe, as ONNX Runtime sessions are."""

    def __init__(self, path):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (pixels,), (probs,) = self.session.get_inputs(), self.session.get_outputs()
        self.input_name = pixels.name
        self.input_shape, self.output_shape = shape_with_batch(pixels.shape), shape_with_batch(probs.shape)

    def predict_on_batch(self, batch):
        return self.session.run(None, {self.input_name: np.asarray(batch, dtype=np.uint8)})[0]


class LiteRTPredictor:
    """A LiteRT interpreter whose input is resized to each batch's size. An interpreter is not
    thread-safe, so calls take turns."""

    def __init__(self, path):
        interpreter = require("ai_edge_litert.interpreter")
        self.interpreter = interpreter.Interpreter(model_path=str(path))
        (self.input,), (output,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.output_index = output["index"]
        self.input_shape = shape_with_batch(self.input["shape_signature"])
        self.output_shape = shape_with_batch(output["shape_signature"])
        self.batch_shape = None
        self.lock = threading.Lock()

    def predict_on_batch(self, batch):
        batch = np.asarray(batch, dtype=self.input["dtype"])
        with self.lock:
            if batch.shape != self.batch_shape:
                self.interpreter.resize_tensor_input(self.input["index"], batch.shape)
                self.interpreter.allocate_tensors()
                self.batch_shape = batch.shape
            self.interpreter.set_tensor(self.input["index"], batch)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output_index)


def saved_model_predictor(path):
    from imgcls.export.tensorflow import SavedModelPredictor  # TensorFlow only for this runtime

    return SavedModelPredictor(path)


PREDICTORS = {"onnx": OnnxPredictor, "litert": LiteRTPredictor, "saved_model": saved_model_predictor}


def exported_file(run_or_file, runtime):
    """The file `runtime` runs: as given, or the first of FILES[runtime] in a folder or its export/."""
    path = Path(run_or_file)
    if not path.is_dir() or (path / "saved_model.pb").is_file():
        if not path.exists():
            raise ImgclsError(f"exported model not found: {path}")
        return path
    for folder in (path / "export", path):
        for name in FILES[runtime]:
            if (folder / name).exists():
                return folder / name
    raise ImgclsError(f"no {' or '.join(FILES[runtime])} in {path} or {path / 'export'}; "
                      f"make one with: imgcls export {path} --format {runtime}")


def read_export_metadata(folder):
    """{"class_names", "dataset", "model", ...} from labels.json and metadata.json in `folder`."""
    texts = {}
    for name in ("labels.json", "metadata.json"):
        try:
            texts[name] = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ImgclsError(f"{name} not found in {folder}: an exported model needs the labels.json "
                              f"and metadata.json written beside it") from None
        except ValueError as e:
            raise ImgclsError(f"{Path(folder) / name} is not valid JSON: {e}") from None
    labels, metadata = texts["labels.json"], texts["metadata.json"]
    if not (isinstance(labels, list) and all(isinstance(n, str) for n in labels) and isinstance(metadata, dict)):
        raise ImgclsError(f"{folder}: labels.json must be a list of class names and metadata.json an object")
    return {**metadata, "class_names": labels}


def load_exported(run_or_file, runtime):
    """(predictor, metadata) for an exported model: a file, an export folder or a run folder.
    `runtime` is "onnx" (ONNX Runtime), "litert" (LiteRT) or "saved_model" (TensorFlow)."""
    if runtime not in PREDICTORS:
        raise unknown("runtime", runtime, PREDICTORS)
    path = exported_file(run_or_file, runtime)
    metadata = read_export_metadata(path.parent)
    try:
        predictor = PREDICTORS[runtime](path)
    except ImgclsError:
        raise
    except Exception as e:  # each runtime raises its own types for a file it cannot load
        raise ImgclsError(f"{path} cannot be loaded by {runtime}: {first_line(e)}") from e
    outputs = predictor.output_shape[-1]
    if outputs != len(metadata["class_names"]):
        raise ImgclsError(f"{path} predicts {outputs} classes but its labels.json names "
                          f"{len(metadata['class_names'])}")
    return predictor, metadata
