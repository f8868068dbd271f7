"""Ground truth per image (--targets), agreement with a baseline run, and gates (exit 3)."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnviz_cli.api.gates import Gate, evaluate_gates

LABELS = ["cat", "dog", "fox"]


# ---------- region scores ----------


# ---------- agreement with another map ----------


# ---------- the targets file ----------


# ---------- gates ----------

def test_gates_per_method_mean_and_each():
    records = [
        {"kind": "overlay", "method": "gradcam", "insertion_auc": 0.8, "deletion_auc": 0.1},
        {"kind": "heatmap", "method": "gradcam", "insertion_auc": 0.0},  # not counted twice
        {"kind": "overlay", "method": "gradcam", "insertion_auc": 0.5, "deletion_auc": 0.3},
        {"kind": "overlay", "method": "scorecam", "insertion_auc": 0.9},
    ]
    rows = evaluate_gates([Gate("insertion", 0.6), Gate("insertion", 0.6, each=True),
                           Gate("deletion", 0.25)], records)
    found = {(row["metric"], row["rule"], row["method"]): row for row in rows}
    assert found["insertion", "mean ≥ 0.6", "gradcam"]["value"] == pytest.approx(0.65)
    assert found["insertion", "mean ≥ 0.6", "gradcam"]["passed"]
    each = found["insertion", "each ≥ 0.6", "gradcam"]
    assert (each["value"], each["short"], each["passed"]) == (0.5, 1, False)
    assert found["deletion", "mean ≤ 0.25", "gradcam"]["passed"]  # 0.2
    no_values = found["deletion", "mean ≤ 0.25", "scorecam"]
    assert (no_values["value"], no_values["maps"], no_values["passed"]) == (None, 0, False)


# ---------- the command ----------

def _small_model(keras, seed):
    """conv 'conv' (8 filters, ReLU) -> GAP -> Dense(3) with positive class weights, so that
    every class has a GradCAM map that is not zero."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(seed)
    weights = [0.5 * rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]
    weights[2] = np.abs(weights[2])
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def setup(keras, sample_dir, tmp_path_factory):
    """Two models with different weights (A, B), labels, a targets file with box and mask."""
    folder = tmp_path_factory.mktemp("gates")
    _small_model(keras, 1).save(folder / "a.keras")
    _small_model(keras, 2).save(folder / "b.keras")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    mask = np.zeros((96, 96), np.uint8)
    mask[:48, :48] = 255
    Image.fromarray(mask).save(folder / "star-mask.png")
    (folder / "targets.csv").write_text(
        f"image,class,mask,x0,y0,x1,y1\n{sample_dir / 'circle.png'},dog,,0,0,96,96\n"
        f"star,fox,{folder / 'star-mask.png'},,,,\npair.png,cat,,,,,\nmissing.png,cat,,,,,\n"
    )
    return {"A": folder / "a.keras", "B": folder / "b.keras", "folder": folder}


def _cam(setup, sample_dir, out, *extra, model="A", expect=0):
    """`cnnviz cam` on the three sample images at 32 px, GradCAM and LayerCAM."""
    from click.testing import CliRunner

    from cnnviz_cli.cli import cli

    args = ["cam", sample_dir, "-m", setup[model], "--preprocess", "unit", "-l", "conv",
            "--labels", setup["folder"] / "labels.txt", "--size", "32", "--method",
            "gradcam,layercam", "-o", out, *extra]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def _heatmaps(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest, {(r["file"].split("/")[0], r["method"]): r
                      for r in manifest["outputs"] if r["kind"] == "overlay"}


@pytest.fixture(scope="module")
def first_run(setup, sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("first")
    result = _cam(setup, sample_dir, out, "--targets", setup["folder"] / "targets.csv",
                  "--save-npy", "--fail-under", "energy=0.1")
    return out, result.output


def test_targets_set_classes_and_score_regions(first_run):
    out, output = first_run
    manifest, heatmaps = _heatmaps(out)
    assert "1 row(s) of --targets name no input image" in output and "missing.png" in output
    assert manifest["metrics"]["targets without an image"][0]["image"] == "missing.png"
    assert {key: record["label"] for (key, _), record in heatmaps.items()} == {
        "circle": "dog", "star": "fox", "pair": "cat"}
    for method in ("gradcam", "layercam"):
        circle, star, pair = (heatmaps[key, method] for key in ("circle", "star", "pair"))
        heat = np.load(out / star["file"].replace(".png", ".npy"))  # 32x32: the input's size
        assert star["region_energy"] == pytest.approx(heat[:16, :16].sum() / heat.sum(),
                                                      rel=1e-5)
        peak = np.unravel_index(heat.argmax(), heat.shape)
        assert star["pointing_hit"] == (peak[0] < 16 and peak[1] < 16)
        assert circle["region_energy"] == pytest.approx(1.0) and circle["pointing_hit"]
        assert "region_energy" not in pair and "pointing_hit" not in pair
    assert all(row["passed"] for row in manifest["metrics"]["gates"])
    page = (out / "index.html").read_text()
    assert "All 2 gates passed" in page and page.index("gates passed") < page.index("Options")


def test_baseline_of_the_same_run_agrees_perfectly(setup, sample_dir, first_run, tmp_path):
    out = tmp_path / "again"
    result = _cam(setup, sample_dir, out, "--targets", setup["folder"] / "targets.csv",
                  "--baseline", first_run[0], "--fail-under", "baseline-corr=0.999",
                  "--fail-under-each", "baseline-iou=1")
    _, heatmaps = _heatmaps(out)
    assert len(heatmaps) == 6
    for record in heatmaps.values():
        assert record["baseline_corr"] == pytest.approx(1.0)
        assert record["baseline_iou"] == 1.0
    assert "pass" in result.output and "FAIL" not in result.output


def test_other_model_agrees_less_and_fails_the_gate(setup, sample_dir, first_run, tmp_path):
    out = tmp_path / "other"
    result = _cam(setup, sample_dir, out, "--targets", setup["folder"] / "targets.csv",
                  "--baseline", first_run[0], "--fail-under", "baseline-corr=0.999",
                  "--fail-under", "baseline-iou=0", model="B", expect=3)
    manifest, heatmaps = _heatmaps(out)
    correlations = [record["baseline_corr"] for record in heatmaps.values()]
    assert len(correlations) == 6 and max(correlations) < 0.99
    assert min(record["baseline_iou"] for record in heatmaps.values()) < 1.0
    assert "FAIL" in result.output and "2 of 4 gate(s) failed" in result.output
    assert [row["passed"] for row in manifest["metrics"]["gates"]] == [False, False, True, True]
    assert "2 of 4 gates failed" in (out / "index.html").read_text()


def test_other_class_has_no_counterpart(setup, sample_dir, first_run, tmp_path):
    out = tmp_path / "other-class"
    result = _cam(setup, sample_dir, out, "--class", "cat", "--baseline", first_run[0],
                  "--fail-under", "baseline-iou=0.5")
    _, heatmaps = _heatmaps(out)
    for method in ("gradcam", "layercam"):
        assert heatmaps["pair", method]["baseline_iou"] == 1.0  # cat in the first run too
        assert heatmaps["star", method]["baseline"] == "missing"  # fox in the first run
        assert "baseline_iou" not in heatmaps["circle", method]
    assert "4 heatmap(s) have no counterpart in --baseline" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("--fail-under", "accuracy=0.5"), "unknown metric 'accuracy'"),
        (("--fail-under", "deletion=0.2"), "use --fail-over deletion=0.2"),
        (("--fail-over-each", "insertion=0.2"), "use --fail-under-each insertion=0.2"),
        (("--fail-under", "insertion=high"), "expected METRIC=NUMBER"),
        (("--fail-under", "insertion=0.5"), "--fail-under insertion needs --metrics"),
        (("--fail-under", "pointing=0.9"), "needs --targets with masks or boxes"),
        (("--fail-under", "baseline-iou=0.9"), "needs --baseline"),
        (("--baseline", "{out}"), "--baseline must be another folder than --out"),
        (("--baseline", "{images}"), "No manifest.json in"),
    ],
)
def test_gate_and_baseline_errors_exit_2_before_any_work(setup, sample_dir, tmp_path, args,
                                                         message):
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(out=out, images=sample_dir) for a in args]
    result = _cam(setup, sample_dir, out, *args, expect=2)
    assert message in result.output and "Traceback" not in result.output
    assert not (out / "manifest.json").exists()


def test_baseline_without_raw_maps_and_bad_targets_exit_2(setup, sample_dir, tmp_path):
    plain = tmp_path / "plain"
    _cam(setup, sample_dir, plain)
    result = _cam(setup, sample_dir, tmp_path / "x", "--baseline", plain, expect=2)
    assert "lists no raw heatmaps" in result.output and "--save-npy" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("star,wolf\n")
    result = _cam(setup, sample_dir, tmp_path / "y", "--targets", bad, expect=2)
    assert f"{bad} row 1: Unknown class label 'wolf'" in result.output
