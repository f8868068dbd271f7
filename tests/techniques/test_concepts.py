"""Concepts: NMF of a layer's activations (activations --factorize / --concepts)."""

import numpy as np
import pytest

import cnnviz_cli
from cnnviz_cli.errors import CnnvizError


@pytest.fixture(scope="session")
def pair_maps(demo_resolved):
    """block4_conv maps of four circle-and-cross scenes, with the shapes' masks."""
    from cnnviz_cli.demo.shapes import draw_scene
    from cnnviz_cli.techniques.activations import ActivationExtractor

    rng = np.random.default_rng(5)
    scenes = [draw_scene(rng, 128, [0, 4]) for _ in range(4)]
    images = np.stack([image for image, _ in scenes])
    extractor = ActivationExtractor(demo_resolved.model, ["block4_conv"], (128, 128, 3))
    return extractor(demo_resolved.prepare(images))[0].maps, np.stack([m for _, m in scenes])


def iou(first: np.ndarray, second: np.ndarray) -> float:
    return float((first & second).sum() / max((first | second).sum(), 1))


def test_factors_are_non_negative_and_reconstruct_the_maps(pair_maps):
    from cnnviz_cli.techniques.concepts import factorize

    maps = pair_maps[0]
    found = factorize(maps, 4)
    assert found.components.shape == (4, maps.shape[-1])
    assert found.regions.shape == (*maps.shape[:-1], 4)
    assert found.components.min() >= 0 and found.regions.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(found.components, axis=1), 1.0, rtol=1e-5)
    matrix = maps.reshape(-1, maps.shape[-1])
    product = found.regions.reshape(-1, 4) @ found.components
    error = np.linalg.norm(matrix - product) / np.linalg.norm(matrix)
    assert error == pytest.approx(found.error, rel=1e-4)
    # a bound: better than the best rank-1 non-negative guess (the mean channel profile) ...
    profile = matrix.mean(axis=0)
    scale = matrix @ profile / (profile @ profile)
    assert error < 0.9 * np.linalg.norm(matrix - np.outer(scale, profile)) / np.linalg.norm(matrix)
    # ... and more concepts fit better
    assert factorize(maps, 8).error < error < 0.7


def test_concept_regions_separate_the_two_shapes(pair_maps):
    from cnnviz_cli.render.colour import resize_map
    from cnnviz_cli.techniques.concepts import factorize

    maps, masks = pair_maps
    found = factorize(maps, 3)
    for regions, (circle, cross) in zip(found.regions, masks, strict=True):
        upsampled = np.stack([resize_map(regions[..., k], circle.shape) for k in range(3)], -1)
        labels = upsampled.argmax(axis=-1)
        best = [max(range(3), key=lambda k, mask=mask: iou(labels == k, mask))
                for mask in (circle, cross)]
        assert best[0] != best[1]  # each shape has its own concept
        for concept, own, other in ((best[0], circle, cross), (best[1], cross, circle)):
            assert iou(labels == concept, own) > 0.05 + iou(labels == concept, other)


def test_saved_concepts_find_the_same_regions(pair_maps):
    from cnnviz_cli.techniques.concepts import apply_concepts, factorize

    maps = pair_maps[0]
    fitted = factorize(maps, 3)
    applied = apply_concepts(maps[:2], fitted.components)
    assert applied.regions.min() >= 0
    assert applied.error <= fitted.error * 1.05
    flat = [r.reshape(-1, 3) for r in (fitted.regions[:2], applied.regions)]
    for k in range(3):
        assert np.corrcoef(flat[0][:, k], flat[1][:, k])[0, 1] > 0.95


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


def test_factorize_and_concepts_together_are_refused(sample_dir):
    with pytest.raises(CnnvizError, match="not both"):
        cnnviz_cli.activations("demo", str(sample_dir / "star.png"), layers=["block4_conv"],
                               factorize=2, concepts=np.ones((2, 128)))
