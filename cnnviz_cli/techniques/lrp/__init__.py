"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) for Keras models.

The explained score of each item is passed back to the input layer by layer, each layer
redistributing the relevance it received over its inputs by a rule (`rules`) that a
composite chooses per layer; the graph is canonised first (`graph`). One compiled function
per model and input shape computes the signed relevance of every input value with one
backward pass; the relevance of an item sums to its score up to what biases, epsilon and
the stabilisers absorb (the conservation error).

The composites and rules (`rules`) import TensorFlow lazily, so the cam method that offers LRP
can declare its options without it; the explainer is imported on first use.
"""

from cnnviz_cli.techniques.lrp.rules import COMPOSITES, MAX_POOL_MODES

__all__ = ["COMPOSITES", "MAX_POOL_MODES", "LrpExplainer", "LrpOptions", "LrpResult",
           "relevance"]


def __getattr__(name: str):
    """LrpExplainer, LrpOptions, LrpResult and relevance, from the explainer module."""
    if name in __all__:
        from cnnviz_cli.techniques.lrp import explainer

        return getattr(explainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
