"""`cnnviz cam`: class activation maps of every method, with optional faithfulness metrics."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    OnlyWhen,
    Run,
    image_options,
    mentions,
    model_options,
    output_options,
    slug,
)
from cnnviz_cli.cli.gates import Checks, gate_options

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
    """
    import numpy as np

    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets, resolve_methods
    from cnnviz_cli.techniques.metrics import faithfulness

    run = Run(ctx)
    resolved = run.load_model()
    methods = resolve_methods(options["method_specs"])
    model, layer_spec = resolved.model, options["layer_spec"]
    layer = last_feature_map(model) if layer_spec == "auto" else find_feature_map(model, layer_spec)
    height, width = resolved.image_size(options["size"])
    explainer = CamExplainer(model, layer.path, (height, width, resolved.channels),
                             options["output_spec"])
    targets = Targets(
        tuple(resolved.class_index(spec, explainer.num_classes) for spec in options["class_specs"]),
        options["top_k"],
    )
    settings = CamOptions(
        max_channels=options["max_n"], batch_size=options["batch_size"],
        samples=options["samples"], noise=options["noise"], ig_steps=options["ig_steps"],
        ig_baseline=options["ig_baseline"], seed=options["seed"], preprocess=resolved.preprocess,
    )
    checks = Checks(run, lambda spec: resolved.class_index(spec, explainer.num_classes))
    for batch in run.image_batches(resolved):
        inputs = resolved.prepare(np.stack([image.resized for image in batch]))
        result = explainer(inputs, checks.targets_for(batch, targets), methods, settings)
        scores = faithfulness(explainer, inputs, result, options["metric_steps"],
                              options["batch_size"]) if options["metrics"] else {}
        checked = checks.measure(batch, result)
        for item, image_index in enumerate(result.image_indices):
            _save_item(run, batch[image_index], result, item, scores, resolved.label, checked)
    checks.finish(run)


def _save_item(run: Run, image, result, item: int, scores: dict, label_of,
               checked: dict) -> None:
    """Overlay, bare heatmap (and .npy) of every method for one (image, class), and the panel."""
    from cnnviz_cli.render.cam import bare_heatmap, heat_overlay, method_panel
    from cnnviz_cli.render.report import score_text

    options, class_index = run.params, int(result.classes[item])
    label = label_of(class_index)
    record = {"input": str(image.path), "layer": result.layer_path, "class": class_index,
              "label": label, **result.score_fields(item)}
    overlays = []
    for method, maps in result.maps.items():
        name = f"{image.key}/cam-{slug(method.replace('+', 'p'))}-{slug(label)}"
        entry = {**record, "method": method, "heatmap": result.statistics(method, item),
                 **checked[method][item]}
        if method in scores:
            entry["deletion_auc"] = float(scores[method].deletion_auc[item])
            entry["insertion_auc"] = float(scores[method].insertion_auc[item])
        overlays.append(heat_overlay(image.original, maps[item], options["colormap"],
                                     options["alpha"]))
        run.outputs.save_png(f"{name}.png", overlays[-1], {**entry, "kind": "overlay"})
        heatmap = bare_heatmap(maps[item], image.original.shape[:2], options["colormap"])
        run.outputs.save_png(f"{name}-heatmap.png", heatmap, {**entry, "kind": "heatmap"})
        if options["save_npy"]:
            run.outputs.save_npy(f"{name}.npy", maps[item], {**entry, "kind": "map"})
    if len(overlays) > 1:
        panel = method_panel(image.original, overlays, list(result.maps),
                             f"{image.path.name} · {label} · {score_text(record)}")
        run.outputs.save_png(f"{image.key}/cam-panel-{slug(label)}.png", panel,
                             {**record, "kind": "panel", "methods": list(result.maps)})

