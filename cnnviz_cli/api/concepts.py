"""`activations(factorize=K)` and `activations(concepts=...)`: concepts of a layer's maps.

With `factorize`, the items of the whole run are held until the end, where NMF is fitted over
all their maps (one set of concepts for every image); with `concepts`, saved concept vectors
are applied batch by batch as the images stream.
"""

from pathlib import Path

import numpy as np

from cnnviz_cli.errors import CnnvizError


def load_concepts(source: str | Path | np.ndarray) -> np.ndarray:
    """Concept vectors (K, channels) from a `.npy` file that --factorize saved, or an array."""
    if isinstance(source, np.ndarray):
        return source
    try:
        return np.load(Path(source), allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CnnvizError(f"Cannot read the concepts file {source}: {error}; give a .npy file "
                          "that --factorize saved.") from None


class ConceptStep:
    """What the activations loop does with concepts: nothing, apply saved ones, or fit."""

    def __init__(self, factorize: int | None, concepts, channels: dict[str, int], run: dict):
        from cnnviz_cli.techniques.concepts import check_components, check_count

        if factorize is not None and concepts is not None:
            raise CnnvizError("Give --factorize (fit new concepts) or --concepts (apply saved "
                              "ones), not both.")
        if factorize is not None and (run["shard"] or run["skip_existing"]):
            raise CnnvizError("--factorize fits one set of concepts over all the images, so it "
                              "cannot run in shards or resume; save the concepts once and apply "
                              "them with --concepts.")
        if concepts is not None and len(channels) != 1:
            raise CnnvizError(f"--concepts applies to one layer, but {len(channels)} were "
                              "chosen; give the layer they were fitted at with -l LAYER.")
        for count in channels.values() if factorize is not None else ():
            check_count(factorize, count)
        self.count = factorize
        self.vectors = {layer: check_components(load_concepts(concepts), count)
                        for layer, count in channels.items() if concepts is not None}
        self.held: list = []
        self.errors: dict[str, float] = {}

    @property
    def holds(self) -> bool:
        """Whether the items wait for the end of the run (fitting needs all of them)."""
        return self.count is not None

    def apply(self, items: list) -> None:
        """Give each item the regions of the saved concepts in its maps."""
        from cnnviz_cli.techniques.concepts import apply_concepts

        for layer, components in self.vectors.items():
            found = apply_concepts(np.stack([item.maps[layer] for item in items]), components)
            for item, regions in zip(items, found.regions, strict=True):
                item.concepts[layer] = regions

    def fit(self) -> list:
        """Fit the concepts of every layer over the held items; return the items."""
        from cnnviz_cli.techniques.concepts import factorize

        for layer in self.held[0].maps if self.held else ():
            found = factorize(np.stack([item.maps[layer] for item in self.held]), self.count)
            for item, regions in zip(self.held, found.regions, strict=True):
                item.concepts[layer] = regions
            self.vectors[layer] = found.components
            self.errors[layer] = found.error
        return self.held

    def metrics(self) -> dict:
        """The relative reconstruction error |V - WH| / |V| of each fitted layer."""
        return {f"concepts_error/{layer}": round(error, 6) for layer, error in self.errors.items()}
