"""Image collection and decoding: modes, orientation, resizing and unreadable files."""

import numpy as np
import pytest
from PIL import Image

from cnnviz_cli.errors import CnnvizError, InputError
from cnnviz_cli.io.images import collect_image_paths, load_image, output_keys, resize


def test_collect_files_folders_globs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    for name in ("a/x.png", "a/deep/y.JPG", "a/notes.txt", "z.webp"):
        (tmp_path / name).write_bytes(b"")
    found = collect_image_paths([str(tmp_path / "a"), str(tmp_path / "*.webp")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a/deep/y.JPG", "a/x.png", "z.webp"]
    with pytest.raises(CnnvizError, match="not a file, a folder"):
        collect_image_paths([str(tmp_path / "missing.png")])


def test_output_keys_distinct_for_same_stem(tmp_path):
    paths = [tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.jpg", tmp_path / "dog.png"]
    keys = output_keys(paths)
    assert keys[2] == "dog" and keys[0] != keys[1] and all(k.startswith("cat-") for k in keys[:2])
    assert output_keys(paths) == keys


def test_modes_are_converted(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = load_image(tmp_path / "rgba.png")
    assert image.shape == (4, 4, 3)
    assert tuple(image[0, 0]) == (200, 0, 0) and tuple(image[3, 3]) == (255, 255, 255)

    deep = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    grey = load_image(tmp_path / "deep.png", channels=1)
    assert grey.shape == (4, 4, 1) and grey.max() == round(60000 / 65535 * 255)
    assert load_image(tmp_path / "deep.png").shape == (4, 4, 3)


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((2, 4, 3), np.uint8)  # wide image, left column marked
    array[:, 0] = 255
    picture = Image.fromarray(array)
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    picture.save(tmp_path / "r.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "r.jpg")
    assert image.shape[:2] == (4, 2)
    assert image[0].mean() > 200  # the marked column is now the top row


def test_unreadable_inputs(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "text.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="max-pixels"):
        load_image(tmp_path / "big.png", max_pixels=50)


def test_resize_keeps_channels():
    image = np.zeros((10, 20, 1), np.uint8)
    assert resize(image, (5, 7)).shape == (5, 7, 1)


def test_unreadable_input_messages_leave_the_path_to_the_caller(tmp_path, sample_dir, run_cli):
    cases = {"text.png": "not an image", "folder.png": "is a folder",
             "truncated.png": "cannot be decoded", "big.png": "over the --max-pixels limit"}
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "whole.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    for name, words in cases.items():
        with pytest.raises(InputError) as raised:
            load_image(tmp_path / name, max_pixels=5000)
        message = str(raised.value)
        assert words in message and name not in message and message.endswith("."), message
    result = run_cli("-q", "activations", tmp_path / "text.png", sample_dir / "star.png",
                     "-o", tmp_path / "out", expect=1)
    skipped = [line for line in result.output.splitlines() if line.startswith("Skipped")]
    assert len(skipped) == 1 and skipped[0].count("text.png") == 1, skipped


def test_support_box_is_the_smallest_square_around_the_projection():
    from cnnviz_cli.render.maps import support_box

    values = np.zeros((40, 60, 3))
    values[10:16, 30:34, 1] = -2.0  # 6 rows x 4 columns
    rows, columns = support_box(values, minimum=0.1)
    assert (rows, columns) == (slice(10, 16), slice(29, 35))
    rows, columns = support_box(values, minimum=0.5)  # at least 20 pixels, kept inside
    assert (rows.stop - rows.start, columns.stop - columns.start) == (20, 20)
    assert rows.start <= 10 and rows.stop >= 16 and columns.start <= 30 and columns.stop >= 34


def test_a_raised_max_pixels_is_honoured_past_pillows_own_limit(tmp_path, monkeypatch):
    from cnnviz_cli.errors import InputError
    from cnnviz_cli.io.images import load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses over 200 pixels
    path = tmp_path / "big.png"
    Image.new("RGB", (30, 30), "red").save(path)
    assert load_image(path, max_pixels=1000).shape == (30, 30, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="more than 100 pixels, over the --max-pixels limit of 50"):
        load_image(path, max_pixels=50)

