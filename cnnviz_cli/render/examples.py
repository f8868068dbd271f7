"""Dataset examples drawn: each patch beside its projection, in a grid per filter."""

import numpy as np

TILE = 96  # pixels: the side of each patch and of each projection


def example_tile(pixels: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """One example: the image patch and its projection into pixel space, side by side."""
    from cnnviz_cli.render.maps import patch_pair

    return patch_pair(pixels, projection, TILE)


def examples_grid(patches: list, labels: list[str], title: str) -> np.ndarray:
    """A filter's examples (api.examples.Patch, best first) in rows of three."""
    from cnnviz_cli.render.grid import grid

    tiles = [example_tile(patch.pixels, patch.projection) for patch in patches]
    return grid(tiles, labels, columns=min(len(tiles), 3), title=title)
