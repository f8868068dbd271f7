"""Images of every pixel type become the uint8 pixels they show (files made in the test)."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnviz_cli.io.images import load_image

RAMP = np.linspace(0.0, 1.0, 16 * 16).reshape(16, 16)  # a grey ramp, 0 to 1


def _expected(fractions: np.ndarray) -> np.ndarray:
    return (fractions * 255).round().astype(np.uint8)


def _png48(path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("mode", "values"), [
    ("F", RAMP.astype(np.float32)),  # float fractions: not clipped to black
    ("F", (RAMP * 255).astype(np.float32)),  # float levels
    ("F", (RAMP * 8 - 3).astype(np.float32)),  # any other range: stretched
    ("I", (RAMP * 65535).round().astype(np.int32)),  # 32-bit integers of 16-bit data
    (None, (RAMP * 65535).round().astype(np.uint16)),  # I;16
])
def test_deep_grey_is_scaled_by_its_real_range(tmp_path, mode, values):
    path = tmp_path / "deep.tif"
    image = Image.fromarray(values, mode=mode) if mode else Image.fromarray(values)
    image.save(path)
    assert Image.open(path).mode == (mode or "I;16")
    loaded = load_image(path, channels=1)[..., 0]
    assert np.abs(loaded.astype(int) - _expected(RAMP)).max() <= 1


def test_48_bit_rgb(tmp_path):
    pixels = np.zeros((4, 6, 3), np.uint16)
    pixels[..., 0], pixels[..., 1] = 65535, 32896  # full red, half green
    _png48(tmp_path / "deep.png", pixels)
    assert (load_image(tmp_path / "deep.png") == (255, 128, 0)).all()


def test_one_bit(tmp_path):
    bits = np.zeros((8, 8), bool)
    bits[2:5, 3:6] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    loaded = load_image(tmp_path / "bits.png")
    assert (loaded[bits] == 255).all() and (loaded[~bits] == 0).all()


def test_palette_with_transparency_is_on_white(tmp_path):
    image = Image.new("P", (6, 6), 0)
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)  # index 0 blue, 1 red
    image.paste(1, (0, 0, 3, 6))
    image.info["transparency"] = 0  # the blue half is transparent
    image.save(tmp_path / "palette.png", transparency=0)
    loaded = load_image(tmp_path / "palette.png")
    assert (loaded[:, :3] == (255, 0, 0)).all() and (loaded[:, 3:] == 255).all()


def test_cmyk(tmp_path):
    Image.new("CMYK", (5, 5), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    red = load_image(tmp_path / "cmyk.jpg").astype(int)
    assert (red[..., 0] > 240).all() and (red[..., 1:] < 15).all()


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = (255, 0, 0)  # red on the left of a wide image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    loaded = load_image(tmp_path / "rotated.jpg").astype(int)
    assert loaded.shape == (8, 4, 3)
    assert loaded[:4, :, 0].mean() > 200 and loaded[4:, :, 0].mean() < 50  # red on top
