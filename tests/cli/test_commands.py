"""Each visualising command but cam end to end (activations, filters, maximize, dream,
reconstruct): the files, the manifest, and the one-sentence refusals of its options."""

import json

import numpy as np
import pytest
from PIL import Image

import cnnviz_cli


@pytest.mark.slow  # three runs
def test_factorize_writes_overlays_and_vectors_that_apply_again(run_cli, sample_dir, tmp_path):
    out = tmp_path / "fit"
    run_cli("-q", "activations", sample_dir, "-l", "block4_conv", "--factorize", "3", "-o", out)
    vectors = np.load(out / "concepts-block4_conv.npy")
    assert vectors.shape == (3, 128) and vectors.min() >= 0
    for name in ("circle", "star", "pair"):
        assert (out / name / "concepts-block4_conv.png").is_file()
    result = cnnviz_cli.activations("demo", str(sample_dir / "pair.png"), layers=["block4_conv"],
                                    concepts=out / "concepts-block4_conv.npy")
    fitted = cnnviz_cli.activations("demo", str(sample_dir), layers=["block4_conv"], factorize=3)
    np.testing.assert_allclose(fitted.concept_vectors["block4_conv"], vectors, rtol=1e-5)
    pair = next(item for item in fitted.items if item.image.key == "pair")
    ours = result.items[0].concepts["block4_conv"].reshape(-1, 3)
    theirs = pair.concepts["block4_conv"].reshape(-1, 3)
    assert np.corrcoef(ours[:, 0], theirs[:, 0])[0, 1] > 0.9
    assert "concepts_error/block4_conv" in fitted.metrics


@pytest.mark.parametrize("arguments, words", [
    (["--factorize", "200"], "between 1 and the layer's 128 channels"),
    (["--factorize", "2", "--shard", "1/2"], "cannot run in shards"),
    (["--concepts", "WRONG"], "(K, 128) array"),
    (["-l", "block1_conv1", "-l", "block4_conv", "--concepts", "WRONG"], "applies to one layer"),
])
def test_bad_concept_options_are_one_sentence(run_cli, sample_dir, tmp_path, arguments, words):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((2, 5), np.float32))
    arguments = [str(wrong) if word == "WRONG" else word for word in arguments]
    if "-l" not in arguments:
        arguments = ["-l", "block4_conv", *arguments]
    result = run_cli("activations", sample_dir / "star.png", *arguments, "-o", tmp_path / "o",
                     expect=2)
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_filters_writes_grid_pngs_gif_and_manifest(run_cli, tmp_path, vgg_style):
    path = tmp_path / "vgg.keras"
    vgg_style.save(path)
    out = tmp_path / "out"
    run_cli("maximize", "-m", path, "--preprocess", "symmetric", "-l", "block1_conv2",
            "--filter", "1,3-4", "--steps", "8", "--gif", "4", "-o", out, "-q")
    for name in ("maximize-block1_conv2-grid.png", "maximize-block1_conv2.gif",
                 *(f"maximize-block1_conv2/filter-{i}.png" for i in (1, 3, 4))):
        assert (out / name).is_file(), name
    records = json.loads((out / "manifest.json").read_text())["outputs"]
    single = [r for r in records if r["file"].endswith("filter-3.png")][0]
    assert single["target"] == 3 and single["activation"] > single["noise_activation"]
    for spec, message in (("7-x", "expected"), ("16", "has 16 filters")):
        result = run_cli("maximize", "-m", path, "-l", "block1_conv2", "--filter", spec,
                         "-o", out, expect=2)
        assert message in result.output


@pytest.mark.slow  # an optimisation
def test_cli_classes_by_label(run_cli, tmp_path):
    out = tmp_path / "out"
    run_cli("maximize", "--class", "star", "--class", "0", "--steps", "4", "--size", "32",
            "-o", out, "-q")
    assert (out / "maximize-class-star.png").is_file()
    assert (out / "maximize-class-circle.png").is_file()
    assert (out / "maximize-classes-grid.png").is_file()
    result = run_cli("maximize", "--class", "hexagon", "-o", out, expect=2)
    assert "hexagon" in result.output


@pytest.mark.parametrize("arguments, words", [
    (["--objective", "direction", "--direction-vector", "WRONG"], "vector of 64 values"),
    (["--position", "1,1"], "--position applies only with --objective neuron"),
    (["--objective", "neuron", "--position", "99,1"], "outside the 16x16 feature map"),
    (["--objective", "direction"], "give --direction-vector"),
])
def test_bad_objectives_are_one_sentence(run_cli, tmp_path, arguments, words):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones(5, np.float32))
    arguments = [str(wrong) if word == "WRONG" else word for word in arguments]
    result = run_cli("maximize", "-l", "block3_conv2", "--steps", "2", "--size", "64", *arguments,
                     "-o", tmp_path / "o", expect=2)
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_dream_command_writes_dream_blend_and_gif(run_cli, sample_dir, tmp_path):
    out = tmp_path / "out"
    run_cli("dream", sample_dir / "star.png", "-l", "block3_conv2", "-l", "block4_conv:0.5",
            "--octaves", "2", "--steps", "4", "--blend", "0.5", "--gif", "1", "-o", out)
    original = np.asarray(Image.open(sample_dir / "star.png").convert("RGB"))
    dreamed = np.asarray(Image.open(out / "star" / "dream.png"))
    blended = np.asarray(Image.open(out / "star" / "dream-blend.png"))
    assert dreamed.shape == original.shape
    np.testing.assert_allclose(blended, 0.5 * dreamed + 0.5 * original, atol=1)
    assert Image.open(out / "star" / "dream.gif").n_frames == 2 * (4 + 1)  # octaves x frames
    record = json.loads((out / "manifest.json").read_text())["outputs"][0]
    assert record["objective_after"] > record["objective_before"] > 0
    assert [layer["weight"] for layer in record["layers"]] == [1.0, 0.5]


def test_dream_refuses_an_unknown_layer(run_cli, sample_dir, tmp_path):
    result = run_cli("dream", sample_dir, "-l", "block9", "-o", tmp_path, expect=2)
    assert "No such layer" in result.output


@pytest.mark.slow
def test_reconstruct_command_projections_and_inversion(run_cli, sample_dir, tmp_path):
    out = tmp_path / "out"
    run_cli("reconstruct", sample_dir / "star.png", "--method", "deconvnet", "-l", "block3_conv2",
            "--top-channels", "3", "-o", out)
    grid = Image.open(out / "star" / "reconstruct-deconvnet-block3_conv2.png")
    assert grid.width > 4 * 96
    record = json.loads((out / "manifest.json").read_text())["outputs"][0]
    assert len(record["channels"]) == 3 and record["activations"] == sorted(
        record["activations"], reverse=True)
    out = tmp_path / "inversion"  # another method: another folder (one run per folder)
    run_cli("reconstruct", sample_dir / "star.png", "--method", "inversion", "-l", "block1_conv1",
            "-l", "block2_conv2", "--steps", "20", "-o", out)
    record = json.loads((out / "manifest.json").read_text())["outputs"][0]
    assert set(record["feature_errors"]) == {"block1_conv1", "block2_conv2"}
    assert Image.open(out / "star" / "reconstruct-inversion.png").width > 3 * 96


def test_reconstruct_refuses_a_filter_the_layer_does_not_have(run_cli, sample_dir, tmp_path):
    result = run_cli("reconstruct", sample_dir, "-l", "block1_conv1", "--filter", "99",
                     "-o", tmp_path, expect=2)
    assert "--filter 99 is out of range" in result.output

