"""`cnnviz_cli.layers` and `cnnviz_cli.list_models`: what can be visualised."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnviz_cli.models.resolve import ResolvedModel

DEMO_DESCRIPTION = "bundled shapes classifier, any input size"


@dataclass
class LayersResult:
    """A model (a ResolvedModel) and its `layers`: one record per layer, nested layers
    addressed as outer/inner; none for an exported model, whose inputs and outputs its
    record (`model.details`) holds instead."""

    model: "ResolvedModel"
    layers: list[dict]

    def record(self) -> dict:
        """The model's manifest record and its layers (what `cnnviz layers --json` prints)."""
        return {"model": self.model.describe(), "layers": self.layers}


def layers(model=None, **loading) -> LayersResult:
    """List a model's layers, which are feature maps, and which commands' `layer="auto"` picks.

    A feature map is a (height, width, channels) output larger than 1x1 at the model's input
    size (its default size for models that take any size).

    Args:
        model: what `load_model` takes: a name, a file, a keras.Model, a loaded model, or None
            for the demo model.
        **loading: `load_model`'s keywords (weights, preprocess, labels, signature...).

    Returns:
        A LayersResult; each layer's record has `index`, `name` (the path that `layer=` and
        `-l` take), `type`, `output_shape`, `params`, `feature_map`, `auto` (the commands whose
        automatic layer it is) and `tokens` (a token sequence seen as a square grid).
    """
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.models.layers import (
        default_layers,
        feature_map_layers,
        iter_layers,
        token_grid,
    )

    resolved = load_model(model, **loading)
    if "layer" not in resolved.gives:
        return LayersResult(resolved, [])
    size = resolved.image_size()
    maps = {info.path for info in feature_map_layers(resolved.model, size)}
    picks: dict[str, list[str]] = {}
    for command, chosen in default_layers(resolved.model, size).items():
        for info in chosen:
            picks.setdefault(info.path, []).append(command)
    rows = [{"index": index, "name": info.path, "type": type(info.layer).__name__,
             "output_shape": None if info.output_shape is None else list(info.output_shape),
             "params": info.layer.count_params() if hasattr(info.layer, "count_params") else 0,
             "feature_map": info.path in maps, "auto": picks.get(info.path, []),
             "tokens": token_grid(info.output_shape) is not None}
            for index, info in enumerate(iter_layers(resolved.model))]
    return LayersResult(resolved, rows)


def list_models() -> list[dict]:
    """The model names `model=` and `-m` take: `demo`, then the keras.applications models.

    Returns:
        One record per name: `name`, `constructor` (the keras.applications function),
        `input_size` (pixels), `any_size` (whether it takes other sizes) and `description`.
    """
    from cnnviz_cli.models.registry import APPLICATIONS

    demo = {"name": "demo", "constructor": None, "input_size": None, "any_size": True,
            "description": DEMO_DESCRIPTION}
    return [demo, *({"name": name, "constructor": entry.constructor,
                     "input_size": entry.input_size, "any_size": entry.any_size,
                     "description": f"keras.applications.{entry.constructor}"}
                    for name, entry in APPLICATIONS.items())]
