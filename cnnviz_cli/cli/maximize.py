"""`cnnviz maximize`: images synthesised to excite filters of a layer, or classes."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    checkpoint_option,
    computing_model_options,
    filter_option,
    finish,
    load_model,
    output_options,
    parse_shard,
    run_settings,
)
from cnnviz_cli.cli.heads import head_options


def _position(value: str) -> tuple[int, int]:
    try:
        column, row = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected X,Y such as 3,4, but got {value!r}.") from None
    return column, row


FILTER_OPTIONS = OnlyWhen(("layer_spec", "filter_spec"), "without --class (which maximises "
                          "classes instead of filters)", lambda params: not params["classes"])


HEAD_OPTIONS = OnlyWhen(("task", "direction"), "with --class (they say what the class scores "
                        "are)", lambda params: bool(params["classes"]))


EXAMPLE_OPTIONS = OnlyWhen(("top", "projection", "shard"), "with --from-images (they choose "
                           "dataset examples)", lambda params: bool(params["from_images"]))


@click.command(cls=CnnvizCommand, rules=[FILTER_OPTIONS, HEAD_OPTIONS, EXAMPLE_OPTIONS])
@computing_model_options
@click.option("-l", "--layer", "layer_spec", default="auto", show_default=True, metavar="LAYER",
              help="Layer whose filters to maximise; auto = the deepest map larger than 1x1 "
              "before pooling.")
@filter_option("Filters to maximise [default: the first 16].")
@click.option("--class", "classes", multiple=True, metavar="CLASS",
              help="Maximise a class score instead of filters (index or label). Repeatable.")
@head_options
@click.option("--param", type=click.Choice(["fourier", "pixel"]), default="fourier",
              show_default=True, help="Image parameterisation: 1/f spectrum with decorrelated "
              "colour, or free pixels.")
@click.option("--transforms", type=click.Choice(["standard", "none"]), default="standard",
              show_default=True, help="Random pad, jitter, scale and rotation every step, "
              "fading out over the run.")
@click.option("--l2", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the L2 penalty (distance from grey).")
@click.option("--tv", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the total-variation penalty.")
@click.option("--blur", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the blur penalty (distance from a blurred copy).")
@click.option("--steps", type=click.IntRange(min=1), default=256, show_default=True,
              help="Optimisation steps (all in one compiled loop).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05,
              show_default=True, help="Adam step size.")
@click.option("--size", type=click.IntRange(min=8),
              help="Image side for models that take any size [default: the model's].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the starting image and the transforms: same seed, same bytes.")
@click.option("--gif", "gif_every", type=click.IntRange(min=0), default=0, metavar="K",
              help="Also write an animation of the optimisation, one frame every K steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Filters or classes optimised together in one compiled loop.")
@checkpoint_option
@click.option("--objective", type=click.Choice(["channel", "neuron", "direction"]),
              default="channel", show_default=True, help="What a filter's images maximise: its "
              "mean activation, one unit (--position) or a direction in channel space.")
@click.option("--position", callback=lambda _c, _p, v: None if v is None else _position(v),
              metavar="X,Y", help="The unit of --objective neuron, in feature-map "
              "coordinates [default: the centre].")
@click.option("--direction-vector", type=click.Path(exists=True, dir_okay=False),
              metavar="FILE.npy",
              help="The vector (one value per channel) of --objective direction.")
@click.option("--direction-images", multiple=True, metavar="IMAGES",
              help="--objective direction along the mean activation of these images. "
              "Repeatable.")
@click.option("--diversity", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the penalty on the Gram similarity of a filter's --samples.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per filter (made different by --diversity).")
@click.option("--from-images", multiple=True, metavar="IMAGES",
              help="Instead of synthesising, stream these images (a folder, files or globs) "
              "and show each filter's dataset examples. Repeatable.")
@click.option("--top", type=click.IntRange(min=1), default=9, show_default=True, metavar="K",
              help="Dataset examples per filter: the K images of strongest activation.")
@click.option("--projection", type=click.Choice(["deconvnet", "guided"]), default="deconvnet",
              show_default=True, help="How each example's activation is projected to pixels.")
@click.option("--shard", metavar="K/N", callback=parse_shard,
              help="Use only slice K of N of the sorted --from-images; `cnnviz report` merges "
              "the shards' folders into the global top K.")
@output_options
@click.pass_context
def maximize(ctx: click.Context, **options) -> None:
    """Synthesise images that excite a layer's filters, or classes.

    Writes a labelled grid (<out>/maximize-<layer>-grid.png), one PNG per filter
    (<out>/maximize-<layer>/filter-<i>.png) or class (<out>/maximize-class-<label>.png), and
    records in the manifest the activation reached and that of random noise.
    With --from-images, writes each filter's dataset examples instead: a grid of the --top
    image patches of strongest activation beside their projections
    (<out>/maximize-<layer>-examples/filter-<i>.png), with their values and positions in the
    manifest.

    \b
    Example:
      cnnviz maximize -l block3_conv2 --filter 0-3 --filter 9 --steps 256 -o out/filters
      cnnviz maximize --class star --class ring -o out/classes
      cnnviz maximize -l block4_conv --filter 5 --samples 4 --diversity 0.5 -o out/diverse
      cnnviz maximize --from-images sample_images/ -l block3_conv2 --filter 0-3 -o out/examples
    """
    from cnnviz_cli import api

    result = api.maximize(
        load_model(options), layer=options["layer_spec"], filters=options["filter_spec"],
        classes=options["classes"], task=options["task"], direction=options["direction"],
        param=options["param"], transforms=options["transforms"],
        l2=options["l2"], tv=options["tv"], blur=options["blur"], steps=options["steps"],
        lr=options["lr"], size=options["size"], seed=options["seed"], gif=options["gif_every"],
        batch_size=options["batch_size"], checkpoints=options["checkpoints"],
        objective=options["objective"], position=options["position"],
        direction_vector=options["direction_vector"],
        direction_images=list(options["direction_images"]) or None,
        diversity=options["diversity"], samples=options["samples"],
        from_images=list(options["from_images"]) or None, top=options["top"],
        projection=options["projection"], shard=options["shard"],
        **run_settings(ctx, options, images=False),
    )
    finish(ctx, result, options["print_json"])
