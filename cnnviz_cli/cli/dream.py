"""`cnnviz dream`: DeepDream, amplify what some layers see in a photo."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    computing_model_options,
    finish,
    image_options,
    load_model,
    output_options,
    run_settings,
)


@click.command(cls=CnnvizCommand)
@image_options
@computing_model_options
@click.option("-l", "--layer", "layer_specs", multiple=True, metavar="LAYER[:CHANNEL][:WEIGHT]",
              help="A layer to amplify, optionally one channel (an integer) and a weight (with a "
              "decimal point): block3_conv2, block3_conv2:7, block4_conv:1.5, or `auto` (the "
              "output of the stage before the last, the default). Repeatable.")
@click.option("--octaves", type=click.IntRange(min=1), default=4, show_default=True,
              help="Scales to dream at, from small to the photo's own size.")
@click.option("--octave-scale", type=click.FloatRange(min=1.0, min_open=True), default=1.4,
              show_default=True, help="Size ratio between octaves.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Gradient steps per octave.")
@click.option("--step-size", type=click.FloatRange(min=0, min_open=True), default=0.01,
              show_default=True, help="Step of a normalised gradient, in units of the pixel range.")
@click.option("--tile", type=click.IntRange(min=16), default=512, show_default=True,
              help="Tile side: gradients are computed tile by tile (randomly rolled each step), so "
              "memory stays that of one tile. Fixed-size models use their input size.")
@click.option("--blend", type=click.FloatRange(0, 1), default=None,
              help="Also write dream-blend.png: this share of the dream over the original.")
@click.option("--gif", "gif_every", type=click.IntRange(min=0), default=0, metavar="K",
              help="Also write dream.gif, the dream growing octave by octave, a frame every K "
              "steps.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the random roll of the tiles (same seed, same bytes).")
@output_options
@click.pass_context
def dream(ctx: click.Context, **options) -> None:
    """DeepDream: change a photo so that layers respond to it more.

    Dreams at the photo's own resolution (or with its longer side at --size), octave by octave,
    re-injecting the detail dreamed at each octave into the next. Writes
    <out>/<image>/dream.png at the input's resolution; the manifest records the objective
    (weighted mean squared activation) before and after.

    \b
    Example:
      cnnviz dream sample_images/chelsea.jpg -l block3_conv2 -l block4_conv:0.5 --blend 0.7 -o out/
    """
    from cnnviz_cli import api

    result = api.dream(
        load_model(options), options["images"], layers=options["layer_specs"],
        octaves=options["octaves"], octave_scale=options["octave_scale"], steps=options["steps"],
        step_size=options["step_size"], tile=options["tile"], blend=options["blend"],
        gif=options["gif_every"], seed=options["seed"], **run_settings(ctx, options),
    )
    finish(ctx, result, options["print_json"])
