"""`cnnviz dream`: DeepDream, amplify what some layers see in a photo."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, Run, image_options, model_options, output_options

GIF_SIDE = 384


@click.command(cls=CnnvizCommand)
@image_options
@model_options
@click.option("-l", "--layer", "layer_specs", multiple=True, metavar="LAYER[:CHANNEL][:WEIGHT]",
              help="A layer to amplify, optionally one channel (an integer) and a weight (with a "
              "decimal point): block3_conv2, block3_conv2:7, block4_conv:1.5, or `auto` (the "
              "last convolution but one, the default). Repeatable.")
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
    from dataclasses import replace

    from cnnviz_cli.io.images import resize
    from cnnviz_cli.models.layers import find_feature_map
    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer, default_layer

    run = Run(ctx)
    resolved = run.load_model()
    specs = options["layer_specs"] or ["auto"]
    layers = [DreamLayer.parse(default_layer(resolved.model) if spec == "auto" else spec)
              for spec in specs]
    layers = [replace(layer, path=find_feature_map(resolved.model, layer.path).path)
              for layer in layers]
    config = DreamConfig(options["octaves"], options["octave_scale"], options["steps"],
                         options["step_size"], options["tile"], options["gif_every"],
                         options["seed"])
    dreamer = Dreamer(resolved.model, layers, resolved.preprocess, config)
    for batch in run.image_batches(resolved):
        for image in batch:
            height, width = image.original.shape[:2]
            scale = options["size"] / max(height, width) if options["size"] else 1.0
            working = resize(image.original, (round(height * scale), round(width * scale)))
            result = dreamer(working)
            dreamed = resize(to_uint8(result.image), (height, width))
            record = {"input": str(image.path), "layers": [vars(layer) for layer in layers],
                      "objective_before": result.objective_before,
                      "objective_after": result.objective_after,
                      "octave_shapes": result.octave_shapes}
            run.outputs.save_png(f"{image.key}/dream.png", dreamed, record)
            if options["blend"] is not None:
                share = options["blend"]
                blended = share * dreamed + (1.0 - share) * image.original
                run.outputs.save_png(f"{image.key}/dream-blend.png",
                                     blended.round().astype("uint8"), {**record, "blend": share})
            if options["gif_every"]:
                side = GIF_SIDE / max(height, width)
                shape = (round(height * side), round(width * side))
                frames = [resize(to_uint8(frame), shape) for frame in result.frames]
                run.outputs.save_gif(f"{image.key}/dream.gif", frames, record)
    run.finish()
