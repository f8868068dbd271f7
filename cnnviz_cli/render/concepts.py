"""Concept regions drawn over an image, each concept in its own colour, with a legend."""

import numpy as np
from PIL import Image, ImageDraw

from cnnviz_cli.render.colour import as_rgb, resize_map
from cnnviz_cli.render.grid import TEXT, _font

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
                    (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)], np.float32)


def concept_colour(index: int) -> np.ndarray:
    """The colour of concept `index` (the palette repeats after 12 concepts)."""
    return PALETTE[index % len(PALETTE)]


def concept_overlay(image: np.ndarray, regions: np.ndarray, top_channels: list[list[int]],
                    alpha: float = 0.6, title: str | None = None) -> np.ndarray:
    """`image` beside its grey copy on which each position is coloured by its strongest
    concept, as opaque as that concept is strong there (relative to the image's strongest);
    a legend with each concept's top channels underneath."""
    original = as_rgb(image)
    base = np.repeat(original.astype(np.float32).mean(axis=-1, keepdims=True), 3, axis=-1)
    height, width = base.shape[:2]
    upsampled = np.stack([resize_map(regions[..., k], (height, width))
                          for k in range(regions.shape[-1])], axis=-1)
    strength = upsampled.max(axis=-1) / (upsampled.max() or 1.0)
    colours = PALETTE[upsampled.argmax(axis=-1) % len(PALETTE)]
    weight = alpha * np.clip(strength, 0.0, 1.0)[..., None]
    blended = (base * (1.0 - weight) + colours * weight).round().astype(np.uint8)
    gap = np.full((height, 4, 3), 255, np.uint8)
    return _with_legend(np.concatenate([original, gap, blended], axis=1), top_channels, title)


def _with_legend(picture: np.ndarray, top_channels: list[list[int]], title: str | None):
    font = _font(12)
    line, header = 18, 20 if title else 0
    title_width = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title or "", font=font)
    width = max(picture.shape[1], 200, round(title_width) + 8)
    canvas = Image.new("RGB", (width, header + picture.shape[0] + 6 + line * len(top_channels)),
                       (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, header))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=TEXT, font=font)
    for index, channels in enumerate(top_channels):
        y = header + picture.shape[0] + 6 + line * index
        colour = tuple(int(value) for value in concept_colour(index))
        draw.rectangle((4, y, 16, y + 12), fill=colour)
        names = ", ".join(str(channel) for channel in channels)
        draw.text((22, y), f"concept {index}: ch {names}", fill=TEXT, font=font)
    return np.asarray(canvas)
