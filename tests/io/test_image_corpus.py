"""A corpus of hostile or odd image files, and fuzzing of the image loader."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnviz_cli.errors import InputError
from cnnviz_cli.io.images import load_image


def _png_bytes(size=(8, 8)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(folder, name: str, data: bytes):
    path = folder / name
    path.write_bytes(data)
    return path


def _bomb(folder):
    """A valid PNG header declaring 100000x100000 pixels (the data is never decoded)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return _write(folder, "bomb.png", b"\x89PNG\r\n\x1a\n" + ihdr)


BAD_FILES = {
    "zero-byte": lambda d: _write(d, "empty.png", b""),
    "truncated PNG": lambda d: _write(d, "cut.png", _png_bytes((64, 64))[:60]),
    "truncated JPEG": lambda d: _write(d, "cut.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 20),
    "text named png": lambda d: _write(d, "text.png", b"hello, I am text"),
    "decompression bomb": _bomb,
    "folder named png": lambda d: (d / "dir.png").mkdir() or d / "dir.png",
    "broken symlink": lambda d: (d / "link.png").symlink_to(d / "gone.png") or d / "link.png",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_one_clear_input_error(tmp_path, case):
    path = BAD_FILES[case](tmp_path)
    with pytest.raises(InputError) as caught:
        load_image(path, max_pixels=50_000_000)
    message = str(caught.value)  # the caller prefixes the path: PATH: MESSAGE
    assert message and not message.startswith(str(path)) and "\n" not in message


@pytest.mark.skipif(
    os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root can read any file"
)
def test_unreadable_file(tmp_path):
    path = _write(tmp_path, "secret.png", _png_bytes())
    path.chmod(0)
    with pytest.raises(InputError, match="ermission"):
        load_image(path)


def _save(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


ODD_FILES = {
    "cmyk jpeg": lambda d: _save(d, Image.new("CMYK", (9, 7), (0, 255, 0, 0)), "c.jpg"),
    "palette with transparency": lambda d: _save(
        d, Image.new("P", (5, 5), 1), "p.png", transparency=1
    ),
    "animated gif": lambda d: _save(
        d,
        Image.new("RGB", (6, 6), "red"),
        "a.gif",
        save_all=True,
        append_images=[Image.new("RGB", (6, 6), "blue")],
    ),
    "1x1": lambda d: _save(d, Image.new("RGB", (1, 1), "white"), "one.png"),
    "10000x10": lambda d: _save(d, Image.new("L", (10000, 10), 5), "wide.png"),
    "16-bit": lambda d: _save(d, Image.fromarray(np.full((4, 4), 40000, np.uint16)), "d.png"),
    "non-utf8 name": lambda d: _save(
        d,
        Image.new("RGB", (3, 3)),
        os.fsdecode(b"caf\xe9.png") if sys.platform != "win32" else "cafe.png",
    ),
}


@pytest.mark.parametrize("case", list(ODD_FILES))
@pytest.mark.parametrize("channels", [1, 3])
def test_odd_but_valid_files_load(tmp_path, case, channels):
    image = load_image(ODD_FILES[case](tmp_path), channels=channels)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == channels


def test_animated_gif_gives_first_frame(tmp_path):
    image = load_image(ODD_FILES["animated gif"](tmp_path))
    assert tuple(image[0, 0]) == (255, 0, 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2048))
def test_random_bytes_never_crash(tmp_path, data):
    path = tmp_path / "fuzz.png"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except InputError:
        return
    assert image.dtype == np.uint8 and image.shape[-1] == 3


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mode=st.sampled_from(MODES),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP", "WEBP", "GIF", "JPEG"]),
    channels=st.sampled_from([1, 3]),
)
def test_random_valid_images_load_with_their_size(tmp_path, mode, width, height, fmt, channels):
    picture = Image.new(mode, (width, height))
    path = tmp_path / f"x.{fmt.lower()}"
    try:
        picture.save(path, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write that mode in that format
    image = load_image(path, channels=channels)
    assert image.shape == (height, width, channels) and image.dtype == np.uint8
