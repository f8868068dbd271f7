"""Procedural dataset of coloured shapes on textured backgrounds.

Each image shows one or more shapes (circle, square, triangle, star, cross,
ring) at a random position, size, rotation and colour on top of a noisy
background made of a colour gradient, low-frequency colour noise, faint
lines and soft blobs.  Only numpy and Pillow are used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross", "ring")

SUPERSAMPLING = 4
SINGLE_RADIUS_RANGE = (0.15, 0.40)
MULTIPLE_RADIUS_RANGE = (0.12, 0.22)
MINIMUM_COLOUR_DISTANCE = 120.0
PLACEMENT_ATTEMPTS = 200


def _regular_polygon(vertex_count: int, radius: float, start_angle: float) -> np.ndarray:
    """Vertices of a regular polygon centred on the origin."""
    angles = start_angle + 2.0 * math.pi * np.arange(vertex_count) / vertex_count
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star_outline(inner_ratio: float) -> np.ndarray:
    """Vertices of a five-point star with unit outer radius."""
    angles = -math.pi / 2 + math.pi * np.arange(10) / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner_ratio)
    return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _cross_outline(half_width: float) -> np.ndarray:
    """Vertices of a plus sign with unit arm length: one arm's corners turned four times."""
    corners = np.array([(-half_width, -1.0), (half_width, -1.0), (half_width, -half_width)])
    quarter_turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    return np.concatenate(
        [corners @ np.linalg.matrix_power(quarter_turn, turn).T for turn in range(4)]
    )


def _shape_alpha(
    rng: np.random.Generator, class_index: int, size: int, centre: np.ndarray, radius: float
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape whose circumradius is `radius`."""
    scale = SUPERSAMPLING
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    name = CLASS_NAMES[class_index]
    centre_scaled = centre * scale
    radius_scaled = radius * scale
    rotation = rng.uniform(0.0, 2.0 * math.pi)

    def disc(disc_radius: float, fill: int) -> None:
        x, y = centre_scaled
        draw.ellipse(
            (x - disc_radius, y - disc_radius, x + disc_radius, y + disc_radius), fill=fill
        )

    if name == "circle":
        disc(radius_scaled * 0.85, 255)
    elif name == "ring":
        disc(radius_scaled * 0.92, 255)
        disc(radius_scaled * 0.92 * rng.uniform(0.48, 0.62), 0)
    else:
        if name == "square":
            outline = _regular_polygon(4, 1.0, math.pi / 4)
        elif name == "triangle":
            outline = _regular_polygon(3, 1.0, -math.pi / 2)
        elif name == "star":
            outline = _star_outline(rng.uniform(0.38, 0.48))
        else:
            outline = _cross_outline(rng.uniform(0.28, 0.36))
        rotation_matrix = np.array(
            [[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]]
        )
        points = outline @ rotation_matrix.T * radius_scaled + centre_scaled
        draw.polygon([tuple(point) for point in points], fill=255)
    reduced = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, size: int, grid: int, channels: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] obtained by upsampling a coarse random grid."""
    coarse = rng.integers(0, 256, size=(grid, grid, 3), dtype=np.uint8)
    upsampled = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    noise = np.asarray(upsampled, dtype=np.float32)[..., :channels]
    return noise / np.float32(127.5) - np.float32(1.0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured float background in [0, 255] of shape (size, size, 3)."""
    start_colour = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
    end_colour = np.clip(start_colour + rng.uniform(-80.0, 80.0, size=3), 0.0, 255.0).astype(
        np.float32
    )
    angle = rng.uniform(0.0, 2.0 * math.pi)
    coordinates = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    grid_x, grid_y = np.meshgrid(coordinates, coordinates)
    position = np.clip(grid_x * math.cos(angle) + grid_y * math.sin(angle) + 0.5, 0.0, 1.0)
    image = start_colour + position[..., None] * (end_colour - start_colour)
    image += np.float32(rng.uniform(10.0, 25.0)) * _smooth_noise(
        rng, size, int(rng.integers(3, 7)), 3
    )

    reduced_size = max(size // 4, 8)
    blobs = Image.new("RGBA", (reduced_size, reduced_size), (0, 0, 0, 0))
    blob_draw = ImageDraw.Draw(blobs)
    for _ in range(int(rng.integers(1, 4))):
        radius_x, radius_y = rng.uniform(0.08, 0.25, size=2) * reduced_size
        x, y = rng.uniform(0.0, reduced_size, size=2)
        colour = tuple(int(value) for value in rng.integers(0, 256, size=3))
        blob_draw.ellipse(
            (x - radius_x, y - radius_y, x + radius_x, y + radius_y),
            fill=(*colour, int(rng.integers(40, 80))),
        )
    blobs = blobs.filter(ImageFilter.GaussianBlur(radius=reduced_size / 16))
    overlay = blobs.resize((size, size), Image.Resampling.BILINEAR)
    line_draw = ImageDraw.Draw(overlay)
    for _ in range(int(rng.integers(2, 6))):
        endpoints = tuple(float(value) for value in rng.uniform(0.0, size, size=4))
        colour = tuple(int(value) for value in rng.integers(0, 256, size=3))
        line_draw.line(
            endpoints, fill=(*colour, int(rng.integers(40, 80))), width=int(rng.integers(1, 3))
        )
    overlay_array = np.asarray(overlay, dtype=np.float32)
    overlay_alpha = overlay_array[..., 3:] / np.float32(255.0)
    return image + (overlay_array[..., :3] - image) * overlay_alpha


def _contrasting_colour(rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """A random RGB colour far enough from `reference` to be clearly visible."""
    for _ in range(100):
        colour = rng.uniform(0.0, 255.0, size=3)
        if np.linalg.norm(colour - reference) >= MINIMUM_COLOUR_DISTANCE:
            return colour
    return np.zeros(3) if reference.mean() > 127.5 else np.full(3, 255.0)


def _place_shapes(
    rng: np.random.Generator, size: int, count: int
) -> list[tuple[np.ndarray, float]]:
    """Random (centre, circumradius) pairs whose bounding circles do not touch."""
    low, high = SINGLE_RADIUS_RANGE if count == 1 else MULTIPLE_RADIUS_RANGE
    gap = 0.04 * size
    for attempt in range(PLACEMENT_ATTEMPTS):
        shrink = 1.0 - 0.5 * attempt / PLACEMENT_ATTEMPTS
        placements: list[tuple[np.ndarray, float]] = []
        for _ in range(count):
            radius = rng.uniform(low, high) * size * shrink
            centre = rng.uniform(radius + 1.0, size - radius - 1.0, size=2)
            if all(
                np.linalg.norm(centre - other_centre) > radius + other_radius + gap
                for other_centre, other_radius in placements
            ):
                placements.append((centre, radius))
            else:
                break
        if len(placements) == count:
            return placements
    raise ValueError(f"cannot place {count} shapes without overlap in a {size}px image")


def draw_scene(
    rng: np.random.Generator, size: int, class_indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the given shape classes on one textured background.

    Returns the uint8 image of shape (size, size, 3) and a boolean array of
    ground-truth masks of shape (len(class_indices), size, size), one per
    shape; the masks never overlap.
    """
    image = _background(rng, size)
    masks = np.zeros((len(class_indices), size, size), dtype=bool)
    for position, ((centre, radius), class_index) in enumerate(
        zip(_place_shapes(rng, size, len(class_indices)), class_indices, strict=True)
    ):
        alpha = _shape_alpha(rng, int(class_index), size, centre, radius)
        masks[position] = alpha >= 0.5
        colour = _contrasting_colour(rng, image[masks[position]].mean(axis=0))
        shading = 1.0 + np.float32(rng.uniform(0.05, 0.15)) * _smooth_noise(rng, size, 2, 1)
        fill = np.clip(colour.astype(np.float32) * shading, 0.0, 255.0)
        image += (fill - image) * alpha[..., None]
    image += np.float32(rng.uniform(4.0, 12.0)) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), masks


def make_dataset(num_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced single-shape images (N, size, size, 3) uint8 and int labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % len(CLASS_NAMES))
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index], _ = draw_scene(rng, size, [int(label)])
    return images, labels.astype(np.int64)


def make_pairs(num_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-shape images of two different classes.

    Returns images (N, size, size, 3) uint8, labels (N, 2) int and masks
    (N, 2, size, size) bool, where masks[i, j] covers the shape labels[i, j].
    """
    rng = np.random.default_rng(seed)
    ordered_pairs = np.array(list(itertools.permutations(range(len(CLASS_NAMES)), 2)))
    repeats = -(-num_images // len(ordered_pairs))
    labels = rng.permutation(np.tile(ordered_pairs, (repeats, 1)))[:num_images]
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    masks = np.empty((num_images, 2, size, size), dtype=bool)
    for index, pair in enumerate(labels):
        images[index], masks[index] = draw_scene(rng, size, [int(value) for value in pair])
    return images, labels.astype(np.int64), masks
