"""Parsers for the datasets' original file formats: IDX (MNIST, Fashion-MNIST), CIFAR-10 python
batches and Keras's mnist.npz. Each problem is an ImgclsError naming the file."""

import gzip
import io
import math
import pickle
import struct
import zlib

import numpy as np

from imgcls.errors import ImgclsError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def open_content(folder, name):
    """Open NAME's content in `folder`: the file NAME, or NAME.gz decompressed on the fly.

    Sources ship the same content either way (npm plain, Debian and the Keras mirror gzipped),
    so checksums and parsers refer to the uncompressed content.
    """
    if (folder / name).is_file():
        return open(folder / name, "rb")
    if (folder / f"{name}.gz").is_file():
        return gzip.open(folder / f"{name}.gz")
    raise ImgclsError(f"{folder} has no {name} (nor {name}.gz)")


def read_content(folder, name) -> bytes:
    try:
        with open_content(folder, name) as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ImgclsError(f"{folder / name}.gz is damaged or truncated ({e})") from None


def parse_idx(data: bytes, name) -> np.ndarray:
    """Decode an IDX file: 0, 0, a type code, the number of dimensions, the dimensions as
    big-endian uint32, then the values."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        raise ImgclsError(f"{name} is not an IDX file (bad magic number {data[:4].hex()})")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise ImgclsError(f"{name} is truncated: its header is incomplete")
    dims = struct.unpack(f">{data[3]}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected, found = math.prod(dims) * dtype.itemsize, len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "longer than its header says"
        raise ImgclsError(f"{name} is {state}: {found} bytes of data for shape {dims}, expected {expected}")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_set(folder):
    """(x_train, y_train, x_test, y_test) from the four MNIST-style IDX files in `folder`."""
    return tuple(parse_idx(read_content(folder, name), folder / name) for name in IDX_FILES)


def read_keras_npz(path):
    """The arrays of Keras's own mnist.npz."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ImgclsError(f"{path} is not a valid mnist.npz ({e})") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only containers and numpy arrays: a pickle from any --data-dir could otherwise run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
        (module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a data file never needs")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def unpickle(data: bytes, name):
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a damaged pickle can raise nearly anything
        raise ImgclsError(f"{name} is not a CIFAR-10 python batch ({e})") from None


def parse_cifar_batch(data: bytes, name):
    """(x, y) from one CIFAR-10 python batch: a pickled dict with b"data" (N, 3072) in
    channel-first order and b"labels"; returned as Keras does, (N, 32, 32, 3) and (N, 1) uint8."""
    batch = unpickle(data, name)
    try:
        x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.asarray(batch[b"labels"], np.uint8).reshape(-1, 1)
    except (KeyError, TypeError, ValueError) as e:
        raise ImgclsError(f"{name} is not a CIFAR-10 python batch ({e!r})") from None
    if len(x) != len(y):
        raise ImgclsError(f"{name} has {len(x)} images but {len(y)} labels")
    return x, y


def read_cifar_batches(batches, where, class_names):
    """(x_train, y_train, x_test, y_test) from {"data_batch_1": bytes, ..., "test_batch": bytes,
    optionally "batches.meta": bytes}; the meta file's class names must match `class_names`."""
    if "batches.meta" in batches:
        meta = unpickle(batches["batches.meta"], f"{where}/batches.meta")
        raw = meta.get(b"label_names", []) if isinstance(meta, dict) else []
        names = [n.decode() if isinstance(n, bytes) else n for n in raw]
        if names != list(class_names):
            raise ImgclsError(f"{where}/batches.meta names classes {names}, expected {list(class_names)}")
    parsed = {name: parse_cifar_batch(batches[name], f"{where}/{name}") for name in CIFAR_BATCHES}
    train = [parsed[name] for name in CIFAR_BATCHES[:-1]]
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            np.ascontiguousarray(parsed["test_batch"][0]), parsed["test_batch"][1])
