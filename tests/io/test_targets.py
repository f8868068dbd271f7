"""`cam --targets` files: rows by path, name or stem, header columns, regions, and errors that
name the row."""

import re

import numpy as np
import pytest
from PIL import Image

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io.targets import read_targets

LABELS = ["cat", "dog", "fox"]


@pytest.mark.parametrize(("row", "expected"), [("a.png\n", "row 1 has 1 column;"),
                                               ("a.png,0,1,2\n", "row 1 has 4 columns;")])
def test_column_counts_read_as_english(tmp_path, row, expected):
    path = tmp_path / "targets.csv"
    path.write_text(row)
    with pytest.raises(CnnvizError) as raised:
        read_targets(path, int)
    assert expected in str(raised.value) and str(raised.value).endswith(".")


def _label_index(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text not in LABELS:
        raise CnnvizError(f"Unknown class label {text!r}.")
    return LABELS.index(text)


@pytest.fixture
def csv_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "images").mkdir()
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1  # non-zero is inside, even 1
    Image.fromarray(mask).save(tmp_path / "data" / "star-mask.png")
    return tmp_path


def _write(folder, text, name="targets.csv"):
    path = folder / "data" / name
    path.write_text(text)
    return path


def test_targets_rows_by_path_name_and_stem(csv_folder):
    images = csv_folder / "images"
    path = _write(csv_folder, "images/circle.png,dog\nstar,fox,star-mask.png\n"
                  "pair.png,,0,5,40,20.5\nelsewhere,1\n")
    table = read_targets(path, _label_index)
    (circle,), (star,), (pair,) = (table.rows_for(images / f"{n}.png")
                                   for n in ("circle", "star", "pair"))
    assert (circle.class_index, circle.has_region) == (1, False)  # a path relative to the CWD
    assert star.class_index == 2 and star.mask == csv_folder / "data" / "star-mask.png"
    assert pair.class_index is None and pair.box == (0.0, 5.0, 40.0, 20.5)
    assert table.rows_for(images / "other.png") == []
    assert [row.image for row in table.unmatched(images / f"{n}.png" for n in ("circle", "star",
                                                                             "pair"))] == [
        "elsewhere"]
    assert table.has_regions


def test_an_image_may_have_a_row_per_class(csv_folder):
    path = _write(csv_folder, "a.png,cat\na.png,fox,0,0,4,4\n")
    rows = read_targets(path, _label_index).rows_for(csv_folder / "a.png")
    assert [(row.class_index, row.has_region) for row in rows] == [(0, False), (2, True)]


def test_targets_header_names_columns_in_any_order(csv_folder):
    path = _write(csv_folder, "split,label,xmin,ymin,xmax,ymax,file\nval,cat,1,2,3,4,a.png\n"
                  "val,fox,,,,,b.png\n")
    table = read_targets(path, _label_index)
    (first,), (second,) = (table.rows_for(csv_folder / "x" / name) for name in ("a.png", "b.png"))
    assert (first.class_index, first.box) == (0, (1.0, 2.0, 3.0, 4.0))
    assert (second.class_index, second.box, second.mask) == (2, None, None)


def test_regions_are_scaled_to_the_input_size(csv_folder):
    path = _write(csv_folder, "a,cat,50,0,200,25\nb,cat,star-mask.png\n")
    table = read_targets(path, _label_index)
    box = table.rows_for(csv_folder / "a.png")[0].region((100, 200), (10, 20))
    expected = np.zeros((10, 20), bool)
    expected[:2, 5:] = True  # row centres 5, 15 (of 5, 15, 25, ...) < 25; column centres >= 50
    np.testing.assert_array_equal(box, expected)
    mask = table.rows_for(csv_folder / "b.png")[0].region((30, 30), (8, 8))
    assert mask[:4, :4].all() and int(np.count_nonzero(mask)) == 16  # a count, not a float sum


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,wolf\n", "row 1: Unknown class label 'wolf'"),
        ("a,cat\nb,cat,nowhere.png\n", "row 2: mask file 'nowhere.png' not found"),
        ("a,cat,5,0,2,9\n", "row 1: bad box 5,0,2,9"),
        ("a,cat,x,0,2,9\n", "row 1: the box x,0,2,9 is not four numbers"),
        ("a,cat,1,2\n", "row 1 has 4 columns"),
        ("image,class,mask,x0,y0,x1,y1\na,cat,star-mask.png,0,0,1,1\n", "both a mask and a box"),
        ("a.png,cat\nimages/../a.png,cat\n", "row 2 names the same image and class as"),
        ("image,class,x0,y0\na,cat,1,2\n", "all of x0,y0,x1,y1"),
    ],
)
def test_targets_errors_name_the_row(csv_folder, text, message):
    with pytest.raises(CnnvizError, match=re.escape(message)):
        read_targets(_write(csv_folder, text), _label_index)

