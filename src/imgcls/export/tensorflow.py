"""The export steps only TensorFlow can run: Keras's TensorFlow exporters to ONNX (through tf2onnx),
LiteRT (the TFLite converter, with post-training int8 quantisation) and SavedModel, and a predictor
for a SavedModel. Kept apart so that `imgcls.export.runtimes` runs ONNX and LiteRT files without
TensorFlow."""

import contextlib
import warnings

import keras
import numpy as np
import tensorflow as tf

CALIBRATION_BATCHES = 10  # the converter calibrates on each; ten batches of ~20 images take a second


def input_signature(model):
    """Raw uint8 pixels shaped like the model's input, any batch size: every exported file takes
    what the Keras model takes, with the cast to float inside it."""
    return [tf.TensorSpec((None, *model.input_shape[1:]), tf.uint8, name="pixels")]


def export_onnx(model, path):
    with warnings.catch_warnings(), gelu_through_erf(model):
        warnings.simplefilter("ignore", FutureWarning)  # Keras's numpy-2 patch of tf2onnx trips one
        model.export(str(path), format="onnx", input_signature=input_signature(model), verbose=False)


def erf_gelu(x):
    """GELU, x * (1 + erf(x / sqrt 2)) / 2: Keras's exact GELU written with erf, which ONNX has."""
    return 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476))


@contextlib.contextmanager
def gelu_through_erf(model):
    """`model`'s GELU activations (airnet's) computed with erf while it is traced: TensorFlow's own
    uses erfc, which tf2onnx cannot convert."""
    layers, found = [model], []
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        if getattr(layer, "activation", None) is keras.activations.gelu:
            found.append(layer)
    for layer in found:
        layer.activation = erf_gelu
    try:
        yield
    finally:
        for layer in found:
            layer.activation = keras.activations.gelu


def export_litert(model, path, calibration=None):
    """A .tflite file in float32, or, given `calibration` (uint8 training images), with int8 weights
    and activations whose ranges come from those images; the input stays uint8 pixels and the output
    float probabilities, so callers need not know the quantisation."""
    options = {}
    if calibration is not None:
        batches = np.array_split(calibration, min(CALIBRATION_BATCHES, len(calibration)))
        options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                   "representative_dataset": lambda: ([batch] for batch in batches),
                   # int8 kernels wherever one exists, float for an op that has none
                   "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                     tf.lite.OpsSet.TFLITE_BUILTINS]}}
    model.export(str(path), format="litert", input_signature=input_signature(model), verbose=False, **options)


def export_saved_model(model, folder):
    model.export(str(folder), format="tf_saved_model", input_signature=input_signature(model), verbose=False)


class SavedModelPredictor:
    """A SavedModel loaded by tf.saved_model.load, called through the endpoint Keras wrote."""

    def __init__(self, path):
        self.model = tf.saved_model.load(str(path))
        (pixels,) = self.model.serve.input_signature
        (probs,) = self.model.signatures["serving_default"].structured_outputs.values()
        self.input_shape, self.output_shape = tuple(pixels.shape), tuple(probs.shape)

    def predict_on_batch(self, batch):
        return self.model.serve(np.asarray(batch, dtype=np.uint8)).numpy()
