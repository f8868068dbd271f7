"""Labelled grids of tiles and strips of panels."""

import math
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnviz_cli.render.colour import as_rgb

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def upscale(tile: np.ndarray, minimum: int) -> np.ndarray:
    """Enlarge a small tile by an integer factor (nearest neighbour) to at least `minimum` px."""
    factor = max(1, math.ceil(minimum / max(tile.shape[:2])))
    return tile.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else tile


def grid(
    tiles: list[np.ndarray],
    labels: list[str] | None = None,
    columns: int | None = None,
    title: str | None = None,
    padding: int = 4,
) -> np.ndarray:
    """Arrange same-size uint8 tiles in rows, each with an optional caption underneath."""
    tiles = [as_rgb(tile) for tile in tiles]
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    tile_height, tile_width = tiles[0].shape[:2]
    font_size = max(10, min(16, tile_width // 8))
    caption = font_size + 4 if labels else 0
    header = font_size + 10 if title else 0
    height = header + rows * (tile_height + caption + padding) + padding
    width = columns * (tile_width + padding) + padding
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((padding, 4), title, fill=TEXT, font=_font(font_size + 2))
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        x = padding + column * (tile_width + padding)
        y = header + padding + row * (tile_height + caption + padding)
        canvas.paste(Image.fromarray(tile), (x, y))
        if labels:
            text = _fit(draw, labels[index], tile_width, _font(font_size))
            draw.text((x, y + tile_height + 2), text, fill=TEXT, font=_font(font_size))
    return np.asarray(canvas)


def column_heads(heads: list[str], tile_width: int, width: int, title: str | None = None,
                 padding: int = 4) -> np.ndarray:
    """A strip of `width` px with a title line and one head per column of a `grid` of tiles
    `tile_width` px wide (the same padding), each wrapped to its column (see `wrap_heads`)."""
    font_size = max(10, min(16, tile_width // 8))
    font, line = _font(font_size), font_size + 4
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = wrap_heads(heads, lambda text: measure.textlength(text, font=font) <= tile_width)
    top = (line + 6) * bool(title) + padding
    rows = max(len(lines) for lines in wrapped)
    canvas = Image.new("RGB", (width, top + line * rows + padding), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((padding, 4), title, fill=TEXT, font=_font(font_size + 2))
    for column, lines in enumerate(wrapped):
        x = padding + column * (tile_width + padding)
        for row, text in enumerate(lines):
            draw.text((x, top + row * line), text, fill=TEXT, font=font)
    return np.asarray(canvas)


def wrap_heads(heads: list[str], fits, max_lines: int = 2) -> list[list[str]]:
    """Each head in lines that `fits(text)`, broken after `_`, `/`, `-` or `.` where it can;
    a head longer than `max_lines` keeps its end (where layer names differ) after `…`. Heads
    that would read the same get more lines until they differ."""
    for lines in range(max_lines, 9):
        wrapped = [_wrap_end(head, fits, lines) for head in heads]
        if len({tuple(item) for item in wrapped}) == len(set(heads)):
            break
    return wrapped


def _wrap_end(text: str, fits, max_lines: int) -> list[str]:
    """`text` wrapped in lines that fit; beyond `max_lines`, its last lines after `…`."""
    lines, line = [], ""
    for piece in re.findall(r"[^_/.\- ]*[_/.\- ]?", text)[:-1]:
        while piece:
            if fits(line + piece):
                line, piece = line + piece, ""
            elif line:
                lines.append(line)
                line = ""
            else:  # a piece wider than the column: as much of it as fits
                cut = max([end for end in range(1, len(piece) + 1) if fits(piece[:end])],
                          default=1)
                lines.append(piece[:cut])
                piece = piece[cut:]
    lines = [*lines, line] if line else lines
    if len(lines) <= max_lines:
        return lines
    kept = lines[-max_lines:]
    first = kept[0]
    while first and not fits("…" + first):
        first = first[1:]
    return ["…" + first, *kept[1:]]


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def strip(panels: list[np.ndarray], labels: list[str], title: str | None = None) -> np.ndarray:
    """Panels side by side in one row (resized to the first panel's height)."""
    height = panels[0].shape[0]
    resized = [
        np.asarray(
            Image.fromarray(as_rgb(panel)).resize(
                (round(panel.shape[1] * height / panel.shape[0]), height), Image.Resampling.LANCZOS
            )
        )
        for panel in panels
    ]
    width = max(panel.shape[1] for panel in resized)
    padded = [
        np.pad(panel, ((0, 0), (0, width - panel.shape[1]), (0, 0)), constant_values=255)
        for panel in resized
    ]
    return grid(padded, labels, columns=len(padded), title=title)


def labelled_rows(pictures: list[np.ndarray], labels: list[str], title: str | None = None,
                  padding: int = 4) -> np.ndarray:
    """Pictures one under the other, each with its label on the left (one row per step);
    small pictures are enlarged."""
    pictures = [upscale(as_rgb(picture), 96) for picture in pictures]
    font = _font(13)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max(int(measure.textlength(label, font=font)) for label in labels) + padding
    header = 22 if title else 0
    width = label_width + max(picture.shape[1] for picture in pictures) + 2 * padding
    height = header + sum(picture.shape[0] + padding for picture in pictures) + padding
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((padding, 4), title, fill=TEXT, font=_font(15))
    y = header + padding
    for picture, label in zip(pictures, labels, strict=True):
        draw.text((padding, y + picture.shape[0] // 2 - 7), label, fill=TEXT, font=font)
        canvas.paste(Image.fromarray(picture), (label_width + padding, y))
        y += picture.shape[0] + padding
    return np.asarray(canvas)
