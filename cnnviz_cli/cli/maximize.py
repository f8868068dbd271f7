"""`cnnviz maximize`: images synthesised to excite filters of a layer, or classes."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    Run,
    filter_option,
    model_options,
    output_options,
    slug,
)
from cnnviz_cli.specs import parse_filters

FILTER_OPTIONS = OnlyWhen(("layer_spec", "filter_spec"), "without --class (which maximises "
                          "classes instead of filters)", lambda params: not params["classes"])


@click.command(cls=CnnvizCommand, rules=[FILTER_OPTIONS])
@model_options
@click.option("-l", "--layer", "layer_spec", default="auto", show_default=True, metavar="LAYER",
              help="Layer whose filters to maximise; auto = the deepest feature map.")
@filter_option("Filters to maximise [default: the first 16].")
@click.option("--class", "classes", multiple=True, metavar="CLASS",
              help="Maximise a class score instead of filters (index or label). Repeatable.")
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
@output_options
@click.pass_context
def maximize(ctx: click.Context, **options) -> None:
    """Synthesise images that excite a layer's filters, or classes.

    Writes a labelled grid (<out>/maximize-<layer>-grid.png), one PNG per filter
    (<out>/maximize-<layer>/filter-<i>.png) or class (<out>/maximize-class-<label>.png), and
    records in the manifest the activation reached and that of random noise.

    \b
    Example:
      cnnviz maximize -l block3_conv2 --filter 0-3 --filter 9 --steps 256 -o out/
      cnnviz maximize --class star --class ring -o out/
    """
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.render.grid import grid, upscale
    from cnnviz_cli.techniques.maximize import maximize_classes, maximize_filters

    run = Run(ctx)
    resolved = run.load_model()
    model, preprocess = resolved.model, resolved.preprocess
    shape = (*resolved.image_size(options["size"]), resolved.channels)
    config = _config(options, min(shape[:2]))
    if options["classes"]:
        count = int(model.outputs[0].shape[-1])
        targets = [resolved.class_index(spec, count) for spec in options["classes"]]
        with run.status(f"Maximising {len(targets)} classes"):
            result = maximize_classes(model, preprocess, targets, shape, config)
        names = [resolved.label(i) for i in targets]
        labels = [f"{name} {p:.2f}" for name, p in zip(names, result.probabilities, strict=True)]
        files = [f"maximize-class-{slug(name)}.png" for name in names]
        layer, stem, title = None, "maximize-classes", "classes (probability)"
    else:
        info = (last_feature_map(model) if options["layer_spec"] == "auto"
                else find_feature_map(model, options["layer_spec"]))
        targets = parse_filters(options["filter_spec"], int(info.output_shape[-1]), info.path)
        with run.status(f"Maximising {len(targets)} filters of {info.path}"):
            result = maximize_filters(model, info.path, preprocess, targets, shape, config)
        labels = [f"{i} · {ratio:.0f}x" if ratio < 999.5 else f"{i} · >999x"
                  for i, ratio in zip(targets, result.ratios, strict=True)]
        layer, stem, title = info.path, f"maximize-{slug(info.path)}", f"{info.path} (x noise)"
        files = [f"{stem}/filter-{i}.png" for i in targets]

    def picture(images, caption: str):
        return grid([upscale(to_uint8(image), 96) for image in images], labels, title=caption)

    for index, file in enumerate(files):
        run.outputs.save_png(file, to_uint8(result.images[index]),
                             {"layer": layer, **result.record(index)})
    summary = {"layer": layer, "targets": targets, "activations": result.scores,
               "noise_activations": result.noise_scores}
    run.outputs.save_png(f"{stem}-grid.png", picture(result.images, title), summary)
    if result.snapshots is not None:
        steps = [*range(0, options["steps"], options["gif_every"]), options["steps"]]
        frames = [picture(frame, f"{title} · step {step}")
                  for step, frame in zip(steps, result.snapshots, strict=True)]
        run.outputs.save_gif(f"{stem}.gif", frames, summary)
    run.finish()


def _config(options: dict, side: int):
    """The optimisation settings the options ask for."""
    from cnnviz_cli.techniques.maximize import MaximizeConfig
    from cnnviz_cli.techniques.optim import OptimConfig, Regularizers, Transforms

    transforms = Transforms.standard(side) if options["transforms"] == "standard" else None
    regularizers = Regularizers(options["l2"], options["tv"], options["blur"])
    optim = OptimConfig(options["steps"], options["lr"], transforms=transforms, anneal=True,
                        regularizers=regularizers, snapshot_every=options["gif_every"],
                        seed=options["seed"])
    return MaximizeConfig(optim, options["param"], options["batch_size"])

