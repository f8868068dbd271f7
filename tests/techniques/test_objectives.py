"""maximize's objectives: channel, neuron, direction, and diversity between samples."""

import numpy as np
import pytest

import cnnviz_cli

LAYER, FILTER, SIZE, STEPS = "block3_conv2", 7, 64, 64


def layer_maps(demo_resolved, images: np.ndarray) -> np.ndarray:
    from cnnviz_cli.techniques.activations import ActivationExtractor

    extractor = ActivationExtractor(demo_resolved.model, [LAYER], (SIZE, SIZE, 3))
    return extractor(demo_resolved.prepare((images * 255).round()))[0].maps


def run(**options):
    return cnnviz_cli.maximize("demo", layer=LAYER, filters=[FILTER], size=SIZE, steps=STEPS,
                               **options)


@pytest.mark.slow  # optimisations
def test_the_neuron_objective_excites_its_centre_unit_more(demo_resolved):
    images = [run(objective=kind).images[0] for kind in ("neuron", "channel")]
    maps = layer_maps(demo_resolved, np.stack(images))
    row, column = maps.shape[1] // 2, maps.shape[2] // 2
    neuron, channel = maps[:, row, column, FILTER]
    assert neuron > 1.2 * channel and neuron > 0


@pytest.mark.slow  # an optimisation
def test_a_chosen_position_is_the_unit_recorded(demo_resolved):
    result = run(objective="neuron", position=(6, 9))
    maps = layer_maps(demo_resolved, result.images)
    assert result.scores[0] == pytest.approx(maps[0, 9, 6, FILTER], rel=1e-3, abs=1e-3)
    assert maps[0, 9, 6, FILTER] > maps[0, 9, 6].mean()


def gram_similarity(maps: np.ndarray) -> float:
    """The mean cosine similarity of the samples' Gram matrices over all pairs (NumPy)."""
    flat = maps.reshape(len(maps), -1, maps.shape[-1])
    grams = np.einsum("npc,npd->ncd", flat, flat).reshape(len(maps), -1)
    grams /= np.linalg.norm(grams, axis=1, keepdims=True)
    similarity = grams @ grams.T
    return float(similarity[~np.eye(len(maps), dtype=bool)].mean())


@pytest.mark.slow  # optimisations
def test_diversity_makes_the_samples_differ_at_a_small_cost(demo_resolved):
    plain, diverse = (run(samples=4, diversity=weight) for weight in (0.0, 1.0))
    similarities = [gram_similarity(layer_maps(demo_resolved, r.images)) for r in (plain, diverse)]
    assert similarities[1] < similarities[0] - 0.01
    assert diverse.scores.mean() >= 0.7 * plain.scores.mean()
    assert [int(t) for t in diverse.targets] == [FILTER] * 4


@pytest.mark.slow  # an optimisation
def test_a_direction_is_followed(demo_resolved, tmp_path):
    direction = np.zeros(64, np.float32)
    direction[FILTER] = 1.0
    result = cnnviz_cli.maximize("demo", layer=LAYER, objective="direction",
                                 direction_vector=direction,
                                 size=SIZE, steps=STEPS)
    maps = layer_maps(demo_resolved, result.images)
    assert result.scores[0] == pytest.approx(maps[0, ..., FILTER].mean(), rel=1e-3)


