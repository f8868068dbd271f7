"""The grammars of option values (filter ranges, shards, dream layers): examples, and fuzzing
that any text parses cleanly or says how to write it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnviz_cli.errors import CnnvizError

FILTER_COUNT = 40


SPEC_CHARACTERS = st.text(alphabet="0123456789-,: ./allALL²١\n", max_size=20)


ANY_TEXT = st.one_of(st.text(max_size=30), SPEC_CHARACTERS)


def format_filters(bounds: list[tuple[int, int]]) -> str:
    return ",".join(f"{low}" if low == high else f" {low} - {high}" for low, high in bounds)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_filter_spec_of_any_text_parses_cleanly_or_says_how_to_write_it(text):
    from cnnviz_cli.specs import parse_filters

    try:
        indices = parse_filters(text, FILTER_COUNT)
    except CnnvizError as error:
        message = str(error)
        assert "`0-15`" in message or f"but the layer has {FILTER_COUNT} filters" in message
        return
    assert indices and len(set(indices)) == len(indices)
    assert all(0 <= index < FILTER_COUNT for index in indices)
    assert parse_filters(format_filters([(i, i) for i in indices]), FILTER_COUNT) == indices


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 5)), min_size=1, max_size=6))
def test_filter_spec_round_trips(pairs):
    from cnnviz_cli.specs import parse_filters

    bounds = [(low, low + width) for low, width in pairs]
    expected = list(dict.fromkeys(i for low, high in bounds for i in range(low, high + 1)))
    spec = format_filters(bounds)
    if max(expected) >= FILTER_COUNT:
        with pytest.raises(CnnvizError, match=f"asks for filter {max(expected)}"):
            parse_filters(spec, FILTER_COUNT)
    else:
        assert parse_filters(spec, FILTER_COUNT) == expected


def test_filter_spec_all_and_default():
    from cnnviz_cli.specs import parse_filters

    assert parse_filters(" ALL ", 5) == [0, 1, 2, 3, 4]
    assert parse_filters(None, 40) == list(range(16)) and parse_filters(None, 3) == [0, 1, 2]


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, st.text(alphabet="0123456789/ ", max_size=8)))
def test_shard_of_any_text_parses_cleanly_or_says_how_to_write_it(text):
    from cnnviz_cli.api.tables import parse_shard

    try:
        index, count = parse_shard(text)
    except CnnvizError as error:
        assert "expects K/N with 1 <= K <= N" in str(error)
        return
    assert 1 <= index <= count
    assert parse_shard(f"{index}/{count}") == (index, count)


@given(st.integers(1, 10**6), st.integers(0, 10**6), st.sampled_from(["{}/{}", " {} / {} "]))
def test_shard_round_trips(index, extra, template):
    from cnnviz_cli.api.tables import parse_shard

    assert parse_shard(template.format(index, index + extra)) == (index, index + extra)
    with pytest.raises(CnnvizError):
        parse_shard(f"{index + extra + 1}/{index + extra}")


def format_dream_layer(layer) -> str:
    channel = "" if layer.channel is None else f":{layer.channel}"
    weight = "" if layer.weight == 1.0 else f":{layer.weight!r}"
    return f"{layer.path}{channel}{weight}"


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_dream_layer_spec_of_any_text_parses_cleanly_or_says_how_to_write_it(text):
    from cnnviz_cli.techniques.dream import DreamLayer

    try:
        layer = DreamLayer.parse(text)
    except CnnvizError as error:
        assert "LAYER:CHANNEL:WEIGHT" in str(error) and repr(text) in str(error)
        return
    assert layer.path and ":" not in layer.path and np.isfinite(layer.weight)
    assert layer.channel is None or layer.channel >= 0
    assert DreamLayer.parse(format_dream_layer(layer)) == layer


@settings(max_examples=300, deadline=None)
@given(path=st.text(min_size=1, max_size=12).filter(lambda text: ":" not in text),
       channel=st.none() | st.integers(0, 10**6),
       weight=st.floats(allow_nan=False, allow_infinity=False))
def test_dream_layer_spec_round_trips(path, channel, weight):
    from cnnviz_cli.techniques.dream import DreamLayer

    layer = DreamLayer(path, weight, channel)
    assert DreamLayer.parse(format_dream_layer(layer)) == layer


def test_filter_spec_errors_are_cnnviz_errors():
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.specs import parse_filters

    assert parse_filters("3, 0-1,all", 4) == [0, 1, 2, 3]
    with pytest.raises(CnnvizError, match="not a filter spec"):
        parse_filters("x", 4)
    with pytest.raises(CnnvizError, match=r"asks for filter 9, but layer 'conv' has 4 filters"):
        parse_filters("1,9", 4, "conv")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("conv", ("conv", 1.0, None)), ("conv:2", ("conv", 1.0, 2)),
     ("conv:1.5", ("conv", 1.5, None)), ("base/conv:2:0.5", ("base/conv", 0.5, 2))],
)
def test_layer_specs(spec, expected):
    from cnnviz_cli.techniques.dream import DreamLayer

    layer = DreamLayer.parse(spec)
    assert (layer.path, layer.weight, layer.channel) == expected


@pytest.mark.parametrize("spec", ["conv:x", "conv:1:2:3", "conv:1.5:2"])
def test_bad_layer_specs_say_how_to_write_them(spec):
    from cnnviz_cli.techniques.dream import DreamLayer

    with pytest.raises(CnnvizError, match="LAYER:CHANNEL"):
        DreamLayer.parse(spec)

