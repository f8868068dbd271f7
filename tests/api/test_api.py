"""The Python API: cheap import, one code path with the commands, inputs, errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnviz_cli
from cnnviz_cli.errors import CnnvizError

SMALL = ["--size", "64"]


def test_import_and_public_names_need_no_tensorflow():
    code = ("import sys, cnnviz_cli\n"
            "[getattr(cnnviz_cli, name) for name in cnnviz_cli.__all__]\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == "[]"
    assert {"cam", "activations", "filters", "maximize", "dream", "reconstruct", "load_model",
            "CamResult", "CnnvizError", "InputError"} <= set(cnnviz_cli.__all__)
    with pytest.raises(AttributeError):
        cnnviz_cli.Run  # noqa: B018 — private names are not reachable


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.suffix in (".png", ".gif", ".npy")}


def _records(folder: Path) -> list[dict]:
    return json.loads((folder / "manifest.json").read_text())["outputs"]


CASES = {
    "activations": (["-l", "block1_conv1", "-l", "block3_conv2", *SMALL],
                    {"layers": ["block1_conv1", "block3_conv2"], "size": 64}),
    "cam": (["--method", "gradcam,scorecam", "--top-k", "2", "--save-npy", "--metrics",
             "--metric-steps", "4", *SMALL],
            {"methods": ["gradcam", "scorecam"], "top_k": 2, "save_npy": True, "metrics": True,
             "metric_steps": 4, "size": 64}),
    "dream": (["-l", "block3_conv2", "--steps", "2", "--octaves", "1", "--blend", "0.5"],
              {"layers": ["block3_conv2"], "steps": 2, "octaves": 1, "blend": 0.5}),
    "reconstruct": (["--method", "inversion", "-l", "block1_conv1", "--steps", "4", *SMALL],
                    {"method": "inversion", "layers": ["block1_conv1"], "steps": 4,
                     "size": 64}),
    "maximize": (["-l", "block3_conv2", "--filter", "0-2", "--steps", "4", "--size", "32"],
                 {"layer": "block3_conv2", "filters": "0-2", "steps": 4, "size": 32}),
    "filters": (["-l", "block1_conv1", "--order", "norm"],
                {"layer": "block1_conv1", "order": "norm"}),
}
WITHOUT_IMAGES = ("maximize", "filters")
SLOW = ("cam", "dream", "reconstruct", "maximize")  # the fast tier runs activations and filters


@pytest.mark.parametrize("command", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in CASES])
def test_command_and_api_write_the_same_bytes(command, run_cli, sample_dir, tmp_path):
    arguments, keywords = CASES[command]
    images = [] if command in WITHOUT_IMAGES else [str(sample_dir / "star.png"),
                                                    str(sample_dir / "pair.png")]
    shell, saved, streamed = tmp_path / "shell", tmp_path / "saved", tmp_path / "streamed"
    run_cli("-q", command, *images, *arguments, "-o", shell)
    function = getattr(cnnviz_cli, command)
    positional = ("demo",) if command in WITHOUT_IMAGES else ("demo", images)
    result = function(*positional, **keywords)
    result.save(saved)
    function(*positional, **keywords, out=streamed)
    expected = _files(shell)
    assert expected and _files(saved) == expected and _files(streamed) == expected
    assert _records(saved) == _records(shell) == result.records() == _records(streamed)
    assert result._repr_png_().startswith(b"\x89PNG")


@pytest.mark.slow  # over ~3 s
def test_cam_arrays_are_the_maps_the_command_saves(run_cli, sample_dir, tmp_path):
    run_cli("-q", "cam", sample_dir / "star.png", "--method", "gradcam,layercam", "--save-npy",
            "-o", tmp_path)
    result = cnnviz_cli.cam("demo", str(sample_dir / "star.png"),
                            methods=["gradcam", "layercam"])
    (maps,) = result.maps
    for method, heat in maps.items():
        slug = method.replace("+", "p")
        saved = np.load(tmp_path / "star" / f"cam-{slug}-{result.labels[0]}.npy")
        np.testing.assert_array_equal(saved, heat)
    assert result.probabilities[0] == pytest.approx(result.records()[0]["probability"])


@pytest.mark.slow  # over ~3 s
def test_every_kind_of_image_input_gives_the_same_maps(sample_dir):
    path = sample_dir / "star.png"
    pixels = np.asarray(Image.open(path).convert("RGB"))
    from_path = cnnviz_cli.activations("demo", str(path), layers=["block1_conv1"]).maps[0]
    inputs = [Image.open(path), pixels, pixels[None], [pixels, pixels], Path(path)]
    for given in inputs:
        result = cnnviz_cli.activations("demo", given, layers=["block1_conv1"])
        for maps in result.maps:
            np.testing.assert_allclose(maps["block1_conv1"], from_path["block1_conv1"],
                                       rtol=1e-5, atol=1e-6)
    listed = cnnviz_cli.activations("demo", [pixels, str(path)], layers=["block1_conv1"])
    assert [item.image.key for item in listed.items] == ["image-0", "star"]


def test_a_model_in_memory_is_used_as_it_is(tiny_conv_model):
    before = [weight.copy() for weight in tiny_conv_model.get_weights()]
    pixels = np.random.default_rng(0).integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    result = cnnviz_cli.cam(tiny_conv_model, pixels, layer="conv", preprocess="unit",
                            labels=["a", "b", "c"])
    logits = _tiny_logits(tiny_conv_model, pixels / 255.0)
    assert result.classes == list(logits.argmax(axis=1))
    np.testing.assert_allclose(result.scores, logits.max(axis=1), rtol=1e-4)
    assert set(result.labels) <= {"a", "b", "c"}
    for old, new in zip(before, tiny_conv_model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert result.model["source"] == f"in memory: {tiny_conv_model.name}"


def _tiny_logits(model, x: np.ndarray) -> np.ndarray:
    """The tiny model's pre-softmax logits by hand: ReLU conv (same), mean, dense."""
    kernel, bias = (w.numpy() for w in model.get_layer("conv").weights)
    dense, offset = (w.numpy() for w in model.get_layer("predictions").weights)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    maps = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            maps[:, i, j] = np.tensordot(padded[:, i:i + 3, j:j + 3], kernel, 3)
    pooled = np.maximum(maps + bias, 0).mean(axis=(1, 2))
    return pooled @ dense + offset


@pytest.mark.parametrize("arguments, keywords", [
    (["-l", "nope"], {"layer": "nope"}),
    (["--class", "hexagon"], {"classes": ["hexagon"]}),
    (["--method", "gradcam,nope"], {"methods": ["gradcam", "nope"]}),
])
def test_errors_are_the_commands_sentences(run_cli, sample_dir, arguments, keywords):
    image = str(sample_dir / "star.png")
    printed = run_cli("cam", image, *arguments, expect=2).output.strip().splitlines()[-1]
    with pytest.raises(CnnvizError) as caught:
        cnnviz_cli.cam("demo", image, **keywords)
    assert printed.removeprefix("Error: ").endswith(str(caught.value))


def test_a_bad_image_in_a_list_is_named_and_the_others_are_kept(sample_dir, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    good = np.zeros((20, 20, 3), np.uint8)
    result = cnnviz_cli.activations(
        "demo", [str(sample_dir / "star.png"), str(broken), good, np.zeros((3, 3), np.float32)],
        layers=["block1_conv1"],
    )
    assert [item.image.name for item in result.items] == [str(sample_dir / "star.png"),
                                                          "image-2"]
    assert [failure["input"] for failure in result.failures] == [str(broken), "image-3"]
    assert "float32" in result.failures[1]["error"]


def test_a_result_written_while_computed_keeps_no_pictures(sample_dir, tmp_path):
    result = cnnviz_cli.activations("demo", str(sample_dir), layers=["block1_conv1"],
                                    out=tmp_path / "out")
    assert len(result) == 0 and len(result.records()) == 2 * 3
    with pytest.raises(CnnvizError, match="keeps no pictures"):
        result.pictures()
    assert result._repr_png_() is None  # Jupyter falls back to the text repr
    kernels = cnnviz_cli.filters("demo", out=tmp_path / "filters")
    assert kernels.kernels.shape[0] == len(kernels.records()[0]["filters"])


def test_resolve_metrics():
    from cnnviz_cli.api.trust import resolve_metrics

    assert resolve_metrics(True) == ["deletion", "insertion"]
    assert resolve_metrics(["Road", "insertion"], sanity=True) == [
        "road", "insertion", "deletion", "randomisation"]
    with pytest.raises(CnnvizError, match="Unknown metric 'roads'"):
        resolve_metrics(["roads"])


def test_api_takes_metric_names_and_refuses_unknown_ones(sample_dir):
    import cnnviz_cli

    result = cnnviz_cli.cam("demo", sample_dir / "pair.png", methods=["gradcam", "eigencam"],
                            top_k=2, metric=["complexity"], size=64)
    for row in result.trust:
        values = [record["complexity"] for record in result.records()
                  if record["kind"] == "overlay" and record["method"] == row["method"]]
        assert row["maps"] == 2 and row["complexity"] == pytest.approx(np.mean(values))
    with pytest.raises(CnnvizError, match="--metric entropy is not one of road, "):
        cnnviz_cli.cam("no-such-model", sample_dir / "pair.png", metric=["entropy"])
    with pytest.raises(CnnvizError, match="--metrics is a flag"):
        cnnviz_cli.cam("demo", sample_dir / "pair.png", metrics=["road"])


def test_factorize_and_concepts_together_are_refused(sample_dir):
    with pytest.raises(CnnvizError, match="not both"):
        cnnviz_cli.activations("demo", str(sample_dir / "star.png"), layers=["block4_conv"],
                               factorize=2, concepts=np.ones((2, 128)))

