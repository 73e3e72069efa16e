"""Folder datasets larger than memory: the disk and stream cache modes, their lazy arrays, the
batches Keras is fed, and the memory they save."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

from imgcls.batches import Batches
from imgcls.data import load_dataset
from imgcls.data.lazy import DecodedFile, ImageFiles
from imgcls.errors import ImgclsError


def make_folder(root, count, side, classes=3, seed=0, formats=("jpg", "png", "png")):
    """`count` photos of `classes` colours with noise, in `formats` by turns, some of another size
    (resized when read), in root/<class>/: what a real folder holds."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (classes, 3))
    for i in range(count):
        label = i % classes
        size = side if i % 5 else side + 7
        pixels = np.clip(colours[label] + rng.integers(-60, 61, (size, size, 3)), 0, 255).astype(np.uint8)
        path = root / f"class{label}" / f"{i:05}.{formats[i % len(formats)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return root


@pytest.fixture
def small(tmp_path):
    return make_folder(tmp_path / "small", 60, 12)


@pytest.mark.parametrize("mode", ["disk", "stream"])
def test_every_cache_mode_gives_the_in_memory_pixels_bit_for_bit(small, home, mode):
    memory = load_dataset(f"folder:{small}", cache_mode="memory", progress=False)
    lazy = load_dataset(f"folder:{small}", cache_mode=mode, progress=False)
    assert isinstance(lazy.x_train, DecodedFile if mode == "disk" else ImageFiles)
    assert lazy.x_train.shape == memory.x_train.shape == (48, 12, 12, 3) and lazy.x_test.shape == (12, 12, 12, 3)
    assert lazy.class_names == memory.class_names
    for split in ("train", "test"):
        assert np.array_equal(np.asarray(getattr(lazy, f"x_{split}")), getattr(memory, f"x_{split}"))
        assert np.array_equal(getattr(lazy, f"y_{split}"), getattr(memory, f"y_{split}"))
    # what Keras is fed: every batch, in order and shuffled, equals the same rows of the arrays
    for shuffle in (False, True):
        feed = Batches(lazy.x_train, lazy.y_train, batch_size=7, shuffle=shuffle, seed=3)
        rows = np.arange(48) if not shuffle else feed.order
        for i in range(len(feed)):
            x, y = feed[i]
            assert x.dtype == np.uint8 and np.array_equal(x, memory.x_train[rows[i * 7:(i + 1) * 7]])
            assert np.array_equal(y, memory.y_train[rows[i * 7:(i + 1) * 7]])


def test_lazy_arrays_index_like_numpy(small, home):
    memory = load_dataset(f"folder:{small}", cache_mode="memory", progress=False).x_train
    for x in (load_dataset(f"folder:{small}", cache_mode=mode, progress=False).x_train for mode in ("disk", "stream")):
        view = x[5:-3:2]  # a slice reads nothing: it is a view
        assert isinstance(view, type(x)) and view.shape == memory[5:-3:2].shape
        assert np.array_equal(np.asarray(view), memory[5:-3:2])
        assert np.array_equal(view[[0, -1, 2]], memory[5:-3:2][[0, -1, 2]])
        assert np.array_equal(x[np.int64(7)], memory[7]) and np.array_equal(x[-1], memory[-1])
        with pytest.raises(IndexError):
            x[[0, 48]]
        with pytest.raises(TypeError, match="read the images first"):
            x[:, :, ::-1]


def test_shuffled_batches_read_every_image_once_in_a_new_order_each_epoch(small, home):
    x = load_dataset(f"folder:{small}", cache_mode="stream", progress=False).x_train
    feed = Batches(x, np.arange(48), batch_size=10, shuffle=True, seed=1)
    orders = []
    for _ in range(2):
        labels = np.concatenate([feed[i][1] for i in range(len(feed))])
        assert sorted(labels) == list(range(48))
        orders.append(labels)
        feed.on_epoch_end()
    assert not np.array_equal(*orders)
    assert np.array_equal(Batches(x, np.arange(48), batch_size=10, shuffle=True, seed=1)[0][1], orders[0][:10])
    mirrored = Batches(x, batch_size=10, view=lambda images: images[:, :, ::-1])[1][0]
    assert np.array_equal(mirrored, np.asarray(x[10:20])[:, :, ::-1])


def test_auto_mode_keeps_what_fits_the_budget_in_memory_and_decodes_the_rest_to_disk(small, home, capsys):
    fits = load_dataset(f"folder:{small}", memory_budget=1, progress=False)  # 60 x 12 x 12 x 3 bytes: 0.03 MB
    assert type(fits.x_train) is np.ndarray
    over = load_dataset(f"folder:{small}", memory_budget=0.01)
    err = capsys.readouterr().err
    assert isinstance(over.x_train, DecodedFile) and "0.026 MB decoded, over the memory budget of 0.01 MB" in err and "decoding 60" in err
    load_dataset(f"folder:{small}", memory_budget=0.01)
    assert "decoding" not in capsys.readouterr().err  # read back from the cache
    with open(over.x_train.path, "r+b") as f:  # cut short: noticed and decoded again
        f.truncate(os.path.getsize(over.x_train.path) - 1)
    again = load_dataset(f"folder:{small}", memory_budget=0.01)
    assert "damaged" in capsys.readouterr().err
    assert np.array_equal(np.asarray(again.x_train), fits.x_train)


def test_cache_options_are_checked(small, home):
    with pytest.raises(ImgclsError, match="Did you mean 'stream'"):
        load_dataset(f"folder:{small}", cache_mode="streem")
    with pytest.raises(ImgclsError, match="positive number of MB"):
        load_dataset(f"folder:{small}", memory_budget=0)


def test_builtin_datasets_stay_in_memory(mnist):
    with pytest.raises(ImgclsError, match="mnist is kept in memory; cache mode stream applies only to folder"):
        load_dataset("mnist", cache_mode="stream")


def test_a_validation_split_of_a_folder_holds_every_class(small, home):
    """Folders list their images class by class; held out from the end of that order, as Keras's
    validation split is, the validation set would be the last class alone."""
    from imgcls.train import split_validation

    data = load_dataset(f"folder:{small}", progress=False)
    (_, y_fit), (_, y_val) = split_validation(data.x_train, data.y_train, 0.25)
    assert sorted(set(y_val)) == sorted(set(y_fit)) == [0, 1, 2]


def test_training_and_evaluation_stream_a_folder(small, home, tmp_path):
    """The whole run, validation split and mirror-image test-time augmentation included, from
    images decoded a batch at a time; then `imgcls evaluate` on the same folder, streamed too."""
    from imgcls.config import resolve_config
    from imgcls.evaluate import evaluate_saved
    from imgcls.train import train

    config = resolve_config(dataset=f"folder:{small}", model="fast", optimizer="adam", lr=1e-2, epochs=2, batch_size=8,
                            cache_mode="stream", validation_split=0.25, tta=True, out=str(tmp_path / "run"))
    run = train(config, progress=False)
    history = (run.folder / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and "val_accuracy" in history[0] and len(history) == 3
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert metrics["train_size"] == 36 and metrics["validation_size"] == 12 and metrics["test_size"] == 12
    assert metrics["test_accuracy"] > 0.5 and "test_accuracy_tta" in metrics  # three colours: easy
    assert (run.folder / "misclassified.png").exists()

    folder, again = evaluate_saved(run.folder / "model.keras", cache_mode="stream", out=tmp_path / "eval")
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert again["confusion_matrix"] == metrics["confusion_matrix"]


def test_six_view_tta_averages_airbench_views_alike_in_memory_and_streamed(small, home, monkeypatch):
    """Six views: each image, its mirror, both moved a pixel diagonally each way (the edge reflected,
    as airbench pads) and their mirrors, weighted 1/4, 1/4 and 1/8 each; streamed images get the same
    views as arrays in memory, are read once for all six, and the TTA accuracy is that of the
    weighted average."""
    from imgcls.evaluate import evaluate
    from imgcls.views import shifted, tta_views

    image = np.arange(9).reshape(1, 3, 3, 1)
    assert shifted(1)(image)[0, :, :, 0].tolist() == [[4, 3, 4], [1, 0, 1], [4, 3, 4]]
    assert shifted(-1)(image)[0, :, :, 0].tolist() == [[4, 5, 4], [7, 8, 7], [4, 5, 4]]

    streamed = load_dataset(f"folder:{small}", cache_mode="stream", progress=False)
    x, y = streamed.x_test, streamed.y_test
    in_memory = np.asarray(x)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(3, activation="softmax")])
    weight, others = tta_views(6)
    assert len(others) == 5 and weight + sum(share for share, _ in others) == 1
    averaged = weight * model.predict_on_batch(in_memory) + sum(
        share * model.predict_on_batch(view(in_memory)) for share, view in others)
    expected = round(float(np.mean(averaged.argmax(axis=1) == y)), 6)

    read = []
    reader = type(x).read
    monkeypatch.setattr(type(x), "read", lambda self, rows: read.extend(rows) or reader(self, rows))
    evaluate(model, x, y, streamed.class_names)
    plain_reads, read[:] = sorted(read), []
    metrics, probs = evaluate(model, x, y, streamed.class_names, views=6)
    assert sorted(read) == plain_reads  # the images are decoded as often as without views, not six times
    assert metrics["test_accuracy_tta"] == expected
    np.testing.assert_allclose(probs, model.predict_on_batch(in_memory), rtol=1e-5)  # the plain view's
    assert evaluate(model, in_memory, y, streamed.class_names, views=6)[0]["test_accuracy_tta"] == expected


CHILD = textwrap.dedent("""
    import sys
    import keras
    from imgcls.batches import fit_data
    from imgcls.data import load_dataset
    from imgcls.evaluate import evaluate

    with open("/proc/self/clear_refs", "w") as f:  # the peak from here on: not the imports' (the same in each child)
        f.write("5")
    for mode in sys.argv[2].split(","):
        data = load_dataset(sys.argv[1], cache_mode=mode, memory_budget=float(sys.argv[3]))
        model = keras.Sequential([keras.Input(data.x_train.shape[1:]), keras.layers.Rescaling(1 / 255),
                                  keras.layers.GlobalAveragePooling2D(),  # a tiny model: the data is measured
                                  keras.layers.Dense(len(data.class_names), activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(**fit_data(data.x_train, data.y_train, None, 64, 0), epochs=1, verbose=0)
        evaluate(model, data.x_test, data.y_test, data.class_names)
        print(type(data.x_train).__name__)
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")))  # kB
""")


def peak_memory(folder, modes, budget_mb):
    """Peak resident bytes of a child that trains one epoch and evaluates in each of `modes` in turn."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", CHILD, f"folder:{folder}", ",".join(modes), str(budget_mb)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    *kinds, peak = done.stdout.split()
    return kinds, int(peak), done.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's resettable peak memory")
def test_a_folder_over_the_memory_budget_trains_in_bounded_memory(tmp_path, home):
    """2,000 photos of 96x96 (55 MB decoded) with a budget of 20 MB must not be held in memory:
    the run that decodes them to disk (auto) and the run that streams them (in the same child)
    peak at least half their decoded size below the run that holds them in memory. Peaks are counted
    from after the imports: with more packages installed, importing the stack came to peak above
    training and hid the difference."""
    folder = make_folder(tmp_path / "photos", 2000, 96, classes=4, formats=("jpg",))
    decoded = 2000 * 96 * 96 * 3
    kinds, in_memory, _ = peak_memory(folder, ["memory"], 20)
    assert kinds == ["ndarray"]
    kinds, lazily, stderr = peak_memory(folder, ["auto", "stream"], 20)
    assert kinds == ["DecodedFile", "ImageFiles"] and "over the memory budget of 20 MB" in stderr
    assert lazily < in_memory - decoded / 2, (lazily / 1e6, in_memory / 1e6)
