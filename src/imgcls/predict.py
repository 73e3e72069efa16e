"""Predict classes of image files with a saved model: read, convert to what the model expects, rank."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from imgcls.errors import ImgclsError


def read_image(path):
    """Open an image file fully, or explain in one line why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ImgclsError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except UnidentifiedImageError:
        raise ImgclsError(f"{path} is not an image file Pillow can read") from None
    except OSError as e:
        raise ImgclsError(f"cannot read image {path}: {e}") from None


def to_model_input(image, input_shape):
    """Convert a PIL image to the model's input: its colour mode and size, uint8 pixels."""
    height, width = input_shape[:2]
    channels = input_shape[2] if len(input_shape) == 3 else 1
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).reshape(input_shape)


def top_classes(probs, class_names, k):
    order = np.argsort(-probs)[:k]
    return [{"class": class_names[i], "probability": round(float(probs[i]), 6)} for i in order]


def predict_images(model, class_names, images, top_k=3):
    """Top-k classes with probabilities for each PIL image, in one batched model call."""
    input_shape = tuple(model.input_shape[1:])
    batch = np.stack([to_model_input(image, input_shape) for image in images])
    probs = np.asarray(model.predict(batch, batch_size=256, verbose=0))
    return [top_classes(p, class_names, min(top_k, len(class_names))) for p in probs]


def predict_files(model, class_names, paths, top_k=3):
    """[{"file": path, "top": [{"class", "probability"}, ...]}] for each image file."""
    images = [read_image(p) for p in paths]
    results = predict_images(model, class_names, images, top_k)
    return [{"file": str(p), "top": top} for p, top in zip(paths, results)]
