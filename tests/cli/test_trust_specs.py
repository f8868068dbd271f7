"""A trust metric is added in one place: its `trust_metric` declaration."""

import click


def test_a_registered_metric_joins_the_metric_option_of_cam():
    from cnnviz_cli.api.cam import table
    from cnnviz_cli.api.trust import resolve_metrics
    from cnnviz_cli.cli.common import click_parameter
    from cnnviz_cli.techniques.trust import TRUST_METRICS, trust_metric

    def metric_option():
        return next(option for option in table() if option.name == "metric")

    @trust_metric("test-peak", True, "heat of the hottest pixel")
    def _peak(trust):
        return {"test_peak": trust.of_maps(lambda maps: maps.max(axis=(1, 2)))}

    table.cache_clear()
    try:
        parameter = click_parameter(metric_option())
        _, text = parameter.get_help_record(click.Context(click.Command("cam")))
        assert list(parameter.type.choices) == [
            "road", "mufidelity", "stability", "randomisation", "random-logit", "sparseness",
            "complexity", "test-peak"]
        assert "; test-peak: heat of the hottest pixel (means per method" in text
        assert resolve_metrics(["Test-Peak"]) == ["test-peak"]
        assert TRUST_METRICS["test-peak"].field == "test_peak"
    finally:
        del TRUST_METRICS["test-peak"]
        table.cache_clear()
    assert "test-peak" not in metric_option().kind
