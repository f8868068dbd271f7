"""`maximize(objective=..., diversity=..., samples=...)`: what a filter's images maximise."""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cnnviz_cli.errors import CnnvizError

OBJECTIVES = ("channel", "neuron", "direction")


@dataclass
class UnitObjective:
    """The items to synthesise (a target per image, `samples` images per target), their
    names, and the unit score they maximise."""

    targets: np.ndarray
    names: list[str]
    score: object  # techniques.objectives.UnitScore
    samples: int
    key: tuple = ()  # what tells the score apart, to reuse its compiled loop

    def config(self, config):
        """The maximize config with chunks holding whole groups of samples."""
        per_chunk = max(1, config.batch_size // self.samples) * self.samples
        return replace(config, batch_size=per_chunk)


def _direction(resolved, info, shape, options: dict) -> np.ndarray:
    """The direction from a .npy file or array, or the mean activation of some images."""
    from cnnviz_cli.techniques.objectives import check_direction

    source, images = options["direction_vector"], options["direction_images"] or None
    if (source is None) == (images is None):
        raise CnnvizError("--objective direction needs a vector: give --direction-vector "
                          "FILE.npy or --direction-images IMAGES, one of the two.")
    if images is not None:
        from cnnviz_cli.api.activations import activations

        found = activations(resolved, images, layers=[info.path], size=shape[0])
        if not found.items:
            raise CnnvizError("None of the --direction-images could be read.")
        source = np.mean([item.maps[info.path].mean(axis=(0, 1)) for item in found.items], 0)
    elif not isinstance(source, np.ndarray):
        try:
            source = np.load(Path(source), allow_pickle=False)
        except (OSError, ValueError) as error:
            raise CnnvizError(f"Cannot read the direction {source}: {error}.") from None
    return check_direction(source, int(info.output_shape[-1]), info.path)


def unit_objective(resolved, info, shape: tuple, options: dict, filters) -> UnitObjective:
    """The unit objective the options ask for at the layer `info`, over `filters`."""
    from cnnviz_cli.techniques import objectives

    name, samples = options["objective"], options["samples"]
    if name == "direction":
        vector = _direction(resolved, info, shape, options)
        score, groups, key = objectives.direction_score(vector), [0], (name, vector.tobytes())
        labels = ["direction"]
    else:
        groups, labels = list(filters), [str(f) for f in filters]
        score, key = objectives.channel_score, (name,)
        if name == "neuron":
            height, width = objectives.feature_size(resolved.model, info.path, shape)
            column, row = options["position"] or (width // 2, height // 2)
            if not (0 <= row < height and 0 <= column < width):
                raise CnnvizError(f"--position {column},{row} is outside the {width}x{height} "
                                  f"feature map of {info.path}; give X in 0-{width - 1} and Y "
                                  f"in 0-{height - 1}.")
            score, key = objectives.neuron_score(row, column), (name, row, column)
    targets = np.repeat(np.asarray(groups, np.int32), samples)
    names = [label if samples == 1 else f"{label}-{index}"
             for label in labels for index in range(samples)]
    return UnitObjective(targets, names, score, samples, key)
