"""`maximize --from-images`: dataset examples against a brute-force pass over the same images."""

import json

import numpy as np
import pytest

LAYER, SIZE, TOP, FILTERS = "block2_conv2", 32, 3, [0, 1, 2, 5]


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory):
    """Eleven 32x32 images: smooth random blobs, so no two activations tie."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("tiny_images")
    rng = np.random.default_rng(3)
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    for index in range(11):
        centre = rng.uniform(4, SIZE - 4, 2)
        blob = np.exp(-((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) / 30.0)
        colour = rng.uniform(0, 255, 3)
        noise = rng.uniform(0, 60, (SIZE, SIZE, 3))
        pixels = np.clip(blob[..., None] * colour + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index:02d}.png")
    return folder


def brute_force(resolved, folder) -> tuple[dict, int]:
    """Every image's feature maps at once: per filter the TOP (image, value, position), and
    the maps' height."""
    import keras
    from PIL import Image

    paths = sorted(folder.glob("*.png"))
    pixels = np.stack([np.asarray(Image.open(path)) for path in paths])
    extractor = keras.Model(resolved.model.inputs, resolved.model.get_layer(LAYER).output)
    maps = np.asarray(extractor(resolved.prepare(pixels)))
    best = {}
    for channel in FILTERS:
        found = []
        for path, feature_map in zip(paths, maps[..., channel], strict=True):
            row, column = np.unravel_index(np.argmax(feature_map), feature_map.shape)
            found.append((path.stem, float(feature_map[row, column]), (int(row), int(column))))
        best[channel] = sorted(found, key=lambda entry: -entry[1])[:TOP]
    return best, maps.shape[1]


def test_top_examples_are_the_brute_force_top(demo_resolved, tiny_images):
    from cnnviz_cli import maximize

    result = maximize(demo_resolved, layer=LAYER, filters=FILTERS, from_images=str(tiny_images),
                      top=TOP, size=SIZE, batch_size=4)
    expected, height = brute_force(demo_resolved, tiny_images)
    assert sorted(result.examples) == FILTERS
    stride = SIZE / height
    for channel, examples in result.examples.items():
        assert [e.key for e in examples] == [entry[0] for entry in expected[channel]]
        assert [e.position for e in examples] == [entry[2] for entry in expected[channel]]
        np.testing.assert_allclose([e.value for e in examples],
                                   [entry[1] for entry in expected[channel]], rtol=1e-4)
        for example in examples:  # the patch is the image under the unit's receptive field
            (top, bottom), (left, right) = example.patch.box
            row, column = ((np.array(example.position) + 0.5) * stride)
            assert top <= row <= bottom and left <= column <= right
            assert example.patch.pixels.shape[:2] == (bottom - top, right - left)


def _examples_of(records: list[dict]) -> dict:
    return {(record["layer"], record["filter"]): [(e["key"], e["position"], e["activation"])
                                                  for e in record["examples"]]
            for record in records}


@pytest.mark.slow  # three runs
def test_shards_merged_by_report_equal_one_run(run_cli, tiny_images, tmp_path):
    base = ["maximize", "--from-images", tiny_images, "-l", LAYER, "--filter", "0-2",
            "--top", TOP, "--size", SIZE, "--batch-size", 3, "--projection", "guided"]
    run_cli(*base, "-o", tmp_path / "all")
    for shard in (1, 2):
        run_cli(*base, "--shard", f"{shard}/2", "-o", tmp_path / f"shard-{shard}")
    whole = json.loads((tmp_path / "all" / "manifest.json").read_text())
    grids = [record for record in whole["outputs"] if record["kind"] == "examples"]
    run_cli("report", tmp_path / "shard-1", tmp_path / "shard-2", "-o", tmp_path / "merged")
    merged = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    rows = merged["metrics"]["examples"]
    assert _examples_of(rows) == _examples_of(grids)
    assert len(grids) == 3 and all(len(row["examples"]) == TOP for row in rows)
    assert {len({e["run"] for e in row["examples"]}) for row in rows} >= {2}  # both shards
    for row in rows:
        for example in row["examples"]:
            assert (tmp_path / "merged" / example["file"]).is_file()
    assert "Dataset examples" in (tmp_path / "merged" / "index.html").read_text()


@pytest.mark.parametrize("extra, words", [
    (["--top", "0"], "--top"),
    (["--steps", "10"], "--steps"),
    (["--objective", "neuron"], "--objective"),
    (["--class", "star"], "--class"),
])
def test_options_that_cannot_take_effect_are_one_sentence(run_cli, tiny_images, extra, words):
    result = run_cli("maximize", "--from-images", tiny_images, *extra, expect=2)
    message = result.output.strip().splitlines()[-1]
    assert words in message and "Traceback" not in result.output


def test_example_options_need_from_images(run_cli):
    result = run_cli("maximize", "--top", "4", expect=2)
    assert "--top applies only with --from-images" in result.output


@pytest.mark.slow  # two runs
def test_command_and_api_write_the_same_grid(run_cli, demo_resolved, tiny_images, tmp_path):
    from cnnviz_cli import maximize

    run_cli("maximize", "--from-images", tiny_images, "-l", LAYER, "--filter", "1",
            "--top", 2, "--size", SIZE, "-o", tmp_path / "cli")
    maximize("demo", layer=LAYER, filters="1", from_images=str(tiny_images), top=2,
             size=SIZE, out=tmp_path / "api")
    name = f"maximize-{LAYER}-examples/filter-1.png"
    assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()


def test_the_output_folder_may_not_lie_inside_the_images(run_cli, tiny_images):
    inside = tiny_images / "examples"
    result = run_cli("maximize", "--from-images", tiny_images, "-l", "block3_conv2", "--filter",
                     "0", "-o", inside, expect=2)
    assert "inside the input folder" in result.output and not inside.exists()
