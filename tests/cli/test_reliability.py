"""Hostile models and options through every command, spec-parser fuzzing, determinism, outputs."""

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMG, FOLDER = "IMG", "FOLDER"  # placeholders for one good image and the mixed folder

# Each command at the smallest useful size: a few steps, one octave.
COMMANDS = {
    "cam": ["cam", IMG],
    "maximize": ["maximize", "--steps", "2"],
    "filters": ["filters"],
    "activations": ["activations", IMG, "--max-channels", "2"],
    "dream": ["dream", IMG, "--steps", "1", "--octaves", "1"],
    "inversion": ["reconstruct", IMG, "--method", "inversion", "--steps", "2"],
    "guided": ["reconstruct", IMG],
}
IMAGE_COMMANDS = [name for name, args in COMMANDS.items() if IMG in args]
SLOW = ("dream", "inversion")  # optimisations: the fast tier runs the others


@pytest.fixture(scope="module")
def corpus(keras, tmp_path_factory) -> dict[str, Path]:
    """Model files good and bad, two good images and one broken one, and a plain file."""
    folder = tmp_path_factory.mktemp("corpus")
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    small = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="pred")(x))
    small.set_weights([np.random.default_rng(5).normal(size=w.shape).astype("float32")
                       for w in small.get_weights()])
    small.save(folder / "small.keras")
    small.save_weights(folder / "small.weights.h5")
    shutil.copy(folder / "small.weights.h5", folder / "weights-only.h5")
    (folder / "junk.keras").write_bytes(np.random.default_rng(0).bytes(600))
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(name="flatten"),
                      keras.layers.Dense(3, name="dense")]).save(folder / "dense.keras")
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, name="dense")]
                     ).save(folder / "vector.keras")
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
            images / f"{name}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (folder / "a-file").write_text("not a folder")
    return {"folder": folder, "images": images, "small": folder / "small.keras"}


def command_args(corpus: dict, command: str, *extra: str, model: str = "small") -> list[str]:
    """`cnnviz COMMAND` on a corpus model, with the placeholders filled in."""
    fill = {IMG: str(corpus["images"] / "a.png"), FOLDER: str(corpus["images"])}
    args = [fill.get(arg, arg) for arg in COMMANDS[command]]
    path = corpus["small"] if model == "small" else corpus["folder"] / model
    return [*args, "-m", str(path), "--preprocess", "unit", *extra]


def assert_one_error(result, culprit: str) -> None:
    """Exactly one `Error:` line, matching `culprit`, and no traceback."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert re.search(culprit, lines[0]), lines[0]
    assert "Traceback" not in result.output


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*")}


# --- model corpus through every command -------------------------------------------------------

BAD_MODELS = {
    "junk.keras": {"*": r"junk\.keras is not a Keras model file: a \.keras file is a zip"},
    "weights-only.h5": {"*": r"weights-only\.h5 holds only weights, not a model"},
    "dense.keras": {"*": "no layer with a 4-D feature-map output",
                    "filters": "has no Conv2D, DepthwiseConv2D or SeparableConv2D layer"},
    "vector.keras": {"*": r"takes input \[\(None, 10\)\].*needs an image model"},
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("model", list(BAD_MODELS))
def test_bad_model_is_one_error_line_and_leaves_no_out_folder(run_cli, corpus, tmp_path, model,
                                                              command):
    out = tmp_path / "out"
    result = run_cli(*command_args(corpus, command, "-o", out, model=model), expect=2)
    messages = BAD_MODELS[model]
    assert_one_error(result, messages.get(command, messages["*"]))
    assert not out.exists()


# --- option corpus ----------------------------------------------------------------------------

OPTION_CASES = [
    ("cam", ["--class", "7"], "Class index 7 is out of range: the model has 3 classes"),
    ("cam", ["--class", "zebra"], "Class 'zebra' is not a number and the model has no labels"),
    ("cam", ["--top-k", "10"], "--top-k 10 is out of range"),
    ("maximize", ["--class", "7"], "Class index 7 is out of range"),
    ("maximize", ["--class", "zebra"], "Class 'zebra' is not a number"),
    ("maximize", ["--filter", "99"], "--filter 99 is out of range: it asks for filter 99, but "
     "layer 'conv2' has 4 filters (0 to 3)"),
    ("maximize", ["--filter", "3-1"], "'3-1' is not a filter spec"),
    ("guided", ["--filter", "0-1,99"], "--filter 0-1,99 is out of range: it asks for filter 99, "
     "but layer 'conv2' has 4 filters"),  # the default: the last convolution of the one stage
    ("guided", ["--filter", "3-1"], "'3-1' is not a filter spec"),
    ("dream", ["-l", "conv:99"], "Channel 99 is out of range: layer 'conv' has 4 channels"),
    ("dream", ["-l", "conv:nan"], "layer spec 'conv:nan'"),
    ("dream", ["-l", "conv:-1:1.0"], "layer spec 'conv:-1:1.0'"),
    ("filters", ["--channel", "99"], "--channel 99 is out of range"),
    ("filters", ["-l", "-99"], "Layer index -99 is out of range"),
    *[(command, ["--size", "0"], "--size 0 is too small: each side must be at least 8")
      for command in ("cam", "maximize", "activations", "dream", "inversion")],
    *[(command, ["--steps", "-1"], "'--steps': -1 is not in the range")
      for command in ("maximize", "dream", "inversion")],
]


@pytest.mark.parametrize(("command", "options", "culprit"), OPTION_CASES,
                         ids=[f"{c}{' '.join(o)}" for c, o, _ in OPTION_CASES])
def test_bad_option_is_one_error_line_and_leaves_no_out_folder(run_cli, corpus, tmp_path, command,
                                                               options, culprit):
    out = tmp_path / "out"
    size = [] if "--size" in options or command == "filters" else ["--size", "16"]
    result = run_cli(*command_args(corpus, command, *options, *size, "-o", out), expect=2)
    assert_one_error(result, re.escape(culprit))
    assert not out.exists()


def test_unknown_label_of_a_labelled_model_suggests_close_ones(run_cli, corpus, tmp_path):
    image = corpus["images"] / "a.png"
    result = run_cli("cam", image, "--class", "strr", "-o", tmp_path / "out", expect=2)
    assert_one_error(result, r"Unknown class label 'strr'\. Closest: star")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_out_that_is_a_file_is_refused(run_cli, corpus, command):
    target = corpus["folder"] / "a-file"
    result = run_cli(*command_args(corpus, command, "-o", target), expect=2)
    assert_one_error(result, f"{re.escape(str(target))}.* is a file")
    assert target.read_text() == "not a folder"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="permissions do not bind root")
@pytest.mark.parametrize("command", ["activations", "maximize"])
def test_out_without_write_permission_is_refused(run_cli, corpus, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = run_cli(*command_args(corpus, command, "-o", locked / "out"), expect=2)
        assert_one_error(result, f"Cannot create output folder {re.escape(str(locked))}")
        result = run_cli(*command_args(corpus, command, "-o", locked), expect=2)
        assert_one_error(result, f"Output folder {re.escape(str(locked))} is not writable")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("command", [
    "activations", pytest.param("maximize", marks=pytest.mark.slow)])  # maximize: ~3 s
def test_out_the_system_refuses_is_one_error_line(run_cli, corpus, tmp_path, monkeypatch, command):
    """The same refusals as above where permissions do not bind (root): the system says no."""
    import cnnviz_cli.io.outputs as outputs_module

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = run_cli(*command_args(corpus, command, "-o", tmp_path / "new"), expect=2)
    assert_one_error(result, f"Cannot create output folder {re.escape(str(tmp_path / 'new'))}: "
                     "Permission denied")
    monkeypatch.undo()
    monkeypatch.setattr(outputs_module.os, "access", lambda path, mode: not mode & os.W_OK)
    result = run_cli(*command_args(corpus, command, "-o", tmp_path), expect=2)
    assert_one_error(result, f"Output folder {re.escape(str(tmp_path))} is not writable")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
@pytest.mark.parametrize("where", ["the input folder", "inside the input folder"])
def test_out_in_an_input_folder_is_refused_before_any_work(run_cli, corpus, command, where):
    images = corpus["images"]
    before = files_under(images)
    out = images if where == "the input folder" else images / "results" / "run1"
    args = [str(images) if arg == str(images / "a.png") else arg
            for arg in command_args(corpus, command, "-o", out)]
    result = run_cli(*args, expect=2)
    assert_one_error(result, f"--out {re.escape(str(out))} is {where} {re.escape(str(images))}")
    assert files_under(images) == before


def test_out_beside_an_input_folder_or_by_a_recursive_glob(run_cli, corpus, tmp_path, monkeypatch):
    images = tmp_path / "photos"
    shutil.copytree(corpus["images"], images)
    (images / "broken.png").unlink()
    sibling = tmp_path / "photos-out"  # shares a name prefix, yet is outside
    run_cli("activations", images, "-m", corpus["small"], "--preprocess", "unit", "--size", "16",
            "-o", sibling, "-q")
    assert (sibling / "a" / "activations-conv2.png").is_file()
    monkeypatch.chdir(tmp_path)  # `photos/**/*.png` searches all of photos/: out inside is refused
    result = run_cli("activations", "photos/**/*.png", "-o", "photos/out", expect=2)
    assert_one_error(result, "--out photos/out is inside the input folder photos")


@pytest.mark.parametrize("command", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in IMAGE_COMMANDS])
def test_one_bad_image_among_good_ones(run_cli, corpus, tmp_path, command):
    out = tmp_path / "out"
    args = [str(corpus["images"]) if arg == str(corpus["images"] / "a.png") else arg
            for arg in command_args(corpus, command, "--size", "16", "-o", out)]
    result = run_cli(*args, expect=1)
    broken = corpus["images"] / "broken.png"
    assert f"{broken}: not an image Pillow can read." in result.output
    assert "Traceback" not in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [item["key"] for item in manifest["inputs"]] == ["a", "b"]
    assert [failure["input"] for failure in manifest["failures"]] == [str(broken)]
    listed = {record["file"] for record in manifest["outputs"]}
    assert {file.split("/")[0] for file in listed} == {"a", "b"}
    on_disk = {file for file in files_under(out) if (out / file).is_file()}
    assert on_disk == listed | {"manifest.json", "index.html"}  # no temporary or half files


# --- spec parsers -----------------------------------------------------------------------------


# --- determinism ------------------------------------------------------------------------------

SEEDED = {
    "maximize": ["maximize", "--size", "16", "--steps", "6", "--filter", "0-1"],
    "dream": ["dream", IMG, "--size", "16", "--steps", "3", "--octaves", "2"],
    "inversion": ["reconstruct", IMG, "--size", "16", "--method", "inversion", "--steps", "6"],
}


@pytest.mark.slow  # three runs each
@pytest.mark.parametrize("command", list(SEEDED))
def test_same_seed_same_bytes_other_seed_other_pixels(run_cli, corpus, tmp_path, command):
    """Whole PNG files are compared, text chunks included: they hold the version, the command,
    the model and the file's manifest record (input path, layer, numbers), never --out, so two
    runs into different folders must agree to the byte."""
    image = str(corpus["images"] / "a.png")
    args = [image if arg == IMG else arg for arg in SEEDED[command]]

    def run(seed: int, name: str) -> dict[str, bytes]:
        out = tmp_path / name
        run_cli(*args, "-m", corpus["small"], "--preprocess", "unit", "--seed", seed, "-o", out,
                "-q")
        return {path.relative_to(out).as_posix(): path.read_bytes()
                for path in sorted(out.rglob("*.png"))}

    first, again, other = run(1, "first"), run(1, "again"), run(2, "other")
    digests = [{name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
               for files in (first, again)]
    assert digests[0] and digests[0] == digests[1]
    assert not any(str(tmp_path).encode() in data for data in first.values())
    assert other.keys() == first.keys()
    for name in first:  # every picture changes with the seed, not only its text
        pixels = [np.asarray(Image.open(io.BytesIO(files[name])))
                  for files in (first, other)]
        assert not np.array_equal(*pixels), name


# --- --max-pixels -----------------------------------------------------------------------------

def test_max_pixels_default_is_shown_and_a_refusal_names_the_limit(run_cli, corpus, tmp_path):
    from cnnviz_cli.io import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == 64_000_000
    for command in ("cam", "activations", "dream", "reconstruct"):
        help_text = " ".join(run_cli(command, "--help").output.split())
        assert "--max-pixels INTEGER RANGE" in help_text
        assert f"[default: {DEFAULT_MAX_PIXELS}; x>=1]" in help_text
    out = tmp_path / "out"
    result = run_cli(*command_args(corpus, "activations", "--max-pixels", "100", "-o", out),
                     expect=2)  # the model's own input is over the limit: refused before work
    assert "more than --max-pixels 100" in result.output and not out.exists()


# --- outputs ----------------------------------------------------------------------------------

def test_every_file_is_written_to_a_temporary_name_then_renamed(run_cli, corpus, tmp_path,
                                                                monkeypatch):
    import cnnviz_cli.io.outputs as outputs_module

    renames = []
    replace = os.replace

    def spy(source, target):
        renames.append((Path(source), Path(target)))
        replace(source, target)

    monkeypatch.setattr(outputs_module.os, "replace", spy)
    out = tmp_path / "out"
    run_cli(*command_args(corpus, "activations", "--size", "16", "-o", out, "-q"))
    written = {file for file in files_under(out) if (out / file).is_file()}
    assert {target.relative_to(out).as_posix() for _, target in renames} == written
    for source, target in renames:
        assert source.parent == target.parent and source.name.startswith(f".{target.name}.")
        assert source.suffix == ".tmp" and not source.exists()


def test_same_stem_in_two_folders_gets_two_outputs(run_cli, corpus, tmp_path):
    for folder, colour in (("left", "red"), ("right", "blue")):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (12, 12), colour).save(tmp_path / folder / "photo.png")
    out = tmp_path / "out"
    run_cli("activations", tmp_path / "left", tmp_path / "right" / "photo.png", "-m",
            corpus["small"], "--preprocess", "unit", "--size", "16", "-o", out, "-q")
    manifest = json.loads((out / "manifest.json").read_text())
    keys = {item["input"]: item["key"] for item in manifest["inputs"]}
    assert len(keys) == 2 and len(set(keys.values())) == 2
    assert all(key.startswith("photo-") for key in keys.values())
    for record in manifest["outputs"]:
        assert record["file"].split("/")[0] == keys[record["input"]]
    assert len(manifest["outputs"]) == 2 * 2  # two images x one stage x (grid, overlay)


@pytest.mark.slow  # three commands
def test_nothing_is_written_outside_out(run_cli, corpus, tmp_path, monkeypatch):
    images = tmp_path / "images"
    shutil.copytree(corpus["images"], images)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    def snapshot() -> dict:
        return {path: (path.stat().st_size, path.stat().st_mtime_ns)
                for folder in (images, work) for path in [folder, *folder.rglob("*")]}

    before, top = snapshot(), set(tmp_path.iterdir())
    out = tmp_path / "out"
    for command in ("activations", "dream", "guided"):
        args = [str(images) if arg == str(corpus["images"] / "a.png") else arg
                for arg in command_args(corpus, command, "--size", "16", "-o", out / command)]
        run_cli(*args, "-q", expect=1)  # broken.png fails; the others are written
    assert snapshot() == before
    assert set(tmp_path.iterdir()) == top | {out}
