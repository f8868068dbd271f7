"""Concepts: non-negative matrix factorisation of a layer's activations (NumPy only).

The activations of a batch, (images, height, width, channels), are a matrix V of
(positions, channels). NMF writes V ~ W H with W, H >= 0: the K rows of H are the concepts
(directions in channel space, unit length) and the columns of W say how strongly each position
shows each concept (Collins et al. 2018, "Deep Feature Factorization"; lucid's ChannelReducer).
"""

from dataclasses import dataclass

import numpy as np

from cnnviz_cli.errors import CnnvizError

EPSILON = 1e-9


@dataclass
class Concepts:
    """K concepts of a layer: `components` (K, channels), unit rows; `regions` (images, height,
    width, K), each position's strength of each concept; `error` = |V - W H| / |V|."""

    components: np.ndarray
    regions: np.ndarray
    error: float


def _matrix(maps: np.ndarray) -> np.ndarray:
    """Activations as a non-negative (positions, channels) float64 matrix (negatives clipped)."""
    return np.maximum(maps.reshape(-1, maps.shape[-1]).astype(np.float64), 0.0)


def _update_weights(matrix: np.ndarray, weights: np.ndarray, components: np.ndarray) -> None:
    weights *= (matrix @ components.T) / (weights @ (components @ components.T) + EPSILON)


def _result(maps: np.ndarray, weights: np.ndarray, components: np.ndarray) -> Concepts:
    matrix = _matrix(maps)
    error = np.linalg.norm(matrix - weights @ components) / (np.linalg.norm(matrix) or 1.0)
    regions = weights.reshape(*maps.shape[:-1], len(components)).astype(np.float32)
    return Concepts(components.astype(np.float32), regions, float(error))


def check_count(count: int, channels: int) -> None:
    """Refuse a number of concepts a layer with `channels` channels cannot hold."""
    if not 1 <= count <= channels:
        raise CnnvizError(f"--factorize must be between 1 and the layer's {channels} channels, "
                          f"but was {count}; choose a smaller number of concepts.")


def check_components(components: np.ndarray, channels: int) -> np.ndarray:
    """Concept vectors as a float64 (K, channels) array, or one error sentence."""
    components = np.asarray(components, dtype=np.float64)
    if components.ndim != 2 or components.shape[1] != channels or np.any(components < 0):
        raise CnnvizError(
            f"The concepts must be a non-negative (K, {channels}) array for this layer's "
            f"{channels} channels, but had shape {components.shape}; save them with "
            "--factorize at the same layer.")
    return components


def factorize(maps: np.ndarray, count: int, seed: int = 0, num_steps: int = 300) -> Concepts:
    """NMF of `maps` (images, height, width, channels) into `count` concepts (Lee & Seung's
    multiplicative updates from a seeded random start)."""
    channels = maps.shape[-1]
    check_count(count, channels)
    matrix = _matrix(maps)
    rng = np.random.default_rng(seed)
    scale = np.sqrt(matrix.mean() / count) or 1.0
    weights = rng.uniform(0.1, 1.0, (len(matrix), count)) * scale
    components = rng.uniform(0.1, 1.0, (count, channels)) * scale
    for _ in range(num_steps):
        components *= (weights.T @ matrix) / ((weights.T @ weights) @ components + EPSILON)
        _update_weights(matrix, weights, components)
    norms = np.linalg.norm(components, axis=1, keepdims=True) + EPSILON
    components, weights = components / norms, weights * norms.T
    order = np.argsort(-weights.sum(axis=0), kind="stable")  # strongest concept first
    return _result(maps, weights[:, order], components[order])


def apply_concepts(maps: np.ndarray, components: np.ndarray, num_steps: int = 200) -> Concepts:
    """The regions of fixed concepts (K, channels) in `maps`: NMF with H held fixed."""
    components = check_components(components, maps.shape[-1])
    matrix = _matrix(maps)
    weights = np.full((len(matrix), len(components)), np.sqrt(matrix.mean() + EPSILON))
    for _ in range(num_steps):
        _update_weights(matrix, weights, components)
    return _result(maps, weights, components)


def top_channels(components: np.ndarray, count: int = 3) -> list[list[int]]:
    """Per concept (a row of `components`), the channels that weigh most in it."""
    return np.argsort(-np.asarray(components), axis=1, kind="stable")[:, :count].tolist()
