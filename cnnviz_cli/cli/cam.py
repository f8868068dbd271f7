"""`cnnviz cam`: class activation maps of every method, with optional faithfulness metrics."""

import click

from cnnviz_cli.api.trust import FAITHFULNESS_METRICS, TRUST_METRICS
from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    checkpoint_option,
    computing_model_options,
    finish,
    image_options,
    load_model,
    mentions,
    output_options,
    quiet,
    run_settings,
)
from cnnviz_cli.cli.gates import GATE_EXIT_CODE, gate_options, report_checks
from cnnviz_cli.cli.heads import cam_head_options

METHOD_NAMES = (
    "gradcam, gradcam++, xgradcam, layercam, hirescam, eigencam, scorecam, faster-scorecam, "
    "guided-gradcam, saliency, smoothgrad, integrated-gradients, gradient-input, occlusion, rise"
)


SEEDED_METRICS = {"road", "mufidelity", "stability", "randomisation", "random-logit"}

RULES = [
    OnlyWhen(("max_n",), "when --method includes faster-scorecam",
             lambda params: mentions(params["method_specs"], "faster-scorecam")),
    OnlyWhen(("samples", "noise"), "when --method includes smoothgrad",
             lambda params: mentions(params["method_specs"], "smoothgrad")),
    OnlyWhen(("ig_steps", "ig_baseline"), "when --method includes integrated-gradients",
             lambda params: mentions(params["method_specs"], "integrated-gradients")),
    OnlyWhen(("patch", "stride", "fill"), "when --method includes occlusion",
             lambda params: mentions(params["method_specs"], "occlusion")),
    OnlyWhen(("masks",), "when --method includes rise",
             lambda params: mentions(params["method_specs"], "rise")),
    OnlyWhen(("seed",), "when --method includes smoothgrad or rise, or integrated-gradients "
             "with --ig-baseline noise, or with --sanity or a --metric that draws at random",
             lambda params: mentions(params["method_specs"], "smoothgrad", "rise") or (
                 mentions(params["method_specs"], "integrated-gradients")
                 and params["ig_baseline"] == "noise") or params["sanity"]
             or bool(set(params["metric_names"]) & SEEDED_METRICS)),
    OnlyWhen(("metric_steps",), "with --metrics", lambda params: params["metrics"]),
]


@click.command(cls=CnnvizCommand, rules=RULES, context_settings={"default_map": {"batch_size": 16}})
@image_options
@computing_model_options
@click.option("--method", "method_specs", multiple=True, metavar="METHOD",
              help=f"{METHOD_NAMES}, or all; repeatable or a comma list [default: gradcam].")
@click.option("--class", "class_specs", multiple=True, metavar="INDEX|LABEL",
              help="Class to explain, repeatable [default: each image's top-1 prediction].")
@click.option("--top-k", type=click.IntRange(min=1), help="Also explain the K top predictions.")
@click.option("-l", "--layer", "layer_spec", default="auto", show_default=True, metavar="LAYER",
              help="A 4-D feature-map layer; auto = the deepest map larger than 1x1 before "
              "the classifier head (VGG: block5_conv3; see `cnnviz layers`).")
@click.option("--output", "output_spec", metavar="NAME|INDEX",
              help="Which output of a model with several outputs [default: the first].")
@cam_head_options
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
@click.option("--patch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Occlusion: side of the square patch slid over the input, in pixels.")
@click.option("--stride", type=click.IntRange(min=1), default=8, show_default=True,
              help="Occlusion: pixels between patch positions.")
@click.option("--fill", type=click.Choice(["mean", "black", "blur"]), default="mean",
              show_default=True,
              help="Occlusion: what hides the patch: the image's mean colour, black, or a blur.")
@click.option("--masks", type=click.IntRange(min=1), default=1000, show_default=True,
              help="RISE: random masks scored per image (seeded with --seed).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="SmoothGrad noise, the noise baseline, the RISE masks and the random "
              "draws of the trust metrics.")
@click.option("--colormap", default="turbo", show_default=True,
              help="Matplotlib colour map of the heatmaps.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="Opacity of the hottest colours over the image (cold areas stay clear).")
@click.option("--save-npy", is_flag=True, help="Also write the raw maps as .npy files.")
@click.option("--metrics", is_flag=True,
              help="Deletion and insertion AUC of every heatmap (and a ranking of the methods).")
@click.option("--metric-steps", type=click.IntRange(min=2), default=32, show_default=True,
              help="Pixel fractions evaluated along the deletion and insertion curves.")
@click.option("--metric", "metric_names", multiple=True, metavar="NAME",
              type=click.Choice(list(TRUST_METRICS), case_sensitive=False),
              help="A trust metric of every heatmap, repeatable: "
              + "; ".join(f"{name}: {metric.meaning}" for name, metric in TRUST_METRICS.items())
              + " (means per method in a table).")
@click.option("--sanity", is_flag=True,
              help="Also draw <out>/<image>/cam-sanity-<label>.png: per method, the map after "
              "re-initialising the layers of a copy of the model from the top down, step by "
              "step, with its similarity to the trained model's (computes randomisation).")
@gate_options
@checkpoint_option
@output_options
@click.pass_context
def cam(ctx: click.Context, **options) -> None:
    """Heatmaps: which pixels drove a class score (the CAM family).

    For each image, class and method: the heatmap over the image
    (<out>/<image>/cam-<method>-<label>.png), the bare heatmap (...-heatmap.png) and, with
    several methods, a side-by-side panel (cam-panel-<label>.png). The score explained is
    pre-activation (a final softmax or sigmoid is left out); --task says what the head is
    (README: "Model heads"). --batch-size counts images per compiled pass: input images, or
    changed copies for ScoreCAM, --metrics, the gradient attributions and the perturbation
    methods (occlusion, rise), which need only the model's scores.
    Exit 3 when a gate (--fail-under/--fail-over) fails, after everything is written.

    \b
    Example:
      cnnviz cam sample_images/ --method gradcam,scorecam,layercam --metrics -o out/
      cnnviz cam val/ --targets val.csv --save-npy -o old/
      cnnviz cam val/ --targets val.csv --baseline old/ --fail-under pointing=0.9 -o new/
      cnnviz cam sample_images/star.png --method gradcam,saliency --sanity -o sanity/
      cnnviz cam val/ --metric road --metric randomisation --fail-over randomisation=0.5 -o trust/
      cnnviz cam sample_images/star.png --checkpoint ck/epoch_00.weights.h5 \\
                 --checkpoint ck/epoch_06.weights.h5 --tensorboard logs/ -o epochs/
    """
    from cnnviz_cli import api

    result = api.cam(
        load_model(options), options["images"], methods=options["method_specs"] or ("gradcam",),
        classes=options["class_specs"], top_k=options["top_k"], threshold=options["threshold"],
        layer=options["layer_spec"], output=options["output_spec"], task=options["task"],
        direction=options["direction"], reference=list(options["reference"]) or None,
        max_n=options["max_n"], samples=options["samples"],
        noise=options["noise"], ig_steps=options["ig_steps"], ig_baseline=options["ig_baseline"],
        patch=options["patch"], stride=options["stride"], fill=options["fill"],
        masks=options["masks"], seed=options["seed"], colormap=options["colormap"],
        alpha=options["alpha"], save_npy=options["save_npy"], metrics=_metrics(options),
        sanity=options["sanity"],
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


def _metrics(options: dict) -> bool | list[str]:
    """--metrics (deletion and insertion) and the --metric names, as the API takes them."""
    if not options["metric_names"]:
        return options["metrics"]
    return [*(FAITHFULNESS_METRICS if options["metrics"] else ()), *options["metric_names"]]
