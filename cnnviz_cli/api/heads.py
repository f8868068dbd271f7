"""The head of the output a run explains: its task, direction or reference embedding."""

from cnnviz_cli.errors import CnnvizError


def model_head(resolved, output: int, task: str | None = None, direction: str | None = None,
               reference=None, size: tuple[int, int] | None = None,
               max_pixels: int | None = None):
    """The `Head` (models.heads) of output index `output` of a ResolvedModel; the `reference`
    images (any images argument, with `task="embed"`) are read at `size` and their mean
    embedding is what the similarity compares with."""
    from cnnviz_cli.models.heads import REFERENCE_RULE, detect_head

    if reference is not None and task != "embed":
        raise CnnvizError(REFERENCE_RULE)
    embedding = None
    if reference is not None:
        embedding = _mean_embedding(resolved, output, reference, size, max_pixels)
    return detect_head(resolved.model, output, task, direction, embedding)


def _mean_embedding(resolved, output: int, reference, size, max_pixels):
    import numpy as np

    from cnnviz_cli.api.inputs import collect_inputs, load_input
    from cnnviz_cli.io import DEFAULT_MAX_PIXELS
    from cnnviz_cli.models.heads import mean_embedding

    try:
        geometry = resolved.geometry(size or resolved.image_size())
        images = [load_input(item, resolved.channels, geometry,
                             max_pixels or DEFAULT_MAX_PIXELS).resized
                  for item in collect_inputs(reference)]
    except CnnvizError as error:
        raise CnnvizError(f"--reference: {error}") from None
    if not images:
        raise CnnvizError("--reference names no image; give one or more image files.")
    return mean_embedding(resolved.model, output, resolved.prepare(np.stack(images)))
