import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.data import Dataset, cache_dir, fetch_dataset, list_datasets, load_dataset
from imgcls.data import builtin, cache
from imgcls.data.builtin import DatasetSpec, idx_data_dir, keras_shapes, read_cifar
from imgcls.data.formats import IDX_FILES, parse_idx, read_idx_set
from imgcls.data.sources import Source, from_deb, from_path, from_urls
from imgcls.errors import ImgclsError

SHARED_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cifar10-jpg.tar.gz"


# ---- IDX files ----

def idx_bytes(array):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_parse_idx_reads_uint8_images_and_big_endian_ints():
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    assert np.array_equal(parse_idx(idx_bytes(images), "images"), images)
    parsed = parse_idx(idx_bytes(ints), "ints")
    assert np.array_equal(parsed, ints) and parsed.dtype == np.int32


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1], "x.idx is truncated"),
    (lambda b: b[:6], "x.idx is truncated"),
    (lambda b: b + b"\0", "x.idx is longer than its header says"),
    (lambda b: b"\x1f\x8b" + b[2:], "x.idx is not an IDX file"),
    (lambda b: b[:2] + b"\x42" + b[3:], "x.idx is not an IDX file"),
    (lambda b: b"", "x.idx is not an IDX file"),
])
def test_parse_idx_rejects_damaged_files(damage, message):
    data = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ImgclsError, match=message):
        parse_idx(damage(data), "x.idx")


TINY = (np.arange(6 * 16, dtype=np.uint8).reshape(6, 4, 4), np.array([0, 1, 2, 0, 1, 2], np.uint8),
        np.arange(3 * 16, dtype=np.uint8).reshape(3, 4, 4) + 100, np.array([2, 1, 0], np.uint8))


def write_idx_set(folder, arrays, gz=True):
    """Write the four IDX files; return their checksums ("sha256:..." of the uncompressed content)."""
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, array in zip(IDX_FILES, arrays):
        data = idx_bytes(array)
        checksums[name] = "sha256:" + hashlib.sha256(data).hexdigest()
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return checksums


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_set_reads_plain_and_gzipped_files(tmp_path, gz):
    write_idx_set(tmp_path, TINY, gz=gz)
    for read, expected in zip(read_idx_set(tmp_path), TINY):
        assert np.array_equal(read, expected)


def test_read_idx_set_names_a_truncated_gzip_file(tmp_path):
    write_idx_set(tmp_path, TINY)
    damaged = tmp_path / "t10k-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ImgclsError, match="t10k-images-idx3-ubyte.gz is damaged or truncated"):
        read_idx_set(tmp_path)


# ---- CIFAR-10 python batches ----

def cifar_batch(x, labels):
    """A batch pickled as the original files were: channel-first rows, by numpy.core's _reconstruct."""
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
    data = pickle.dumps({b"batch_label": b"batch", b"labels": list(labels), b"data": rows}, protocol=2)
    return data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar_batches(folder, rng):
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(12) % 10
    for i in range(5):
        (folder / f"data_batch_{i + 1}").write_bytes(cifar_batch(images[2 * i:2 * i + 2], labels[2 * i:2 * i + 2]))
    (folder / "test_batch").write_bytes(cifar_batch(images[10:], labels[10:]))
    meta = {b"label_names": [n.encode() for n in builtin.CIFAR_CLASSES], b"num_cases_per_batch": 2}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return images, labels


def test_read_cifar_batches_gives_keras_layout(tmp_path):
    images, labels = write_cifar_batches(tmp_path / "cifar", np.random.default_rng(0))
    x_train, y_train, x_test, y_test = read_cifar(tmp_path / "cifar")
    assert x_train.shape == (10, 32, 32, 3) and y_train.shape == (10, 1) and x_test.shape == (2, 32, 32, 3)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert np.array_equal(np.concatenate([x_train, x_test]), images)
    assert np.array_equal(np.concatenate([y_train, y_test])[:, 0], labels)


def test_read_cifar_batches_from_the_official_archive_layout(tmp_path):
    images, _ = write_cifar_batches(tmp_path / "cifar-10-batches-py", np.random.default_rng(1))
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", "cifar-10-batches-py")
    x_train, _, x_test, _ = read_cifar(tmp_path / "cifar-10-python.tar.gz")
    assert np.array_equal(np.concatenate([x_train, x_test]), images)


def test_read_cifar_refuses_pickles_that_would_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    write_cifar_batches(tmp_path / "cifar", np.random.default_rng(2))
    (tmp_path / "cifar" / "data_batch_3").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(ImgclsError, match="data_batch_3 is not a CIFAR-10 python batch.*system"):
        read_cifar(tmp_path / "cifar")
    assert not (tmp_path / "pwned").exists()


def test_read_cifar_checks_the_class_names_in_batches_meta(tmp_path):
    write_cifar_batches(tmp_path / "cifar", np.random.default_rng(3))
    (tmp_path / "cifar" / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog"]}))
    with pytest.raises(ImgclsError, match="batches.meta names classes"):
        read_cifar(tmp_path / "cifar")


def test_read_cifar_from_class_folders_resizes_to_32x32(tmp_path):
    for split in ("train", "test"):
        for i, name in enumerate(builtin.CIFAR_CLASSES):
            save_image(tmp_path / "jpg" / split / name / "0001.png", (40, 40), "RGB", (i * 20, 0, 0))
    x_train, y_train, x_test, y_test = read_cifar(tmp_path / "jpg", progress=False)
    assert x_train.shape == x_test.shape == (10, 32, 32, 3)
    assert y_train.shape == (10, 1) and sorted(y_train[:, 0]) == list(range(10))
    assert x_train[y_train[:, 0] == 3][0, 5, 5].tolist() == [60, 0, 0]


# ---- sources, checksums, fallback and cache ----

@pytest.fixture
def tiny(tmp_path, monkeypatch, home):
    """A made-up dataset "tiny" beside the built-ins; tests give it sources. Returns (spec, good files, checksums)."""
    checksums = write_idx_set(tmp_path / "good", TINY)
    spec = DatasetSpec("tiny test dataset", ["a", "b", "c"], keras_shapes(6, 3, (4, 4)), [],
                       idx_data_dir(checksums), "Try the good mirror.")
    monkeypatch.setitem(builtin.DATASETS, "tiny", spec)
    return spec, tmp_path / "good", checksums


def unreachable(checksums):
    return from_urls(["https://tiny.invalid/train-images-idx3-ubyte.gz"], read_idx_set, checksums)


def wrong_checksum(tmp_path, checksums):
    """Files that parse fine but are not the published ones (one pixel differs)."""
    altered = list(TINY)
    altered[0] = TINY[0].copy()
    altered[0][0, 0, 0] += 1
    write_idx_set(tmp_path / "bad", altered)
    return from_path(tmp_path / "bad", read_idx_set, checksums, "bad mirror")


def good(folder, checksums):
    urls = [(folder / f"{name}.gz").as_uri() for name in IDX_FILES]
    return from_urls(urls, read_idx_set, checksums, "good mirror")


def never_called():
    return Source("forbidden source", lambda scratch, progress: pytest.fail("a source was called"), None)


def assert_tiny(dataset):
    for got, expected in zip((dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test), TINY):
        assert np.array_equal(got, expected) and got.dtype == np.uint8


def test_fallback_skips_unreachable_and_wrong_checksum_sources(tiny, tmp_path, home, capsys):
    spec, folder, checksums = tiny
    spec.sources = [unreachable(checksums), wrong_checksum(tmp_path, checksums), good(folder, checksums)]
    dataset = load_dataset("tiny", progress=False)
    assert_tiny(dataset)
    assert dataset.source == "good mirror" and dataset.class_names == ["a", "b", "c"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "https://tiny.invalid/train-images-idx3-ubyte.gz failed: cannot download" in err[0]
    assert "bad mirror failed" in err[1] and "train-images-idx3-ubyte has the wrong sha256 checksum" in err[1]
    assert sorted(os.listdir(home)) == ["tiny.npz", "tiny.npz.sha256"]  # no scratch folder left behind
    arrays, class_names, source = cache.load(home / "tiny.npz")
    assert np.array_equal(arrays[0], TINY[0]) and source == "good mirror"


def test_progress_lines_name_each_source_tried(tiny, home, capsys):
    spec, folder, checksums = tiny
    spec.sources = [good(folder, checksums)]
    load_dataset("tiny")
    err = capsys.readouterr().err
    assert "fetching tiny from good mirror..." in err and "downloading train-images-idx3-ubyte.gz" in err


def test_all_sources_failing_lists_them_and_caches_nothing(tiny, tmp_path, home):
    spec, _, checksums = tiny
    spec.sources = [unreachable(checksums), wrong_checksum(tmp_path, checksums)]
    with pytest.raises(ImgclsError) as caught:
        load_dataset("tiny", progress=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("could not get tiny; tried ")
    assert "tiny.invalid" in message and "bad mirror (" in message and message.endswith("Try the good mirror.")
    assert os.listdir(home) == []


def test_source_with_wrong_shapes_is_rejected(tiny, tmp_path, home, capsys):
    spec, folder, checksums = tiny
    write_idx_set(tmp_path / "small", [a[:2] for a in TINY])
    spec.sources = [from_path(tmp_path / "small", read_idx_set, description="small mirror"), good(folder, checksums)]
    assert load_dataset("tiny", progress=False).source == "good mirror"
    assert "small mirror: x_train is uint8 (2, 4, 4), expected uint8 (6, 4, 4)" in capsys.readouterr().err


def test_second_load_reads_the_cache_without_any_source(tiny, home):
    spec, folder, checksums = tiny
    spec.sources = [good(folder, checksums)]
    path = fetch_dataset("tiny", progress=False)
    assert path == home / "tiny.npz" == cache_dir() / "tiny.npz"
    spec.sources = [never_called()]
    assert_tiny(load_dataset("tiny", progress=False))
    assert fetch_dataset("TINY", progress=False) == path


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_cache_is_fetched_again(tiny, home, capsys, damage):
    spec, folder, checksums = tiny
    spec.sources = [good(folder, checksums)]
    path = fetch_dataset("tiny", progress=False)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        offset = data.find(TINY[0].tobytes())
        data[offset + 5] ^= 0xFF
    else:
        del data[len(data) // 2:]
    path.write_bytes(bytes(data))
    assert_tiny(load_dataset("tiny", progress=False))
    assert f"cache file {path} is damaged" in capsys.readouterr().err
    assert cache.load(path) is not None


def test_a_cache_rewritten_into_another_valid_file_is_fetched_again(tiny, home, capsys):
    """Shuffled labels in a well-formed .npz pass every CRC; only the checksum kept beside it tells."""
    spec, folder, checksums = tiny
    spec.sources = [good(folder, checksums)]
    path = fetch_dataset("tiny", progress=False)
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["y_train"] = arrays["y_train"][::-1].copy()
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert_tiny(load_dataset("tiny", progress=False))
    assert f"cache file {path} has changed since it was written" in capsys.readouterr().err
    assert cache.load(path) is not None  # fetched again, with a fresh checksum


def test_imgcls_home_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    with pytest.raises(ImgclsError, match="is a file, not a folder; set IMGCLS_HOME to a folder"):
        load_dataset("mnist", progress=False)


def test_data_dir_is_tried_before_the_sources(tiny, home):
    spec, folder, _ = tiny
    spec.sources = [never_called()]
    dataset = load_dataset("tiny", data_dir=folder, progress=False)
    assert_tiny(dataset)
    assert dataset.source == f"--data-dir {folder}"


def test_builtin_datasets_refuse_resizing_options(tiny, home):
    spec, folder, _ = tiny
    load_dataset("tiny", data_dir=folder, image_size=(4, 4), color_mode="grayscale", progress=False)
    with pytest.raises(ImgclsError, match="tiny images are 4x4; image size applies only to folder"):
        load_dataset("tiny", image_size=(8, 8), progress=False)
    with pytest.raises(ImgclsError, match="tiny images are grayscale"):
        load_dataset("tiny", color_mode="rgb", progress=False)


def test_unknown_name_lists_the_datasets_and_suggests_one():
    with pytest.raises(ImgclsError, match=r"unknown dataset 'minst'\. Did you mean 'mnist'\? Valid: mnist, "
                                          r"fashion_mnist, cifar10, folder:PATH"):
        load_dataset("minst")
    with pytest.raises(ImgclsError, match="Valid: ") as caught:
        fetch_dataset("imagenet")
    assert "Did you mean" not in str(caught.value)


def test_list_datasets_describes_every_name():
    datasets = list_datasets()
    assert list(datasets) == ["mnist", "fashion_mnist", "cifar10", "folder:PATH"]
    assert all(description and "\n" not in description for description in datasets.values())


def test_cache_dir_follows_imgcls_home(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("IMGCLS_HOME")
    assert cache_dir() == Path.home() / ".cache" / "imgcls"


def test_dataset_load_data_matches_keras():
    dataset = Dataset("tiny", *TINY, ["a", "b", "c"])
    (x_train, y_train), (x_test, y_test) = dataset.load_data()
    assert x_train is TINY[0] and y_test is TINY[3]


# ---- image folders ----

def save_image(path, size, mode, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


@pytest.fixture
def split_tree(tmp_path):
    """train/ and test/ class folders of grayscale images in four formats and two sizes (width x height 8x6 mostly)."""
    root = tmp_path / "pets"
    save_image(root / "train" / "cat" / "a.png", (8, 6), "L", 10)
    save_image(root / "train" / "cat" / "b.bmp", (8, 6), "L", 20)
    save_image(root / "train" / "dog" / "c.png", (8, 6), "L", 30)
    save_image(root / "train" / "dog" / "d.tiff", (12, 12), "L", 40)
    save_image(root / "test" / "cat" / "e.png", (8, 6), "L", 50)
    save_image(root / "test" / "dog" / "f.jpg", (8, 6), "L", 60)
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (root / "README.txt").write_text("not part of the data")
    return root


def test_folder_with_train_and_test_splits(split_tree, home):
    dataset = load_dataset(f"folder:{split_tree}", progress=False)
    assert dataset.name == f"folder:{split_tree}" and dataset.class_names == ["cat", "dog"]
    assert dataset.x_train.shape == (4, 6, 8, 1) and dataset.x_test.shape == (2, 6, 8, 1)
    assert dataset.x_train.dtype == dataset.y_train.dtype == np.uint8
    order = np.argsort(dataset.x_train[:, 3, 4, 0])  # training images come shuffled
    assert dataset.y_train[order].tolist() == [0, 0, 1, 1] and dataset.y_test.tolist() == [0, 1]
    assert dataset.x_train[order, 3, 4, 0].tolist() == [10, 20, 30, 40]  # the 12x12 one resized, values kept
    assert abs(int(dataset.x_test[1, 3, 4, 0]) - 60) <= 2  # JPEG is lossy


def test_folder_picks_rgb_when_any_image_has_colour_and_obeys_options(split_tree, home):
    save_image(split_tree / "train" / "dog" / "g.gif", (8, 6), "RGB", (200, 0, 0))
    save_image(split_tree / "test" / "dog" / "h.webp", (8, 6), "RGB", (0, 0, 200))
    dataset = load_dataset(f"folder:{split_tree}", progress=False)
    assert dataset.x_train.shape == (5, 6, 8, 3) and dataset.x_test.shape == (3, 6, 8, 3)
    assert sorted(map(tuple, dataset.x_train[:, 1, 1].tolist())) == [(10, 10, 10), (20, 20, 20), (30, 30, 30),
                                                                     (40, 40, 40), (200, 0, 0)]
    dataset = load_dataset(f"folder:{split_tree}", image_size=(3, 5), color_mode="grayscale", progress=False)
    assert dataset.x_train.shape == (5, 3, 5, 1)
    assert dataset.x_train[:, 1, 1, 0].max() == round(200 * 299 / 1000)  # Pillow's L = R * 299/1000 + ...


def test_folder_of_class_folders_gets_a_reproducible_stratified_split(tmp_path, home):
    root = tmp_path / "shapes"
    for c, name in enumerate(["circle", "square", "star"]):
        for i in range(10):
            save_image(root / name / f"{i:02}.png", (4, 4), "L", c * 50 + i)

    def held_out(seed):
        dataset = load_dataset(f"folder:{root}", seed=seed, test_fraction=0.2, progress=False)
        assert dataset.x_train.shape == (24, 4, 4, 1) and dataset.x_test.shape == (6, 4, 4, 1)
        assert np.bincount(dataset.y_test).tolist() == [2, 2, 2]
        assert np.array_equal(dataset.x_test[:, 0, 0, 0] // 50, dataset.y_test)  # labels follow the images
        assert set(dataset.x_train[:, 0, 0, 0]).isdisjoint(dataset.x_test[:, 0, 0, 0])
        return dataset.x_test[:, 0, 0, 0].tolist()

    assert held_out(0) == held_out(0)
    assert held_out(0) != held_out(1)


@pytest.mark.parametrize("mode", ["rgb", "grayscale"])
def test_training_and_prediction_read_a_file_to_the_same_pixels(tmp_path, home, mode):
    """A 16-bit ramp, a transparent drawing and an EXIF-rotated photo: folder loading (training) and
    imgcls.images (predict, serve) must give the same array for each."""
    from imgcls.images import open_image, to_model_input

    root = tmp_path / "odd"
    ramp = np.tile(np.linspace(0, 65535, 16, dtype=np.uint16), (12, 1))
    (root / "a").mkdir(parents=True)
    Image.fromarray(ramp).save(root / "a" / "ramp16.png")
    stroke = np.zeros((12, 16, 4), np.uint8)
    stroke[4:8, 2:14] = (0, 0, 0, 255)  # a black stroke on a transparent canvas
    Image.fromarray(stroke, "RGBA").save(root / "a" / "drawing.png")
    photo = Image.fromarray(np.arange(16 * 12 * 3, dtype=np.uint8).reshape(16, 12, 3) % 251)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it upright, to 16 wide by 12 high
    (root / "b").mkdir()
    photo.save(root / "b" / "photo.jpg", exif=exif, quality=95)
    save_image(root / "b" / "grey.png", (16, 12), "L", 90)

    data = load_dataset(f"folder:{root}", color_mode=mode, image_size=(12, 16), test_fraction=0.5, progress=False)
    shape = data.x_train.shape[1:]
    expected = {path.name: to_model_input(open_image(path), shape) for path in root.rglob("*.*")}
    for x in np.concatenate([data.x_train, data.x_test]):
        assert any(np.array_equal(x, e) for e in expected.values())
    assert expected["ramp16.png"].mean() == pytest.approx(127.5, abs=2)  # scaled, not clipped to white
    assert expected["drawing.png"].min() == 0 and expected["drawing.png"].max() == 255  # alpha composited


def test_broken_links_in_a_folder_are_skipped_and_named(split_tree, home, capsys):
    (split_tree / "train" / "cat" / "gone.png").symlink_to(split_tree / "nowhere.png")
    (split_tree / "train" / "dog" / "loop.png").symlink_to(split_tree / "train" / "dog" / "loop.png")
    data = load_dataset(f"folder:{split_tree}")
    assert data.x_train.shape[0] == 4  # the four real training images
    assert "skipped 2 broken links" in capsys.readouterr().err


def test_folder_archive_reads_like_the_folder(split_tree, tmp_path, home):
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as archive:
        for path in split_tree.rglob("*"):
            archive.write(path, Path("pets") / path.relative_to(split_tree))
    from_folder = load_dataset(f"folder:{split_tree}", progress=False)
    from_zip = load_dataset(f"folder:{tmp_path / 'pets.zip'}", progress=False)
    assert np.array_equal(from_folder.x_train, from_zip.x_train) and from_zip.class_names == ["cat", "dog"]


def test_folder_cache_is_used_until_the_folder_changes(split_tree, home, capsys):
    first = load_dataset(f"folder:{split_tree}")
    assert "decoding" in capsys.readouterr().err
    assert np.array_equal(load_dataset(f"folder:{split_tree}").x_train, first.x_train)
    assert "decoding" not in capsys.readouterr().err  # read back from the cache

    save_image(split_tree / "train" / "dog" / "h.png", (8, 6), "L", 70)
    assert load_dataset(f"folder:{split_tree}").x_train.shape == (5, 6, 8, 1)
    assert "decoding" in capsys.readouterr().err
    assert len(list((home / "folders").glob("*.npz"))) == 1  # the stale cache file is gone
    assert len(list((home / "folders").glob("*.sha256"))) == 1  # and its checksum


def test_folder_skips_files_that_are_not_images_and_names_them_all_at_once(split_tree, home, capsys):
    """A notes.txt or a damaged JPEG among thousands of pictures (Keras's tutorial has its reader
    delete 1,590 badly encoded files from cats and dogs first) is named and skipped, not one error
    per run until the last is deleted by hand."""
    (split_tree / "train" / "cat" / "notes.txt").write_text("hello")
    (split_tree / "train" / "dog" / "cut.jpg").write_bytes((split_tree / "test" / "dog" / "f.jpg").read_bytes()[:20])
    (split_tree / "test" / "dog" / "labels.csv").write_text("f.jpg,dog")
    dataset = load_dataset(f"folder:{split_tree}", progress=False)
    assert dataset.x_train.shape == (4, 6, 8, 1) and dataset.x_test.shape == (2, 6, 8, 1)
    assert dataset.y_train.tolist().count(1) == 2 and dataset.y_test.tolist() == [0, 1]
    err = capsys.readouterr().err
    assert ("pets: skipped 3 files that are not images Pillow can read (test/dog/labels.csv, "
            "train/cat/notes.txt, train/dog/cut.jpg)") in err


def test_folder_decoded_once_for_training_and_for_the_model_that_names_its_size(split_tree, home, capsys):
    """Training reads a folder at its pictures' own size; evaluate and export then ask for that size
    by name: the same pixels, so not decoded (minutes, for a large folder) and cached again."""
    trained = load_dataset(f"folder:{split_tree}")
    assert "decoding" in capsys.readouterr().err
    named = load_dataset(f"folder:{split_tree}", image_size=(6, 8), color_mode="grayscale")
    assert "decoding" not in capsys.readouterr().err and np.array_equal(named.x_test, trained.x_test)
    assert len(list((home / "folders").glob("*.npz"))) == 1
    assert load_dataset(f"folder:{split_tree}", image_size=(12, 12)).x_train.shape == (4, 12, 12, 1)
    assert "decoding" in capsys.readouterr().err  # another size is other pixels


def test_folder_of_large_photos_is_read_small_enough_to_train_unless_told(tmp_path, home, capsys):
    """Phone photos (4000x3000) at their own size would not fit in memory, and the first training
    step failed with TensorFlow's OOM; left to the data, the longer side is read at 128 pixels."""
    for name, shade in (("light", 200), ("dark", 40)):
        for i in range(3):
            save_image(tmp_path / "photos" / name / f"{i}.jpg", (400, 300), "RGB", (shade, shade, shade))
    data = load_dataset(f"folder:{tmp_path / 'photos'}", progress=False)
    assert data.x_train.shape[1:] == (96, 128, 3)  # the aspect kept
    assert "photos: pictures are mostly 400x300; read at 128x96 (--input-size to choose)" in capsys.readouterr().err
    told = load_dataset(f"folder:{tmp_path / 'photos'}", image_size=300, progress=False)
    assert told.x_train.shape[1:] == (300, 300, 3)


@pytest.mark.parametrize("setup, message", [
    (lambda root: [(root / "train" / "dog" / name).write_text("x") for name in ("c.png", "d.tiff")],
     r"pets has 1 class folder\(s\) with images"),  # dog's training pictures are all unreadable
    (lambda root: shutil.rmtree(root / "test"), r"pets has train/ but no test/ folder"),
    (lambda root: shutil.rmtree(root / "train"), r"pets has test/ but no train/ folder"),
    (lambda root: shutil.rmtree(root / "train" / "dog"), r"pets has 1 class folder\(s\) with images; a classifier "
                                                         r"needs at least 2"),
    (lambda root: (root / "train" / "cat" / "a.png").unlink() or (root / "train" / "cat" / "b.bmp").unlink(),
     r"pets has 1 class folder\(s\)"),
    (lambda root: save_image(root / "test" / "bird" / "x.png", (8, 6), "L", 0),
     r"pets: test/ has classes that train/ lacks: bird"),
])
def test_folder_problems_are_clear_errors(split_tree, home, setup, message):
    setup(split_tree)
    with pytest.raises(ImgclsError, match=message):
        load_dataset(f"folder:{split_tree}", progress=False)


def test_folder_errors_for_bad_paths_and_options(tmp_path, home):
    with pytest.raises(ImgclsError, match=r"folder dataset .*nowhere does not exist; expected PATH/<class>"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgclsError, match="empty has 0 class folder"):
        load_dataset(f"folder:{tmp_path / 'empty'}", progress=False)
    with pytest.raises(ImgclsError, match="color mode must be 'grayscale' or 'rgb'"):
        load_dataset(f"folder:{tmp_path / 'empty'}", color_mode="RGBA")
    with pytest.raises(ImgclsError, match="folder: needs a path"):
        load_dataset("folder:")


# ---- the real datasets ----

def test_real_mnist_matches_the_published_label_counts(mnist):
    assert mnist.name == "mnist" and mnist.class_names == [str(i) for i in range(10)]
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.shape == (60000,) and mnist.x_train.dtype == mnist.y_train.dtype == np.uint8
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")), reason="needs apt-get and dpkg-deb")
def test_real_fashion_mnist_from_the_debian_archive(home, monkeypatch):
    spec = builtin.DATASETS["fashion_mnist"]
    monkeypatch.setattr(spec, "sources", [from_deb("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist",
                                                   builtin.read_idx_set, builtin.FASHION_IDX)])
    dataset = load_dataset("fashion_mnist", progress=False)
    assert dataset.source == "Debian archive (apt-get download dataset-fashion-mnist)"
    assert dataset.x_train.shape == (60000, 28, 28) and dataset.x_test.shape == (10000, 28, 28)
    assert np.bincount(dataset.y_train).tolist() == [6000] * 10 and np.bincount(dataset.y_test).tolist() == [1000] * 10
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason=f"{SHARED_CIFAR} is not on this machine")
def test_real_cifar10_jpg_archive_is_recognised():
    x_train, y_train, x_test, y_test = read_cifar(SHARED_CIFAR, progress=False, max_per_class=3)
    assert x_train.shape == x_test.shape == (30, 32, 32, 3) and y_train.shape == (30, 1)
    assert np.bincount(y_train[:, 0]).tolist() == [3] * 10 and np.bincount(y_test[:, 0]).tolist() == [3] * 10
    assert 40 < x_train.mean() < 220 and x_train.std() > 20  # real photos, not blank


def test_short_name_fits_a_folder_name():
    from imgcls.runs import short_name
    assert short_name("mnist") == "mnist"
    assert short_name("folder:/data/my photos/") == "my-photos"
    assert short_name("folder:~/pets.v2") == "pets.v2"
