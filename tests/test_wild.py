"""The robustness benchmark's pieces: the captured set is read through predict's own path, and the
summary line is what scripts read. (Its figures are reported by `imgcls bench --only wild`, never
asserted here.)"""

import io
import shutil
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from scipy import ndimage

from imgcls.bench.wild import (accuracy_on_files, captured_folder, hand_fonts_folder, pages_folder, wild_line,
                               writers_folder)
from imgcls.models import build_model
from imgcls.predict import predict_files
from imgcls.robustness.capture import compose, photograph, write_captured_set
from imgcls.robustness.handfonts import ANGLES, PACKAGES, write_font_digits
from imgcls.robustness.pages import bold, boxed, pencil

DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"  # a font every install has


def test_captured_pictures_are_scored_by_their_folder_names(mnist, tmp_path):
    write_captured_set(mnist.x_test[:12], mnist.y_test[:12], tmp_path, seed=3)
    model = build_model("dense", (28, 28), 10)
    metadata = {"class_names": mnist.class_names, "dataset": "mnist"}
    results = predict_files(model, mnist.class_names, [tmp_path], dataset="mnist")
    expected = np.mean([r["top"][0]["class"] == str(label) for r, label in
                        zip(sorted(results, key=lambda r: int(r["file"].rsplit("/", 1)[1][:-4])), mnist.y_test[:12])])
    assert accuracy_on_files(model, metadata, tmp_path) == expected


def test_the_captured_set_is_made_once_and_whole(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    folder = captured_folder(mnist.x_test, mnist.y_test, count=6)
    assert sorted(p.name for p in folder.rglob("*.jpg")) == [f"{i}.jpg" for i in range(6)]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no scratch folder left
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")}
    assert captured_folder(mnist.x_test, mnist.y_test, count=6) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")} == stamp  # read, not made again


def test_a_changed_simulator_makes_a_new_captured_set(mnist, tmp_path, monkeypatch):
    """The cache once served pictures an earlier draft of the simulator had made; its name now
    carries the simulator's digest, so a change to capture.py makes a fresh set."""
    import imgcls.bench.wild as wild

    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    before = captured_folder(mnist.x_test, mnist.y_test, count=2)
    next(before.iterdir()).rename(before / "stale")  # what an older simulator left
    monkeypatch.setattr(wild, "made_by", lambda module: "changed")
    after = captured_folder(mnist.x_test, mnist.y_test, count=2)
    assert after != before and not (after / "stale").exists()
    assert sorted(p.name for p in after.iterdir()) == sorted(str(int(y)) for y in set(mnist.y_test[:2]))


def test_summary_line():
    row = {"clean": 0.99312, "mnist_c_mean": 0.9512, "captured": 0.972, "drawn": None, "writers": 0.96,
           "fonts": 0.99111, "pages": 0.93, "mnist_c": {}, "pages_kinds": {}}
    assert wild_line({"measured": "default", "rows": {"seed": {**row, "clean": 0.5}, "default": row}}) == \
        "wild clean=0.9931 mnist_c_mean=0.9512 captured=0.9720 drawn=none writers=0.9600 fonts=0.9911 pages=0.9300"


def test_the_hard_pages_are_each_kind_of_each_digit_made_once(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    folder = pages_folder(mnist.x_test, mnist.y_test, first=0, count=4)
    for kind, suffix in (("boxed", "jpg"), ("pencil", "jpg"), ("bold", "png")):
        files = sorted((folder / kind).rglob("*.*"), key=lambda p: int(p.stem))
        assert [p.name for p in files] == [f"{i}.{suffix}" for i in range(4)]
        assert [int(p.parent.name) for p in files] == list(mnist.y_test[:4])
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*.*")}
    assert pages_folder(mnist.x_test, mnist.y_test, first=0, count=4) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.*")} == stamp  # read, not made again


def test_hard_pages_show_what_they_say(mnist):
    """The box is ink well away from the digit; the pencil page clips to white in part; the bold
    scan is dark ink on white, cropped to the strokes."""
    digit = mnist.x_test[0]
    scene = compose(digit, np.random.default_rng(5))  # the page boxed() draws its box on
    boxed_page, plain = (np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32)
                         for data in (boxed(digit, np.random.default_rng(5)), photograph(scene, np.random.default_rng(5))))
    lines = (boxed_page < plain - 40) & (ndimage.distance_transform_edt(scene.ink < 0.05) > 3)  # new ink off the digit
    rows, cols = np.nonzero(lines)
    assert lines.sum() > 2 * max(np.ptp(rows), np.ptp(cols))  # at least two sides' worth of line
    pencils = [np.asarray(Image.open(io.BytesIO(pencil(digit, np.random.default_rng(i)))).convert("L")) for i in range(8)]
    assert any((page >= 250).mean() > 0.1 for page in pencils) and all(page.min() < 200 for page in pencils)
    scan = np.asarray(Image.open(io.BytesIO(bold(digit, np.random.default_rng(5)))).convert("L"))
    assert scan.max() >= 250 and scan.min() < 60
    assert min(scan[:2].min(), scan[-2:].min(), scan[:, :2].min(), scan[:, -2:].min()) < 128  # ink on every side


def test_the_writers_set_is_every_uci_digit_as_a_scan(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    folder = writers_folder()
    files = sorted(folder.rglob("*.png"), key=lambda p: int(p.stem))
    digits = load_digits()
    assert [int(p.parent.name) for p in files] == list(digits.target)
    with Image.open(files[0]) as image:
        pixels = np.asarray(image)
    assert image.size == (64, 64) and pixels.max() == 255 and pixels.min() < 60  # dark ink on white


def test_hand_fonts_draw_each_digit_dark_on_white_straight_and_turned(tmp_path):
    write_font_digits([DEJAVU], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [str(d) for d in range(10)]
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [f"DejaVuSans_{a}.png" for a in ANGLES]
    pages = {a: np.asarray(Image.open(tmp_path / "1" / f"DejaVuSans_{a}.png")) for a in ANGLES}
    rows, cols = np.nonzero(pages[0] < 128)
    assert pages[0].max() == 255 and pages[0].min() < 60  # dark ink on white paper
    assert abs(rows.mean() - 120) < 15 and abs(cols.mean() - 120) < 15  # in the middle of the page
    assert np.ptp(rows) > 1.5 * np.ptp(cols)  # a 1 is tall and narrow
    straight = {np.asarray(Image.open(tmp_path / str(d) / "DejaVuSans_0.png")).tobytes() for d in range(10)}
    assert len(straight) == 10  # ten glyphs, not one missing glyph's box ten times
    assert not np.array_equal(pages[-8], pages[8]) and not np.array_equal(pages[0], pages[8])


def test_the_hand_font_set_is_made_from_the_installed_fonts_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    root = tmp_path / "fonts"
    assert hand_fonts_folder(root) is None
    assert "apt-get install fonts-bwht" in capsys.readouterr().out  # says how to get them
    font = root / PACKAGES["fonts-humor-sans"][0]
    font.parent.mkdir(parents=True)
    shutil.copy(DEJAVU, font)
    folder = hand_fonts_folder(root)
    assert sorted(p.name for p in folder.glob("7/*.png")) == [f"Humor-Sans_{a}.png" for a in ANGLES]
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}
    assert hand_fonts_folder(root) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")} == stamp  # read, not made again
