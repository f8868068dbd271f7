"""Column heads of the sanity figure: wrapped to their column, never the same for two layers."""

from hypothesis import given
from hypothesis import strategies as st

from cnnviz_cli.render.grid import column_heads, wrap_heads

LAYERS = ["trained model", "dense", "batch_normalization_2", "conv2d_2", "batch_normalization_1",
          "conv2d_1", "batch_normalization", "conv2d"]


def fits(width: int):
    return lambda text: len(text) <= width


def test_layer_names_wrap_whole_when_they_fit_in_two_lines():
    wrapped = wrap_heads(LAYERS, fits(15))
    assert ["".join(lines) for lines in wrapped] == LAYERS
    assert wrapped[2] == ["batch_", "normalization_2"]
    assert all(len(line) <= 15 for lines in wrapped for line in lines)


def test_long_names_keep_their_end_and_stay_apart():
    names = ["model/block1/batch_normalization_1", "model/block2/batch_normalization_1"]
    wrapped = wrap_heads(names, fits(12))
    assert wrapped[0] != wrapped[1]
    assert all(lines[0].startswith("…") and names[index].endswith(lines[-1])
               for index, lines in enumerate(wrapped))


@given(st.lists(st.text("ab_/-.xyz ", min_size=1, max_size=40), min_size=1, max_size=6,
                unique=True), st.integers(4, 20))
def test_heads_fit_and_different_names_read_differently(names, width):
    wrapped = wrap_heads(names, fits(width))
    assert all(len(line) <= width for lines in wrapped for line in lines)
    shown = ["\n".join(lines) for lines in wrapped]
    assert len(set(shown)) == len(names) or any(len(name) > 8 * width for name in names)


def test_the_strip_grows_with_the_lines():
    one = column_heads(["a", "b"], 120, 250)
    two = column_heads(["batch_normalization_12", "b"], 60, 130)
    assert one.shape[1] == 250 and two.shape[0] > one.shape[0]
