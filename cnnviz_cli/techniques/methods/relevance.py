"""Layer-wise relevance propagation as a cam method: the score passed back to the pixels layer
by layer under the rules a composite chooses (the propagation itself is techniques/lrp)."""

from __future__ import annotations

from cnnviz_cli.lazy import tf
from cnnviz_cli.options import Option
from cnnviz_cli.techniques.cam import Attribution, CamPass, method
from cnnviz_cli.techniques.lrp import COMPOSITES, MAX_POOL_MODES

COMPOSITE = Option("lrp_composite", "epsilon-plus-flat", "The rule of each layer: " + "; ".join(
    f"{name}: {(choose.__doc__ or '').split(chr(10))[0].rstrip('.')}"
    for name, choose in COMPOSITES.items()) + ".", tuple(COMPOSITES))
EPSILON = Option("lrp_epsilon", 1e-6, "The epsilon rule's stabiliser of the denominators.",
                 float, low=0, open_low=True)
GAMMA = Option("lrp_gamma", 0.25, "The gamma rule's extra weight of positive contributions.",
               float, low=0)
MAX_POOL = Option("lrp_max_pool", "winner", "; ".join(f"{name}: {meaning}" for name, meaning
                                                      in MAX_POOL_MODES.items()) + ".",
                  tuple(MAX_POOL_MODES))


@method("lrp", options=[COMPOSITE, EPSILON, GAMMA, MAX_POOL], signed=True)
def _lrp(cam_pass: CamPass) -> Attribution:
    """Bach et al., Montavon et al.: relevance conserved layer by layer, with its sign (the
    manifest records the conservation error)."""
    from cnnviz_cli.techniques.lrp import LrpExplainer, LrpOptions

    explainer, options = cam_pass.explainer, cam_pass.options
    settings = (options.lrp_composite, options.lrp_epsilon, options.lrp_gamma,
                options.lrp_max_pool)
    channels = cam_pass.inputs.shape[-1]
    low, high = (options.preprocess(tf.fill([1, 1, 1, channels], value))[0, 0, 0].numpy()
                 for value in (0.0, 255.0))

    def score(outputs, classes, regions):
        chosen = outputs[explainer.output_index] if isinstance(outputs, list) else outputs
        return explainer.head.score(chosen, classes, regions)

    relevance = explainer.reused(("lrp", *settings), lambda: LrpExplainer(
        explainer.model, score, LrpOptions(*settings[:3], low=low, high=high,
                                           max_pool=settings[3])))
    result = relevance(cam_pass.inputs, *cam_pass.selection)
    return Attribution(result.relevance, {"conservation_error": result.conservation})
