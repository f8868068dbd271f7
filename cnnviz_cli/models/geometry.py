"""Input geometry at the model boundary: the size each image is computed at, how it is fitted
to that size (`--resize`), and how a map computed on it is placed back onto the original.

A fixed-size model gets its size. A model that takes any size keeps the image's aspect ratio:
its longer side at the model's usual size (a dense head: the image's own, up to `DENSE_CAP`),
both sides rounded to the multiple of the network's stride it needs (`size_multiple`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnnviz_cli.errors import CnnvizError

DENSE_CAP = 1024  # the longest side a dense head (segmentation) computes at by default
PROBED_MULTIPLES = (1, 2, 4, 8, 16, 32, 64, 128)
Size = int | tuple[int, int] | str | None  # N (square), (H, W), "native", None (the model's)


@dataclass(frozen=True)
class Placement:
    """Where an image's pixels sit in the model-sized frame: `content` (top, left, height,
    width) in the frame shows `source` (top, left, height, width) of the original."""

    frame: tuple[int, int]
    original: tuple[int, int]
    content: tuple[int, int, int, int]
    source: tuple[int, int, int, int]

    @property
    def exact(self) -> bool:
        """The whole frame shows the whole original (stretched or not): nothing to undo."""
        return (self.content == (0, 0, *self.frame)
                and self.source == (0, 0, *self.original))

    def unframe(self, values: np.ndarray) -> np.ndarray:
        """A map over the frame (at any resolution) -> a map over the original image: a
        letterbox's padding removed, a crop placed back (zero outside it)."""
        if self.exact:
            return values
        from cnnviz_cli.render.colour import resize_map

        scale_y, scale_x = (values.shape[0] / self.frame[0], values.shape[1] / self.frame[1])
        top, left, height, width = self.content
        inside = values[round(top * scale_y): round((top + height) * scale_y),
                        round(left * scale_x): round((left + width) * scale_x)]
        if self.source == (0, 0, *self.original):
            return inside
        top, left, height, width = self.source
        placed = np.zeros((*self.original, *values.shape[2:]), dtype=values.dtype)
        flat = inside.reshape(*inside.shape[:2], -1).astype("float32")
        resized = np.stack([resize_map(flat[..., k], (height, width))
                            for k in range(flat.shape[-1])], -1)
        placed[top:top + height, left:left + width] = resized.reshape(
            height, width, *values.shape[2:]).astype(values.dtype)
        return placed

    def describe(self) -> dict:
        """The manifest's record: `content` (top, left, height, width) in the computed input
        shows `source` (top, left, height, width) of the original."""
        return {"content": list(self.content), "source": list(self.source)}

    def enframe(self, mask: np.ndarray) -> np.ndarray:
        """A boolean map over the original -> the same map over the frame (the inverse of
        `unframe`, for regions given in the original's coordinates)."""
        from PIL import Image

        top, left, height, width = self.source
        kept = Image.fromarray(mask[top:top + height, left:left + width].astype(np.uint8))
        top, left, height, width = self.content
        framed = np.zeros(self.frame, dtype=bool)
        framed[top:top + height, left:left + width] = np.asarray(
            kept.resize((width, height), Image.Resampling.NEAREST)) > 0
        return framed


def fit(image: np.ndarray, size: tuple[int, int], mode: str) -> tuple[np.ndarray, Placement]:
    """uint8 `image` fitted to `size` by `mode` (stretch, pad, crop), and its placement."""
    from cnnviz_cli.io.images import resize

    original = image.shape[:2]
    whole = (0, 0, *original)
    if mode == "stretch" or original == tuple(size):
        return resize(image, size), Placement(size, original, (0, 0, *size), whole)
    if mode == "pad":
        scale = min(size[0] / original[0], size[1] / original[1])
        inner = [max(1, min(round(side * scale), limit))
                 for side, limit in zip(original, size, strict=True)]
        top, left = (size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2
        framed = np.zeros((*size, image.shape[-1]), dtype=np.uint8)
        framed[top:top + inner[0], left:left + inner[1]] = resize(image, tuple(inner))
        return framed, Placement(size, original, (top, left, *inner), whole)
    scale = max(size[0] / original[0], size[1] / original[1])
    kept = [max(1, min(round(side / scale), limit))
            for side, limit in zip(size, original, strict=True)]
    top, left = (original[0] - kept[0]) // 2, (original[1] - kept[1]) // 2
    cropped = image[top:top + kept[0], left:left + kept[1]]
    return resize(cropped, size), Placement(size, original, (0, 0, *size), (top, left, *kept))


@dataclass(frozen=True)
class Geometry:
    """Decides the size an image is computed at, and fits it there.

    `input_size` is the model's (height, width), None where free; `usual` its usual longer
    side; `dense` a dense head (per-pixel output); `multiple` the stride sides must divide.
    """

    input_size: tuple[int | None, int | None]
    usual: int
    size: Size = None
    resize: str = "stretch"
    dense: bool = False
    multiple: int = 1
    accepts: Callable[[tuple[int, int]], bool] | None = field(default=None, compare=False)

    def __post_init__(self):
        fixed = None not in self.input_size
        if self.size == "native" and fixed:
            raise CnnvizError(f"--size native applies only to models that take any size, and "
                              f"this one takes {self._fixed_text()} images only.")
        if fixed and self.size is not None and self._target() != tuple(self.input_size):
            raise CnnvizError(f"--size {self._size_text()} does not fit: the model takes "
                              f"{self._fixed_text()} images only.")
        if self.resize != "stretch" and not fixed and self.size in (None, "native"):
            raise CnnvizError(
                f"--resize {self.resize} applies only to a fixed size (a fixed-size model, or "
                "--size N or HxW), and here each image keeps its aspect ratio; leave it out.")

    def _size_text(self) -> str:
        target = self._target()
        return "native" if target is None else f"{target[0]}x{target[1]}"

    def _fixed_text(self) -> str:
        return f"{self.input_size[0]}x{self.input_size[1]}"

    def _target(self) -> tuple[int, int] | None:
        if isinstance(self.size, int):
            return self.size, self.size
        return tuple(self.size) if isinstance(self.size, tuple | list) else None

    @property
    def fixed(self) -> tuple[int, int] | None:
        """The one size every image gets, or None when it depends on the image."""
        if None not in self.input_size:
            return int(self.input_size[0]), int(self.input_size[1])
        target = self._target()
        return None if target is None else (self._round(target[0]), self._round(target[1]))

    def _round(self, side: float) -> int:
        return max(self.multiple, round(side / self.multiple) * self.multiple)

    def size_of(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of this size is computed at; a size the network
        cannot take is one error sentence."""
        size = self.fixed or self._free_size(height, width)
        if None in self.input_size and self.accepts is not None and not self.accepts(size):
            raise CnnvizError(
                f"The model cannot take {size[0]}x{size[1]} images (computed for a "
                f"{height}x{width} image): a side is too small for its downsampling; give a "
                "larger --size N or HxW.")
        return size

    def _free_size(self, height: int, width: int) -> tuple[int, int]:
        fixed_height, fixed_width = self.input_size
        if fixed_height is not None or fixed_width is not None:  # one free side: keep aspect
            scale = (fixed_height / height) if fixed_height is not None else fixed_width / width
        elif self.size == "native":
            scale = 1.0
        else:
            longest = min(max(height, width), DENSE_CAP) if self.dense else self.usual
            scale = longest / max(height, width)
        return (fixed_height or self._round(height * scale),
                fixed_width or self._round(width * scale))

    @property
    def default(self) -> tuple[int, int]:
        """The size of a square image (what image-free techniques use)."""
        return self.fixed or self.size_of(self.usual, self.usual)

    def place(self, image: np.ndarray) -> tuple[np.ndarray, Placement]:
        """`image` at its computed size, and where its pixels went."""
        size = self.size_of(*image.shape[:2])
        return fit(image, size, self.resize if self.fixed else "stretch")


def size_multiple(model) -> int:
    """The smallest power of two both input sides must be a multiple of for `model` to run
    (pooling and strided convolutions before a concatenation with an earlier map), found by
    tracing the graph at sizes that are odd multiples; 1 when none is needed."""
    channels = int(model.inputs[0].shape[-1])
    for multiple in PROBED_MULTIPLES:
        odd = max(3, -(-64 // multiple) | 1)
        if runs_at(model, (multiple * odd, multiple * (odd + 2)), channels):
            return multiple
    return 1


def runs_at(model, size: tuple[int, int], channels: int) -> bool:
    """Whether `model`'s graph accepts (height, width) images (traced, not run)."""
    import tensorflow as tf

    try:
        tf.function(lambda images: model(images, training=False)).get_concrete_function(
            tf.TensorSpec((1, *size, channels)))
    except Exception:  # a Concatenate of unequal maps, a negative dimension: it cannot run
        return False
    return True
