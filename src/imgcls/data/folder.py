"""Image-folder datasets: PATH/train/<class>/* and PATH/test/<class>/*, or PATH/<class>/* with a
stratified test split made here. PATH may also be a .tar(.gz) or .zip archive of such folders."""

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from imgcls.data import cache
from imgcls.data.console import Progress, say
from imgcls.data.files import as_file, fingerprint, list_files
from imgcls.data.lazy import THREADS, DecodedFile, ImageFiles
from imgcls.errors import ImgclsError, InvalidValue, unknown
from imgcls.runs import atomic_path, write_json

LAYOUT = "PATH/<class>/<image>, or PATH/train/<class>/<image> and PATH/test/<class>/<image>"
CACHE_MODES = ("auto", "memory", "disk", "stream")
CHUNK = 256  # images a decoding thread takes at a time
# A picture's longer side when the size is left to the data: phone photos (4000x3000) would fill the
# memory, and a network trained from scratch on a CPU learns little more from them than at this size.
LONGEST_SIDE = 128


@dataclasses.dataclass
class Plan:
    """What a folder dataset is, short of its pixels: worked out from the file listing and the
    images' headers, and cached, so that streaming a big folder starts at once the next time."""
    class_names: list
    keys: list  # the training images', then the test images'
    labels: list
    train_size: int
    image_shape: tuple  # (height, width, channels)

    @property
    def decoded_bytes(self):
        return len(self.keys) * int(np.prod(self.image_shape))

    def split(self, x):
        """((x_train, y_train, x_test, y_test), class_names) for all the images `x`, in plan order."""
        y = np.array(self.labels, np.min_scalar_type(len(self.class_names) - 1))
        n = self.train_size
        return (x[:n], y[:n], x[n:], y[n:]), self.class_names


def load_folder(path, *, image_size=None, color_mode=None, test_fraction=0.2, seed=0, progress=True,
                cache_mode="auto", memory_budget=None):
    """((x_train, y_train, x_test, y_test), class_names) of an image folder.

    `cache_mode` says where the decoded images are kept: "memory" (arrays), "disk" (decoded once
    into a file in the cache, read a batch at a time), "stream" (decoded from the image files a
    batch at a time), or "auto": memory when they fit `memory_budget` MB (default: see
    default_memory_budget), else disk when the cache's drive has twice their size free, else
    stream. Disk and stream give lazy arrays (imgcls.data.lazy) holding the same pixels.

    Decoding tens of thousands of images takes far longer than reading arrays back, so the plan
    and the decoded arrays are cached, the plan keyed by the folder, its file listing (names, sizes,
    times) and the options, the arrays by the plan; a change to the folder's files makes them stale,
    and they are removed.
    """
    if not str(path).strip():
        raise ImgclsError(f"folder: needs a path, e.g. folder:./my_images ({LAYOUT})")
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise ImgclsError(f"folder dataset {path} does not exist; expected {LAYOUT}")
    image_size = check_options(image_size, color_mode, cache_mode, memory_budget)
    say(f"listing {root}...", progress)
    files = list_files(root)
    folder_key = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    listing = fingerprint(root, files)
    options = [str(root), listing, image_size, color_mode, test_fraction, seed, LONGEST_SIDE]
    folders = cache.cache_dir() / "folders"
    prefix = f"{root.name}-{folder_key}-{listing[:8]}-"  # what this version of the folder's caches are named
    stem = f"{prefix}{_digest(options)}"
    for stale in folders.glob(f"{root.name}-{folder_key}-*"):  # caches of earlier versions of the folder
        if not stale.name.startswith(prefix):
            cache.remove(stale)
    plan = _read_plan(folders / f"{stem}.json")
    if plan is None:
        plan = plan_folder(files, root, image_size=image_size, color_mode=color_mode,
                           test_fraction=test_fraction, seed=seed, progress=progress)
        write_json(folders / f"{stem}.json", dataclasses.asdict(plan))
    # the pixels are named by what they are, not by the options asked: training reads a folder at its
    # own size, evaluate and export ask for that size by name, and both get the one decoded copy
    pixels = f"{prefix}{_digest(dataclasses.asdict(plan))}"
    decoded = folders / f"{pixels}.npy"
    mode = cache_mode if cache_mode != "auto" else _auto_mode(plan, root, decoded, memory_budget, progress)
    images = ImageFiles(files, plan.keys, root, plan.image_shape)
    if mode == "stream":
        return plan.split(images)
    if mode == "disk":
        return plan.split(_decoded_file(decoded, images, progress))
    cached = cache.load(folders / f"{pixels}.npz")
    if cached:
        return cached[:2]
    arrays, class_names = plan.split(decode_all(images, progress))
    cache.save(folders / f"{pixels}.npz", arrays, class_names, str(root))
    return arrays, class_names


def _digest(values):
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def default_memory_budget():
    """A quarter of this machine's memory, or of its container's limit, in MB: training needs room
    beside the images for the framework, the model, and the copy Keras makes of arrays it is given."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):  # cgroup v2, then v1; "max" or absent: no limit
        memory = min(memory, int(Path("/sys/fs/cgroup/memory.max").read_text()))
    with contextlib.suppress(OSError, ValueError):
        memory = min(memory, int(Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").read_text()))
    return memory / 4 / 1e6


def _auto_mode(plan, root, decoded, memory_budget, progress):
    """memory when the decoded images fit the budget, else disk when they are already in the cache
    (`decoded`) or it has room for them, else stream."""
    budget = memory_budget or default_memory_budget()
    size = plan.decoded_bytes
    if size <= budget * 1e6:
        return "memory"
    if decoded.exists():
        mode, how = "disk", "reading their decoded copy in the cache a batch at a time (cache mode disk)"
    elif 2 * size <= shutil.disk_usage(decoded.parent).free:
        mode, how = "disk", "decoding them once into the cache, then reading them a batch at a time (cache mode disk)"
    else:
        mode, how = "stream", "decoding them a batch at a time (cache mode stream): the cache's drive lacks room for them"
    say(f"{root}: {len(plan.keys)} images are {_megabytes(size / 1e6)} MB decoded, over the memory budget of "
        f"{_megabytes(budget)} MB (--memory-budget); {how}", progress)
    return mode


def _megabytes(mb):
    return f"{mb:,.0f}" if mb >= 10 else f"{mb:.2g}"


def plan_folder(files, where, *, image_size=None, color_mode=None, test_fraction=0.2, seed=0, progress=True,
                max_per_class=None):
    """The Plan of list_files() output: classes, split, labels, and the image size and colours.

    test_fraction=None insists on the train/test layout; max_per_class keeps only the first few
    images of each class folder (a quick look at a big dataset).
    """
    groups, found = _readable(_group(files, where), files, where, progress, max_per_class)
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
                for key in groups[split].get(name, [])] for split in ("train", "test")]
    if not samples[1]:
        raise ImgclsError(f"{where} leaves no test images; add images to each class or a test/ folder")
    # training images in a random (seeded) order, not class by class: a validation split held out
    # from the end, as Keras's is, then holds every class, not the last class alone
    samples[0] = [samples[0][i] for i in np.random.default_rng(seed).permutation(len(samples[0]))]
    keys = [key for key, _ in samples[0] + samples[1]]
    sizes, modes = zip(*(found[key] for key in keys))
    if image_size is None:
        width, height = collections.Counter(sizes).most_common(1)[0][0]
        scale = min(1, LONGEST_SIDE / max(width, height))
        image_size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if scale < 1:
            say(f"{where}: pictures are mostly {width}x{height}; read at {image_size[1]}x{image_size[0]} "
                f"(--input-size to choose)")
    if color_mode is None:
        # as stored: GIF (palette) and WebP images count as colour even when they look grey
        color_mode = "grayscale" if all(Image.getmodebase(m) == "L" for m in modes) else "rgb"
    return Plan(class_names, keys, [label for _, label in samples[0] + samples[1]], len(samples[0]),
                (*image_size, 1 if color_mode == "grayscale" else 3))


def read_image_folders(files, where, *, progress=True, **options):
    """((x_train, y_train, x_test, y_test), class_names) from list_files() output, decoded into
    memory; `options` as for plan_folder."""
    plan = plan_folder(files, where, progress=progress, **options)
    return plan.split(decode_all(ImageFiles(files, plan.keys, where, plan.image_shape), progress))


def decode_all(images, progress=True, write=None):
    """Every image of `images` (ImageFiles) in one uint8 array, or, given `write`, handed to it
    chunk by chunk, in order, instead. Threads decode chunks side by side (Pillow decodes and
    resizes outside the GIL); at most two chunks a thread are held at once."""
    out = None if write else np.empty(images.shape, np.uint8)
    chunks = [range(start, min(start + CHUNK, len(images))) for start in range(0, len(images), CHUNK)]
    window = 2 * THREADS
    with ThreadPoolExecutor(THREADS) as pool, \
            Progress(f"decoding {len(images)} images from {images.where}", len(images), progress) as bar:
        for first in range(0, len(chunks), window):
            for rows, pixels in zip(chunks[first:first + window], pool.map(images.read, chunks[first:first + window])):
                if write:
                    write(pixels)
                else:
                    out[rows.start:rows.stop] = pixels
                bar.update(len(rows))
    return out


def _decoded_file(path, images, progress):
    """The DecodedFile at `path`, decoding `images` into it first unless an intact one is there.
    Unlike the .npz files it is not checksummed when read: hashing a file larger than memory would
    add minutes to every start; a file cut short or of the wrong shape is noticed."""
    if path.exists():
        with contextlib.suppress(OSError, ValueError, ImgclsError):
            decoded = DecodedFile(path)
            if decoded.shape == images.shape:
                return decoded
        say(f"cache file {path} is damaged or not what was written; decoding the images again")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": images.shape})
        decode_all(images, progress, write=lambda pixels: f.write(pixels.data))
    return DecodedFile(path)


def _read_plan(path):
    """The cached Plan at `path`, or None when there is none (or it cannot be read: it is made again)."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        plan = Plan(**json.loads(path.read_text()))
        plan.image_shape = tuple(plan.image_shape)
        return plan
    return None


def check_options(image_size, color_mode, cache_mode="auto", memory_budget=None):
    """image_size as a (height, width) tuple, after checking all the options."""
    if color_mode not in (None, "grayscale", "rgb"):
        raise ImgclsError(f"color mode must be 'grayscale' or 'rgb', not {color_mode!r}")
    if cache_mode not in CACHE_MODES:
        raise unknown("cache mode", cache_mode, CACHE_MODES)
    if memory_budget is not None and not 0 < memory_budget < float("inf"):
        raise InvalidValue("memory_budget", f"must be a positive number of MB, got {memory_budget!r}")
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


def _readable(groups, files, where, progress, max_per_class=None):
    """(`groups` without the files Pillow cannot read, named in one line, nor classes left with none,
    {key: (size, mode)} of the rest). A notes.txt or a damaged JPEG among thousands of pictures is
    skipped, not an error per run. Reads headers alone: quick, and done before the long decode."""
    groups = {split: {name: names[:max_per_class] for name, names in classes.items()}
              for split, classes in groups.items()}
    keys = [key for classes in groups.values() for names in classes.values() for key in names]
    found, unreadable = {}, []
    with Progress(f"reading the headers of {len(keys)} images", len(keys), progress and len(keys) > CHUNK) as bar:
        for key in keys:
            try:
                with Image.open(as_file(files[key])) as image:
                    found[key] = image.size, image.mode
            except (OSError, Image.DecompressionBombError):
                unreadable.append(key)
            bar.update()
    if unreadable:
        say(f"{where}: skipped {len(unreadable)} files that are not images Pillow can read "
            f"({', '.join(sorted(unreadable)[:5])}{', ...' if len(unreadable) > 5 else ''})")
    kept = {split: {name: [key for key in names if key in found] for name, names in classes.items()}
            for split, classes in groups.items()}
    return {split: {name: keys for name, keys in classes.items() if keys} for split, classes in kept.items()}, found
