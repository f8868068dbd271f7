"""`cnnviz reconstruct`: what a layer keeps (inversion) and what drives its units (projections)."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    Run,
    filter_option,
    image_options,
    model_options,
    output_options,
    slug,
)

RULES = [
    OnlyWhen(("top_channels", "filter_spec", "extent"), "with --method guided or deconvnet",
             lambda params: params["method"] != "inversion"),
    OnlyWhen(("steps", "tv", "alpha_prior", "param", "seed"), "with --method inversion",
             lambda params: params["method"] == "inversion"),
    OnlyWhen(("top_channels",), "without --filter (which names the channels instead)",
             lambda params: not params["filter_spec"]),
]


@click.command(cls=CnnvizCommand, rules=RULES)
@image_options
@model_options
@click.option("--method", type=click.Choice(["guided", "deconvnet", "inversion"]),
              default="guided", show_default=True,
              help="guided backprop or deconvnet projections of single activations, or feature "
              "inversion (an image optimised to have the input's features).")
@click.option("-l", "--layer", "layer_specs", multiple=True, metavar="LAYER",
              help="Feature-map layer, `all` (every feature map) or `auto` (four convolution "
              "layers from shallow to deep, the default). Repeatable.")
@click.option("--top-channels", type=click.IntRange(min=1), default=8, show_default=True,
              help="Projections: how many channels to project, those of strongest activation, "
              "one panel each.")
@filter_option("Projections: project these channels instead of the strongest ones.")
@click.option("--extent", type=click.Choice(["map", "unit"]), default="map", show_default=True,
              help="Projections: each channel's whole feature map, or only its strongest "
              "activation (as Zeiler & Fergus; drawn beside the image patch it sees).")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Inversion: optimisation steps.")
@click.option("--tv", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="Inversion: weight of the total-variation prior.")
@click.option("--alpha-prior", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Inversion: weight of the alpha-norm prior (alpha = 6).")
@click.option("--param", type=click.Choice(["fourier", "pixel"]), default="fourier",
              show_default=True, help="Inversion: image parameterisation, a 1/f spectrum with "
              "decorrelated colour (smoother), or free pixels.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Inversion: seeds the starting image (same seed, same bytes).")
@output_options
@click.pass_context
def reconstruct(ctx: click.Context, **options) -> None:
    """Project a layer back to pixels, or invert its features.

    guided / deconvnet: for each layer, the strongest activation of each of the --top-channels
    channels (or of each --filter) projected into pixel space, one panel each
    (<out>/<image>/reconstruct-<method>-<layer>.png). inversion: an image optimised so that its
    features at each layer match the input's; the strip from shallow to deep shows what each
    depth keeps (reconstruct-inversion.png); the manifest records the relative feature error.

    \b
    Example:
      cnnviz reconstruct sample_images/ --method guided -l block3_conv2 --filter 0-3 -o out/
      cnnviz reconstruct sample_images/star.png --method inversion \\
                         -l block1_conv1 -l block3_conv2 -o out/
    """
    from cnnviz_cli.models.layers import resolve_feature_maps, spread_feature_maps

    run = Run(ctx)
    resolved = run.load_model()
    model, specs = resolved.model, options["layer_specs"] or ("auto",)
    chosen = (spread_feature_maps(model, 4, True) if specs == ("auto",)
              else resolve_feature_maps(model, specs))
    layers = [info.path for info in chosen]
    shape = (*resolved.image_size(options["size"]), resolved.channels)
    if options["method"] == "inversion":
        _invert(run, resolved, layers, options)
    else:
        _project(run, resolved, layers, shape, options)
    run.finish()


def _project(run: Run, resolved, layers: list[str], shape: tuple, options: dict) -> None:
    import numpy as np

    from cnnviz_cli.render.colour import signed_image
    from cnnviz_cli.render.grid import grid, upscale
    from cnnviz_cli.render.maps import receptive_field_pair
    from cnnviz_cli.specs import parse_filters
    from cnnviz_cli.techniques.backprop import Projector

    method, extent, spec = options["method"], options["extent"], options["filter_spec"]
    projectors = [Projector(resolved.model, path, method, shape, resolved.preprocess, extent)
                  for path in layers]
    channels_of = {projector.layer_path: parse_filters(spec, projector.num_channels,
                                                       projector.layer_path) if spec else None
                   for projector in projectors}

    def tile(image: np.ndarray, projection: np.ndarray) -> np.ndarray:
        if extent == "map":
            return upscale(signed_image(projection), 128)
        return receptive_field_pair(image, projection)

    for batch in run.image_batches(resolved):
        pixels = np.stack([image.resized for image in batch]).astype("float32")
        for projector in projectors:
            result = projector(pixels, options["top_channels"], channels_of[projector.layer_path])
            for index, image in enumerate(batch):
                channels = result.channels[index].tolist()
                values = result.activations[index].tolist()
                tiles = [tile(image.resized, projection) for projection in result.images[index]]
                labels = [f"ch {c} · {v:.3g}" for c, v in zip(channels, values, strict=True)]
                if extent == "map":
                    tiles, labels = [upscale(image.resized, 128), *tiles], ["input", *labels]
                title = f"{image.path.name} · {method} · {result.layer_path}"
                run.outputs.save_png(
                    f"{image.key}/reconstruct-{method}-{slug(result.layer_path)}.png",
                    grid(tiles, labels, columns=min(len(tiles), 4), title=title),
                    {"input": str(image.path), "method": method, "layer": result.layer_path,
                     "extent": extent, "channels": channels, "activations": values,
                     "positions": result.positions[index].tolist()},
                )


def _invert(run: Run, resolved, layers: list[str], options: dict) -> None:
    import numpy as np

    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.render.grid import strip, upscale
    from cnnviz_cli.techniques.reconstruct import InversionConfig, Inverter

    config = InversionConfig(
        steps=options["steps"], tv=options["tv"], alpha=options["alpha_prior"],
        parameterization=options["param"], seed=options["seed"],
    )
    inverters = [Inverter(resolved.model, path, resolved.preprocess) for path in layers]
    for batch in run.image_batches(resolved):
        pixels = np.stack([image.resized for image in batch]).astype("float32")
        results = [inverter(pixels, config) for inverter in inverters]
        for index, image in enumerate(batch):
            errors = [float(result.feature_errors[index]) for result in results]
            panels = [image.resized, *(to_uint8(result.images[index]) for result in results)]
            pairs = zip(layers, errors, strict=True)
            labels = ["input", *(f"{path} · {error:.2f}" for path, error in pairs)]
            run.outputs.save_png(
                f"{image.key}/reconstruct-inversion.png",
                strip([upscale(panel, 160) for panel in panels], labels,
                      title=f"{image.path.name} · feature inversion (relative feature error)"),
                {"input": str(image.path), "method": "inversion", "layers": layers,
                 "feature_errors": dict(zip(layers, errors, strict=True))},
            )
