"""Ground truth per image from a CSV file (`cam --targets`): the class and the object's region.

A row is `image, class[, mask | , x0, y0, x1, y1]`. The image is a path (absolute, or relative to
the current folder or to the CSV's folder), a file name or a stem; the class an index or a label
(empty: the image's default target); the region a mask image (non-zero pixels are the object,
stretched to the image) or a box in the image's pixels (x1, y1 exclusive). A header row is
optional; with one, columns are found by name and other columns are ignored. An image may have
several rows, one per class (e.g. every label of a multi-label image).
"""

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnviz_cli.errors import CnnvizError, reason

COLUMNS = {  # header names -> the column they stand for
    "image": "image", "path": "image", "file": "image", "filename": "image", "stem": "image",
    "class": "class", "label": "class", "target": "class",
    "mask": "mask",
    "x0": "x0", "y0": "y0", "x1": "x1", "y1": "y1",
    "xmin": "x0", "ymin": "y0", "xmax": "x1", "ymax": "y1",
}
BOX = ("x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class TargetRow:
    """One row: where it is in the file, the image it names, its class and region."""

    where: str  # "FILE row N", for messages
    image: str
    class_index: int | None = None
    mask: Path | None = None
    box: tuple[float, float, float, float] | None = None

    @property
    def has_region(self) -> bool:
        return self.mask is not None or self.box is not None

    def region(self, original: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """The object as a boolean (height, width) map at `size`, for an image whose original
        (height, width) is `original`: the box scaled, or the mask stretched, to it."""
        height, width = size
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            rows = (np.arange(height) + 0.5) * original[0] / height  # pixel centres, original
            columns = (np.arange(width) + 0.5) * original[1] / width
            return ((rows >= y0) & (rows < y1))[:, None] & ((columns >= x0) & (columns < x1))
        try:
            with Image.open(self.mask) as picture:
                grey = picture.convert("L").resize((width, height), Image.Resampling.NEAREST)
        except (OSError, ValueError) as error:
            raise CnnvizError(f"{self.where}: cannot read the mask {self.mask}: {error}.") from None
        return np.asarray(grey) > 0


class TargetTable:
    """The rows of a targets file, looked up by an input's path, file name or stem."""

    def __init__(self, rows: list[TargetRow], folder: Path):
        self.rows = rows
        self._by_path: dict[Path, list[TargetRow]] = {}
        self._by_name: dict[str, list[TargetRow]] = {}
        self._by_stem: dict[str, list[TargetRow]] = {}
        for row in rows:
            keys = [(self._by_path, path) for path in _resolved(row.image, folder)]
            if "/" not in row.image and "\\" not in row.image:  # a bare file name or stem
                keys += [(self._by_name, row.image), (self._by_stem, row.image)]
            for index, key in keys:
                found = index.setdefault(key, [])
                for other in found:
                    if other.class_index == row.class_index:
                        raise CnnvizError(
                            f"{row.where} names the same image and class as {other.where}; "
                            "give one row per image and class."
                        )
                found.append(row)

    @property
    def has_regions(self) -> bool:
        return any(row.has_region for row in self.rows)

    def rows_for(self, path: Path) -> list[TargetRow]:
        """The rows of an input image: by path, else by file name, else by stem."""
        return (self._by_path.get(path.resolve()) or self._by_name.get(path.name)
                or self._by_stem.get(path.stem) or [])

    def unmatched(self, paths: Iterable[Path]) -> list[TargetRow]:
        """The rows that name none of `paths`."""
        used = {id(row) for path in paths for row in self.rows_for(path)}
        return [row for row in self.rows if id(row) not in used]


def _resolved(text: str, folder: Path) -> list[Path]:
    """Where a relative path may point: from the current folder and from the CSV's folder."""
    path = Path(text).expanduser()
    bases = [Path.cwd()] if path.is_absolute() else [Path.cwd(), folder]
    return list(dict.fromkeys((base / path).resolve() for base in bases))


def _existing(text: str, folder: Path, where: str) -> Path:
    for candidate in _resolved(text, folder):
        if candidate.is_file():
            return candidate
    raise CnnvizError(
        f"{where}: mask file {text!r} not found (looked in the current folder and in {folder})."
    )


def _box(cells: list[str], where: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(cell) for cell in cells)
    except ValueError:
        raise CnnvizError(f"{where}: the box {','.join(cells)} is not four numbers.") from None
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise CnnvizError(
            f"{where}: bad box {','.join(cells)}; need 0 <= x0 < x1 and 0 <= y0 < y1 "
            "(pixels of the image)."
        )
    return x0, y0, x1, y1


def _header_positions(header: list[str], where: str) -> dict[str, int]:
    """Column name -> position in a header row (the first of repeated names; others ignored)."""
    named = [(COLUMNS.get(cell), number) for number, cell in enumerate(header)]
    positions = {name: number for name, number in reversed(named) if name}
    if "image" not in positions or 0 < sum(name in positions for name in BOX) < 4:
        raise CnnvizError(f"{where} needs an image column and, for boxes, all of x0,y0,x1,y1.")
    return positions


def _counted_positions(width: int, where: str) -> dict[str, int]:
    """Column name -> position in a row without header, by its number of cells."""
    layouts = {2: ("image", "class"), 3: ("image", "class", "mask"), 6: ("image", "class", *BOX)}
    if width not in layouts:
        raise CnnvizError(
            f"{where} has {width} column{'' if width == 1 else 's'}; expected image,class then "
            "optionally a mask path or a box x0,y0,x1,y1."
        )
    return {name: number for number, name in enumerate(layouts[width])}


def read_targets(path: Path, class_index: Callable[[str], int]) -> TargetTable:
    """Parse a targets CSV; `class_index` turns a class cell (index or label) into an index.

    Every problem is one CnnvizError naming the row: unknown label, missing mask, bad box.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            lines = [(number, cells) for number, cells in enumerate(csv.reader(file), start=1)
                     if any(cell.strip() for cell in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CnnvizError(f"Cannot read the targets file {path}: {reason(error)}.") from None
    if not lines:
        raise CnnvizError(f"The targets file {path} has no rows.")
    first = [cell.strip().lower() for cell in lines[0][1]]
    named = None
    if any(COLUMNS.get(cell) == "image" for cell in first):
        named = _header_positions(first, f"The header of {path}")
        lines = lines[1:]
    rows = []
    for number, cells in lines:
        cells = [cell.strip() for cell in cells]
        where = f"{path} row {number}"
        while named is None and len(cells) > 2 and not cells[-1]:
            cells.pop()  # trailing empty cells
        positions = named or _counted_positions(len(cells), where)
        cell = {name: cells[n] if n < len(cells) else "" for name, n in positions.items()}
        if not cell["image"]:
            raise CnnvizError(f"{where} names no image.")
        box_cells = [cell.get(name, "") for name in BOX]
        if cell.get("mask") and any(box_cells):
            raise CnnvizError(f"{where} gives both a mask and a box; give one of them.")
        try:
            index = class_index(cell["class"]) if cell.get("class") else None
        except CnnvizError as error:
            raise CnnvizError(f"{where}: {error}") from None
        rows.append(TargetRow(
            where, cell["image"], index,
            _existing(cell["mask"], path.parent, where) if cell.get("mask") else None,
            _box(box_cells, where) if any(box_cells) else None,
        ))
    return TargetTable(rows, path.parent)
