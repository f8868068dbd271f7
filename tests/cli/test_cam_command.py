"""`cnnviz cam` end to end: maps, panels, metrics and rankings in the manifest and the report,
and the one-sentence refusals of its options."""

import json

import numpy as np
import pytest
from PIL import Image

SIZE = 6  # the flat model's input side


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def model_files(flat_model, keras, tmp_path_factory):
    """The flat model, labels for it, and a model without any feature map, on disk."""
    folder = tmp_path_factory.mktemp("cam-models")
    flat_model.save(folder / "flat.keras")
    (folder / "labels.txt").write_text("cat\ndog\nfox\n")
    inputs = keras.Input((6, 6, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).save(folder / "dense.keras")
    return folder


def test_cam_command_writes_maps_panels_and_metrics(run_cli, model_files, sample_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("cam", sample_dir / "pair.png", sample_dir / "star.png", "-m",
                     model_files / "flat.keras", "--labels", model_files / "labels.txt",
                     "--method", "gradcam,scorecam", "--class", "fox", "--top-k", "1",
                     "--metrics", "--metric-steps", "4", "--save-npy", "-o", out, "--json")
    manifest = json.loads(result.stdout)
    overlays = [r for r in manifest["outputs"] if r["kind"] == "overlay"]
    assert {r["method"] for r in overlays} == {"gradcam", "scorecam"}
    assert {r["label"] for r in overlays} >= {"fox"}
    for record in overlays:
        assert 0.0 <= record["deletion_auc"] <= 1.0 and 0.0 <= record["insertion_auc"] <= 1.0
        assert set(record["heatmap"]) == {"max", "mean", "peak", "coverage"}
        raw = np.load(out / record["file"].replace(".png", ".npy"))
        assert raw.shape == (SIZE, SIZE) and raw.max() == pytest.approx(record["heatmap"]["max"])
    assert (out / "pair" / "cam-panel-fox.png").is_file()
    assert (out / "star" / "cam-gradcam-fox-heatmap.png").is_file()


def test_manifest_and_report_give_probabilities_and_the_faithfulness_ranking(
    run_cli, model_files, sample_dir, tmp_path
):
    out = tmp_path / "out"
    methods = ["gradcam", "layercam", "eigencam"]
    result = run_cli("cam", sample_dir / "pair.png", sample_dir / "star.png", "-m",
                     model_files / "flat.keras", "--preprocess", "unit", "--method",
                     ",".join(methods), "--top-k", "3", "--metrics", "--metric-steps", "4",
                     "-o", out, "--json")
    manifest = json.loads(result.stdout)
    overlays = [r for r in manifest["outputs"] if r["kind"] == "overlay"]
    for image in ("pair", "star"):  # every class of the image: probabilities = softmax of logits
        records = sorted((r for r in overlays if r["method"] == "gradcam"
                          and r["input"].endswith(f"{image}.png")), key=lambda r: r["class"])
        assert [r["class"] for r in records] == [0, 1, 2]
        assert {r["score_kind"] for r in records} == {"logit"}
        np.testing.assert_allclose([r["probability"] for r in records],
                                   softmax(np.array([r["score"] for r in records])), rtol=1e-5,
                                   atol=1e-7)

    means = {m: np.mean([[r["deletion_auc"], r["insertion_auc"]] for r in overlays
                         if r["method"] == m], axis=0) for m in methods}
    order = sorted(methods, key=lambda m: means[m][0] - means[m][1])
    ranking = manifest["metrics"]["faithfulness"]
    assert [row["method"] for row in ranking] == order
    assert [row["rank"] for row in ranking] == [1, 2, 3]
    for row in ranking:
        deletion, insertion = means[row["method"]]
        assert row["maps"] == 6
        assert row["deletion_auc"] == pytest.approx(deletion, rel=1e-6)
        assert row["insertion_auc"] == pytest.approx(insertion, rel=1e-6)
        assert row["insertion_minus_deletion"] == pytest.approx(insertion - deletion, abs=1e-6)
    assert "Faithfulness" in result.stderr and ranking[0]["method"] in result.stderr

    page = (out / "index.html").read_text()
    table = page[page.index("Faithfulness ranking"):]
    table = table[: table.index("</table>")]
    assert [table.index(f">{m}<") for m in order] == sorted(table.index(f">{m}<") for m in order)
    top = max((r for r in overlays if r["input"].endswith("star.png")),
              key=lambda r: r["probability"])
    assert f"p {top['probability']:.2f} · logit {top['score']:.2f}" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (("-m", "flat.keras", "--class", "7"), "Class index 7 is out of range"),
        (("-m", "flat.keras", "--labels", "labels.txt", "--class", "wolf"), "Unknown class label"),
        (("-m", "flat.keras", "-l", "predictions"), "not a (batch, height, width, channels)"),
        (("-m", "dense.keras",), "no layer with a 4-D feature-map output"),
        (("-m", "flat.keras", "--method", "gradcan"), "Unknown CAM method 'gradcan'"),
        (("-m", "flat.keras", "--output", "2"), "No model output '2'"),
    ],
)
def test_cam_errors_exit_2(run_cli, model_files, sample_dir, tmp_path, args, message):
    args = [str(model_files / a) if a.endswith((".keras", ".txt")) else a for a in args]
    result = run_cli("cam", sample_dir / "star.png", *args, "-o", tmp_path, expect=2)
    assert message in result.output and "Traceback" not in result.output


def test_help_and_choices_list_every_method_and_baseline():
    from click.testing import CliRunner

    from cnnviz_cli.cli import cli
    from cnnviz_cli.techniques.cam import methods

    text = " ".join(CliRunner().invoke(cli, ["cam", "--help"]).output.split())
    assert ", ".join(methods()) in text.replace("gradient- input", "gradient-input")
    assert "--ig-baseline [black|blur|noise]" in text


def test_cli_attributions_with_metrics(run_cli, sample_dir, small_model_file, tmp_path):
    out = tmp_path / "out"
    result = run_cli("-q", "cam", sample_dir / "star.png", "-m", small_model_file,
                     "--preprocess", "unit", "-l", "conv", "--class", "1",
                     "--method", "saliency,integrated-gradients", "--ig-steps", "8",
                     "--metrics", "-o", out, "--json")
    manifest = json.loads(result.output)
    files = {record["file"]: record for record in manifest["outputs"]}
    for method in ("saliency", "integrated-gradients"):
        for suffix in ("", "-heatmap"):
            name = f"star/cam-{method}-class_1{suffix}.png"
            assert name in files and (out / name).is_file()
            assert 0 <= files[name]["deletion_auc"] <= 1 and 0 <= files[name]["insertion_auc"] <= 1
            assert files[name]["heatmap"]["max"] > 0
            assert Image.open(out / name).size == (96, 96)  # the input's own resolution
    assert (out / "star/cam-panel-class_1.png").is_file()


@pytest.mark.slow
def test_cam_command_writes_occlusion_and_rise_maps(run_cli, tmp_path):
    out = tmp_path / "out"
    run_cli("cam", "sample_images/star.png", "--method", "occlusion,rise", "--patch", "32",
            "--stride", "32", "--fill", "blur", "--masks", "40", "--seed", "1", "--save-npy",
            "-q", "-o", out)
    entries = json.loads((out / "manifest.json").read_text())["outputs"]
    methods = {entry["method"] for entry in entries if entry.get("kind") == "map"}
    assert methods == {"occlusion", "rise"}
    heat = np.load(next(out.glob("star/cam-occlusion-*.npy")))
    assert heat.shape == (128, 128) and heat.max() > 0


@pytest.mark.parametrize(("args", "culprit"), [
    (["--patch", "8"], "--patch applies only when --method includes occlusion"),
    (["--fill", "blur"], "--fill applies only when --method includes occlusion"),
    (["--masks", "8"], "--masks applies only when --method includes rise"),
    (["--method", "occlusion", "--seed", "3"], "--seed applies only when a method or metric"),
])
def test_perturbation_options_without_their_method_are_refused(run_cli, args, culprit):
    result = run_cli("cam", "sample_images/star.png", *args, expect=2)
    assert culprit in result.output


@pytest.mark.slow  # over ~3 s
def test_cam_records_tables_and_gates_trust_metrics(run_cli, sample_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("cam", sample_dir / "star.png", "--size", "64", "--method",
                     "gradcam,saliency", "--metric", "sparseness", "--metric", "complexity",
                     "--sanity", "--seed", "3", "--fail-under", "sparseness=0.99", "--fail-over",
                     "randomisation=0.9", "-o", out, expect=3)
    assert "Trust metrics" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    overlays = [r for r in manifest["outputs"] if r["kind"] == "overlay"]
    assert {r["method"] for r in overlays} == {"gradcam", "saliency"}
    for row in manifest["metrics"]["trust"]:
        mine = [r for r in overlays if r["method"] == row["method"]]
        for name, field in (("sparseness", "sparseness"), ("complexity", "complexity"),
                            ("randomisation", "randomisation")):
            assert row[name] == pytest.approx(np.mean([r[field] for r in mine]))
    gates = {(g["metric"], g["method"]): g["passed"] for g in manifest["metrics"]["gates"]}
    assert not gates[("sparseness", "gradcam")] and not gates[("sparseness", "saliency")]
    sanity = [r for r in manifest["outputs"] if r["kind"] == "sanity"]
    assert len(sanity) == 1 and len(sanity[0]["layers"]) == 7
    assert (out / sanity[0]["file"]).is_file()


@pytest.mark.parametrize("args, message", [
    (["--metric", "roads"], "Invalid value for '--metric'"),
    (["--fail-over", "stability=0.5"], "--fail-over stability needs --metric stability"),
    (["--metric", "road", "--fail-under", "stability=0.5"], "stability is better when lower"),
    (["--metric", "sparseness", "--seed", "3"], "--seed applies only when"),
])
def test_bad_metric_options_exit_2_before_any_work(run_cli, sample_dir, tmp_path, args,
                                                   message):
    out = tmp_path / "out"
    result = run_cli("cam", sample_dir / "star.png", *args, "-o", out, expect=2)
    assert message in result.output and "Traceback" not in result.output
    assert not (out / "manifest.json").exists()

