"""Image arrays read on demand, for folder datasets whose decoded images would not fit in memory.

They look enough like a uint8 array of shape (N, height, width, channels) for the rest of imgcls:
len, shape, dtype; x[i] and x[[i, j, ...]] read those images into a real array; x[a:b] is a lazy
view, as numpy's slices are views (so holding out a validation split reads nothing); np.asarray(x)
reads them all. imgcls.batches feeds them to Keras a batch at a time.

- DecodedFile ("disk" cache mode): a .npy file of decoded pixels in the cache, written once. Rows
  are read with os.preadv rather than through np.memmap: the pages of a memory map count as the
  process's resident memory once touched, so an epoch over a memmap would grow it to the file's size.
- ImageFiles ("stream"): each image decoded from its file whenever it is read, by the same code as
  the in-memory dataset (`decode_image`), so every mode gives the same pixels.
"""

import copy
import os

import numpy as np

from imgcls.data.files import as_file
from imgcls.errors import ImgclsError
from imgcls.images import open_image, to_model_input

# Threads that decode images side by side: Pillow decodes and resizes outside the GIL.
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LazyImages:
    """Rows `self.rows` of an image array that lives elsewhere; subclasses say how to read rows."""

    dtype = np.dtype(np.uint8)

    def __init__(self, count, image_shape):
        self.rows = range(count)  # a view's rows of the whole array: a range, so views cost nothing
        self.image_shape = tuple(image_shape)

    def read(self, rows) -> np.ndarray:
        """Rows of the whole array (absolute numbers) as one uint8 array."""
        raise NotImplementedError

    @property
    def shape(self):
        return (len(self.rows), *self.image_shape)

    @property
    def ndim(self):
        return 1 + len(self.image_shape)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            view = copy.copy(self)
            view.rows = self.rows[index]
            return view
        if isinstance(index, (int, np.integer)):
            return self.read(np.array([self.rows[index]]))[0]
        index = np.asarray(index)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise TypeError(f"{type(self).__name__} takes an image number, a slice or a list of image numbers; "
                            f"read the images first (np.asarray) to index pixels")
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"image numbers must be below {len(self)}")
        index = np.where(index < 0, index + len(self), index)
        return self.read(self.rows.start + index * self.rows.step)

    def __array__(self, dtype=None, copy=None):
        pixels = self[np.arange(len(self))]
        return pixels if dtype is None else pixels.astype(dtype)

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape})"


class DecodedFile(LazyImages):
    """The images of a uint8 .npy file, read from disk a few rows at a time."""

    def __init__(self, path):
        self.path = str(path)
        self.file = open(path, "rb")  # shared by views; closed when the last of them is gone
        version = np.lib.format.read_magic(self.file)
        if version not in ((1, 0), (2, 0)):
            raise ImgclsError(f"{path} is a .npy file of version {version}; delete it to have it decoded again")
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(self.file)
        if dtype != np.uint8 or fortran_order or len(shape) < 2:
            raise ImgclsError(f"{path} is not an array of uint8 images")
        self.offset = self.file.tell()
        self.row_bytes = int(np.prod(shape[1:]))
        if os.fstat(self.file.fileno()).st_size != self.offset + shape[0] * self.row_bytes:
            raise ImgclsError(f"{path} is not as long as its header says")
        super().__init__(shape[0], shape[1:])

    def read(self, rows):
        rows = np.asarray(rows)
        out = np.empty((len(rows), *self.image_shape), np.uint8)
        if len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
            self._read_into(out, rows[0])  # a run of rows (evaluation, a validation batch): one read
        else:
            for i, row in enumerate(rows):
                self._read_into(out[i], row)
        return out

    def _read_into(self, out, row):
        buffer, offset = memoryview(out).cast("B"), self.offset + int(row) * self.row_bytes
        while len(buffer):  # one call reads at most about 2 GB
            done = os.preadv(self.file.fileno(), [buffer], offset)
            if done == 0:
                raise ImgclsError(f"{self.path} has been cut short since it was written; delete it to have it "
                                  f"decoded again")
            buffer, offset = buffer[done:], offset + done


class ImageFiles(LazyImages):
    """Images decoded from their files (list_files() entries) whenever they are read."""

    def __init__(self, files, keys, where, image_shape):
        self.files, self.keys, self.where = files, list(keys), where
        super().__init__(len(self.keys), image_shape)

    def read(self, rows):
        out = np.empty((len(rows), *self.image_shape), np.uint8)
        for i, row in enumerate(rows):
            key = self.keys[row]
            out[i] = decode_image(self.files[key], f"{self.where}/{key}", self.image_shape)
        return out


def decode_image(entry, name, image_shape):
    """One dataset image as the model's uint8 input, read and converted by the same code as
    imgcls.predict (imgcls.images), so training and prediction see the same pixels."""
    try:
        return to_model_input(open_image(as_file(entry), name), image_shape)
    except ImgclsError as e:
        raise ImgclsError(f"{e}; remove it from the dataset folder") from None
