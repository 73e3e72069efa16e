"""Image-folder datasets: PATH/train/<class>/* and PATH/test/<class>/*, or PATH/<class>/* with a
stratified test split made here. PATH may also be a .tar(.gz) or .zip archive of such folders."""

import collections
import hashlib
import json
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from imgcls.data import cache
from imgcls.data.console import Progress, say
from imgcls.data.files import as_file, fingerprint, list_files
from imgcls.errors import ImgclsError
from imgcls.images import open_image, to_model_input

LAYOUT = "PATH/<class>/<image>, or PATH/train/<class>/<image> and PATH/test/<class>/<image>"


def load_folder(path, *, image_size=None, color_mode=None, test_fraction=0.2, seed=0, progress=True):
    """((x_train, y_train, x_test, y_test), class_names) of an image folder.

    Decoding tens of thousands of images takes far longer than reading arrays back, so the
    result is cached, keyed by the folder, its file listing (names, sizes, times) and the options.
    """
    if not str(path).strip():
        raise ImgclsError(f"folder: needs a path, e.g. folder:./my_images ({LAYOUT})")
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise ImgclsError(f"folder dataset {path} does not exist; expected {LAYOUT}")
    image_size = check_options(image_size, color_mode)
    say(f"listing {root}...", progress)
    files = list_files(root)
    folder_key = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    options = [str(root), fingerprint(root, files), image_size, color_mode, test_fraction, seed]
    cache_file = (cache.cache_dir() / "folders" /
                  f"{root.name}-{folder_key}-{hashlib.sha256(json.dumps(options).encode()).hexdigest()[:16]}.npz")
    cached = cache.load(cache_file)
    if cached:
        return cached[:2]
    arrays, class_names = read_image_folders(files, root, image_size=image_size, color_mode=color_mode,
                                             test_fraction=test_fraction, seed=seed, progress=progress)
    cache.save(cache_file, arrays, class_names, str(root))
    for stale in cache_file.parent.glob(f"{root.name}-{folder_key}-*.npz"):  # earlier versions of the folder
        if stale != cache_file:
            cache.remove(stale)
    return arrays, class_names


def read_image_folders(files, where, *, image_size=None, color_mode=None, test_fraction=0.2, seed=0,
                       progress=True, max_per_class=None):
    """((x_train, y_train, x_test, y_test), class_names) from list_files() output.

    test_fraction=None insists on the train/test layout; max_per_class keeps only the first few
    images of each class and split (a quick look at a big dataset).
    """
    groups = _group(files, where)
    class_names = sorted(groups.get("train", groups.get("all")))
    if len(class_names) < 2:
        raise ImgclsError(f"{where} has {len(class_names)} class folder(s) with images; a classifier needs "
                          f"at least 2 ({LAYOUT})")
    if "all" in groups:
        if test_fraction is None:
            raise ImgclsError(f"{where} has no train/ and test/ folders of classes")
        groups = _split(groups["all"], test_fraction, seed)
    unknown = sorted(set(groups["test"]) - set(class_names))
    if unknown:
        raise ImgclsError(f"{where}: test/ has classes that train/ lacks: {', '.join(unknown)}")
    samples = [[(key, label) for label, name in enumerate(class_names)
                for key in groups[split].get(name, [])[:max_per_class]] for split in ("train", "test")]
    if not samples[1]:
        raise ImgclsError(f"{where} leaves no test images; add images to each class or a test/ folder")
    keys = [key for key, _ in samples[0] + samples[1]]
    sizes, modes = zip(*_probe(files, keys, where))
    if image_size is None:
        width, height = collections.Counter(sizes).most_common(1)[0][0]
        image_size = (height, width)
    if color_mode is None:
        # as stored: GIF (palette) and WebP images count as colour even when they look grey
        color_mode = "grayscale" if all(Image.getmodebase(m) == "L" for m in modes) else "rgb"
    x = _decode(files, keys, where, image_size, color_mode, progress)
    y = np.array([label for _, label in samples[0] + samples[1]], np.min_scalar_type(len(class_names) - 1))
    n = len(samples[0])
    return (x[:n], y[:n], x[n:], y[n:]), class_names


def check_options(image_size, color_mode):
    """image_size as a (height, width) tuple, after checking both options."""
    if color_mode not in (None, "grayscale", "rgb"):
        raise ImgclsError(f"color mode must be 'grayscale' or 'rgb', not {color_mode!r}")
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ImgclsError(f"image size must be (height, width) in pixels, not {image_size!r}")
    return tuple(int(s) for s in size)


def _group(files, where):
    """{"train": {class: [keys]}, "test": {...}} or, for class folders only, {"all": {...}}.

    Wrapper folders that hold everything (an archive's cifar10-jpg/) are looked through; files
    lying beside the class folders (a README) are ignored.
    """
    parts = {key: PurePosixPath(key).parts for key in files}
    depth = 0
    while True:
        inside = {key: p for key, p in parts.items() if len(p) > depth + 1}
        tops = {p[depth] for p in inside.values()}
        if len(tops) != 1 or tops & {"train", "test"} or not any(len(p) > depth + 2 for p in inside.values()):
            break
        parts, depth = inside, depth + 1
    if len(tops & {"train", "test"}) == 1:
        present, missing = ("train", "test") if "train" in tops else ("test", "train")
        raise ImgclsError(f"{where} has {present}/ but no {missing}/ folder of classes; add {missing}/<class>/ "
                          f"images, or put the class folders directly in it to have a test split made")
    layout = {"train": 1, "test": 1} if "train" in tops else {"all": 0}
    groups = {name: collections.defaultdict(list) for name in layout}
    for key, p in sorted(inside.items()):
        p = p[depth:]
        if "all" in layout:
            groups["all"][p[0]].append(key)
        elif p[0] in layout and len(p) > 2:
            groups[p[0]][p[1]].append(key)
    return groups


def _split(classes, test_fraction, seed):
    """Hold out `test_fraction` of the images, stratified by class and reproducible by `seed`."""
    if not 0 < test_fraction < 1:
        raise ImgclsError(f"test fraction must be between 0 and 1, not {test_fraction}")
    from sklearn.model_selection import train_test_split  # here: importing scikit-learn costs every command a second

    keys = [key for name in sorted(classes) for key in classes[name]]
    labels = [name for name in sorted(classes) for _ in classes[name]]
    try:
        train, test = train_test_split(keys, test_size=test_fraction, stratify=labels, random_state=seed)
    except ValueError as e:  # a class too small to be split, or a split that leaves a side empty
        counts = ", ".join(f"{name}: {len(classes[name])}" for name in sorted(classes))
        raise ImgclsError(f"cannot hold out {test_fraction:.0%} of each class for testing ({counts}): {e}; "
                          f"add images or give train/ and test/ folders") from None
    chosen = {"train": set(train), "test": set(test)}
    return {split: {name: [k for k in classes[name] if k in chosen[split]] for name in sorted(classes)}
            for split in ("train", "test")}


def _probe(files, keys, where):
    """(size, mode) of each image from its header alone: quick, and finds a non-image before the long decode."""
    found = []
    for key in keys:
        try:
            with Image.open(as_file(files[key])) as image:
                found.append((image.size, image.mode))
        except (OSError, Image.DecompressionBombError):
            raise ImgclsError(f"{where}/{key} is not an image Pillow can read; remove it from the dataset "
                              f"folder") from None
    return found


def _decode(files, keys, where, image_size, color_mode, progress):
    """All images as one (N, height, width, channels) uint8 array, read and converted by the same
    code as imgcls.predict (imgcls.images), so training and prediction see the same pixels."""
    shape = (*image_size, 1 if color_mode == "grayscale" else 3)
    x = np.empty((len(keys), *shape), np.uint8)
    with Progress(f"decoding {len(keys)} images from {where}", len(keys), progress) as bar:
        for i, key in enumerate(keys):
            try:
                x[i] = to_model_input(open_image(as_file(files[key]), f"{where}/{key}"), shape)
            except ImgclsError as e:
                raise ImgclsError(f"{e}; remove it from the dataset folder") from None
            bar.update()
    return x
