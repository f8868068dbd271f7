"""`cnnviz activations`: feature-map grids and mean-activation overlays."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    Run,
    image_options,
    model_options,
    output_options,
    slug,
)


@click.command(cls=CnnvizCommand)
@image_options
@model_options
@click.option(
    "-l", "--layer", "layer_specs", multiple=True, metavar="LAYER",
    help="Layer name, nested path (base/conv1), negative index, `all` (every feature map) or "
    "`auto` (four feature maps from shallow to deep, the default). Repeatable.",
)
@click.option("--max-channels", type=click.IntRange(min=1), default=32, show_default=True,
              help="Feature maps drawn per layer grid, in the --order chosen.")
@click.option("--order", type=click.Choice(["mean", "index"]), default="mean", show_default=True,
              help="Show the strongest channels first, or channels in index order.")
@click.option("--scale", type=click.Choice(["shared", "each"]), default="shared",
              show_default=True, help="One colour scale per grid, or one per feature map.")
@click.option("--colormap", default="viridis", show_default=True,
              help="Matplotlib colour map of the feature maps and the overlay.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.55, show_default=True,
              help="Opacity of the overlay's heat colours.")
@output_options
@click.pass_context
def activations(ctx: click.Context, **options) -> None:
    """Feature maps an image produces, layer by layer.

    For each image and layer: a grid of the feature maps (<out>/<image>/activations-<layer>.png)
    and the mean activation over channels laid on the image (...-overlay.png).

    \b
    Example:
      cnnviz activations sample_images/ -l block1_conv1 -l block3_conv2 -o out/
    """
    import numpy as np

    from cnnviz_cli.models.layers import resolve_feature_maps
    from cnnviz_cli.render.colour import normalize, overlay
    from cnnviz_cli.render.maps import feature_grid
    from cnnviz_cli.techniques.activations import ActivationExtractor

    run = Run(ctx)
    resolved = run.load_model()
    layers = resolve_feature_maps(resolved.model, options["layer_specs"])
    height, width = resolved.image_size(options["size"])
    extractor = ActivationExtractor(
        resolved.model, [info.path for info in layers], (height, width, resolved.channels)
    )
    for batch in run.image_batches(resolved):
        inputs = resolved.prepare(np.stack([image.resized for image in batch]))
        for layer in extractor(inputs):
            for index, image in enumerate(batch):
                channels = layer.channel_order(index, options["order"])[: options["max_channels"]]
                record = {"input": str(image.path), "layer": layer.layer_path,
                          "shape": list(layer.maps.shape[1:]), **layer.statistics(index)}
                name = f"{image.key}/activations-{slug(layer.layer_path)}"
                title = f"{image.path.name} · {layer.layer_path} · {layer.maps.shape[-1]} channels"
                run.outputs.save_png(
                    f"{name}.png",
                    feature_grid(layer.maps[index], channels, options["scale"],
                                 options["colormap"], title),
                    {**record, "kind": "grid", "channels": channels.tolist()},
                )
                heat = normalize(layer.mean_map(index))
                run.outputs.save_png(
                    f"{name}-overlay.png",
                    overlay(image.original, heat, options["colormap"], options["alpha"]),
                    {**record, "kind": "overlay"},
                )
    run.finish()
