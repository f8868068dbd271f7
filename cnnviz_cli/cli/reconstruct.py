"""`cnnviz reconstruct`: what a layer keeps (inversion) and what drives its units (projections)."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    computing_model_options,
    filter_option,
    finish,
    image_options,
    load_model,
    output_options,
    run_settings,
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
@computing_model_options
@click.option("--method", type=click.Choice(["guided", "deconvnet", "inversion"]),
              default="guided", show_default=True,
              help="guided backprop or deconvnet projections of single activations, or feature "
              "inversion (an image optimised to have the input's features).")
@click.option("-l", "--layer", "layer_specs", multiple=True, metavar="LAYER",
              help="Feature-map layer, `all` (every feature map) or `auto` (the last "
              "convolution of four stages from shallow to deep, the default). Repeatable.")
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
      cnnviz reconstruct sample_images/ --method guided -l block3_conv2 --filter 0-3 -o out/guided
      cnnviz reconstruct sample_images/star.png --method inversion \\
                         -l block1_conv1 -l block3_conv2 -o out/inversion
    """
    from cnnviz_cli import api

    result = api.reconstruct(
        load_model(options), options["images"], method=options["method"],
        layers=options["layer_specs"], top_channels=options["top_channels"],
        filters=options["filter_spec"], extent=options["extent"], steps=options["steps"],
        tv=options["tv"], alpha_prior=options["alpha_prior"], param=options["param"],
        seed=options["seed"], **run_settings(ctx, options),
    )
    finish(ctx, result, options["print_json"])
