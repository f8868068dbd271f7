"""`cnnviz cam`: class activation maps of every method, with optional faithfulness metrics."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    checkpoint_option,
    finish,
    image_options,
    load_model,
    mentions,
    model_options,
    output_options,
    quiet,
    run_settings,
)
from cnnviz_cli.cli.gates import GATE_EXIT_CODE, gate_options, report_checks

METHOD_NAMES = (
    "gradcam, gradcam++, xgradcam, layercam, hirescam, eigencam, scorecam, faster-scorecam, "
    "guided-gradcam, saliency, smoothgrad, integrated-gradients, gradient-input"
)


RULES = [
    OnlyWhen(("max_n",), "when --method includes faster-scorecam",
             lambda params: mentions(params["method_specs"], "faster-scorecam")),
    OnlyWhen(("samples", "noise"), "when --method includes smoothgrad",
             lambda params: mentions(params["method_specs"], "smoothgrad")),
    OnlyWhen(("ig_steps", "ig_baseline"), "when --method includes integrated-gradients",
             lambda params: mentions(params["method_specs"], "integrated-gradients")),
    OnlyWhen(("seed",), "when --method includes smoothgrad, or integrated-gradients with "
             "--ig-baseline noise",
             lambda params: mentions(params["method_specs"], "smoothgrad") or (
                 mentions(params["method_specs"], "integrated-gradients")
                 and params["ig_baseline"] == "noise")),
    OnlyWhen(("metric_steps",), "with --metrics", lambda params: params["metrics"]),
]


@click.command(cls=CnnvizCommand, rules=RULES, context_settings={"default_map": {"batch_size": 16}})
@image_options
@model_options
@click.option("--method", "method_specs", multiple=True, metavar="METHOD",
              help=f"{METHOD_NAMES}, or all; repeatable or a comma list [default: gradcam].")
@click.option("--class", "class_specs", multiple=True, metavar="INDEX|LABEL",
              help="Class to explain, repeatable [default: each image's top-1 prediction].")
@click.option("--top-k", type=click.IntRange(min=1), help="Also explain the K top predictions.")
@click.option("-l", "--layer", "layer_spec", default="auto", show_default=True, metavar="LAYER",
              help="A 4-D feature-map layer; auto = the deepest one, the last before the "
              "classifier head.")
@click.option("--output", "output_spec", metavar="NAME|INDEX",
              help="Which output of a model with several outputs [default: the first].")
@click.option("--max-n", type=click.IntRange(min=1), default=10, show_default=True,
              help="Faster-ScoreCAM: channels of largest activation variance to score.")
@click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="SmoothGrad: noisy copies of the input averaged.")
@click.option("--noise", type=click.FloatRange(min=0), default=0.15, show_default=True,
              help="SmoothGrad: noise standard deviation as a fraction of the input's range.")
@click.option("--ig-steps", type=click.IntRange(min=1), default=32, show_default=True,
              help="Integrated gradients: points on the path from the baseline to the input.")
@click.option("--ig-baseline", type=click.Choice(["black", "blur", "noise"]), default="blur",
              show_default=True, help="Integrated gradients: the image the path starts from.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="SmoothGrad noise and the noise baseline.")
@click.option("--colormap", default="turbo", show_default=True,
              help="Matplotlib colour map of the heatmaps.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="Opacity of the hottest colours over the image (cold areas stay clear).")
@click.option("--save-npy", is_flag=True, help="Also write the raw maps as .npy files.")
@click.option("--metrics", is_flag=True,
              help="Deletion and insertion AUC of every heatmap (and a ranking of the methods).")
@click.option("--metric-steps", type=click.IntRange(min=2), default=32, show_default=True,
              help="Pixel fractions evaluated along the deletion and insertion curves.")
@gate_options
@checkpoint_option
@output_options
@click.pass_context
def cam(ctx: click.Context, **options) -> None:
    """Heatmaps: which pixels drove a class score (the CAM family).

    For each image, class and method: the heatmap over the image
    (<out>/<image>/cam-<method>-<label>.png), the bare heatmap (...-heatmap.png) and, with
    several methods, a side-by-side panel (cam-panel-<label>.png). The score explained is the
    class logit (a final softmax is left out). --batch-size counts images per compiled pass:
    input images, or changed copies for ScoreCAM, --metrics and the gradient attributions.
    Exit 3 when a gate (--fail-under/--fail-over) fails, after everything is written.

    \b
    Example:
      cnnviz cam sample_images/ --method gradcam,scorecam,layercam --metrics -o out/
      cnnviz cam val/ --targets val.csv --save-npy -o old/
      cnnviz cam val/ --targets val.csv --baseline old/ --fail-under pointing=0.9 -o new/
      cnnviz cam sample_images/star.png --checkpoint ck/epoch_00.weights.h5 \\
                 --checkpoint ck/epoch_06.weights.h5 --tensorboard logs/ -o out/
    """
    from cnnviz_cli import api

    result = api.cam(
        load_model(options), options["images"], methods=options["method_specs"] or ("gradcam",),
        classes=options["class_specs"], top_k=options["top_k"], layer=options["layer_spec"],
        output=options["output_spec"], max_n=options["max_n"], samples=options["samples"],
        noise=options["noise"], ig_steps=options["ig_steps"], ig_baseline=options["ig_baseline"],
        seed=options["seed"], colormap=options["colormap"], alpha=options["alpha"],
        save_npy=options["save_npy"], metrics=options["metrics"],
        metric_steps=options["metric_steps"], targets=options["targets"],
        baseline=options["baseline"], fail_under=options["fail_under"],
        fail_over=options["fail_over"], fail_under_each=options["fail_under_each"],
        fail_over_each=options["fail_over_each"], checkpoints=options["checkpoints"],
        **run_settings(ctx, options),
    )
    failed = 0 if options["checkpoints"] else report_checks(result, quiet(ctx))
    finish(ctx, result, options["print_json"])
    if failed:
        click.echo(f"{failed} of {len(result.gates)} gate(s) failed.", err=True)
        raise click.exceptions.Exit(GATE_EXIT_CODE)
