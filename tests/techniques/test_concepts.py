"""Concepts: NMF of a layer's activations (activations --factorize / --concepts)."""

import numpy as np
import pytest


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


