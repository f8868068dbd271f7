"""`--method lrp`: the LRP technique as a cam method on the demo model (pointing game, sanity,
metrics and gates, options) and the pointing game's tolerance it is compared with."""

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError


def test_pointing_tolerance_counts_a_peak_near_the_object():
    from cnnviz_cli.techniques.metrics import pointing_game

    masks = np.zeros((1, 20, 20), bool)
    masks[0, 8:12, 8:12] = True
    heat = np.zeros((1, 20, 20), np.float32)
    heat[0, 8, 14] = 1.0  # 3 px right of the object
    assert not pointing_game(heat, masks)[0]
    assert not pointing_game(heat, masks, tolerance=2)[0]
    assert pointing_game(heat, masks, tolerance=3)[0]


def test_lrp_points_at_the_shape_at_least_as_often_as_gradcam(demo_resolved):
    from cnnviz_cli.demo.shapes import make_pairs
    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets
    from cnnviz_cli.techniques.metrics import pointing_game

    images, labels, masks = make_pairs(24, 128, 7)
    inputs = np.asarray(demo_resolved.prepare(images.astype(np.float32)))
    model = demo_resolved.model
    explainer = CamExplainer(model, last_feature_map(model).path, (128, 128, 3))
    result = explainer(inputs, Targets(per_image=tuple(int(label) for label in labels[:, 0])),
                       ["gradcam", "lrp"], CamOptions(batch_size=16,
                                                      preprocess=demo_resolved.preprocess))
    tolerance = round(15 * 128 / 224)  # Zhang et al.'s 15 px at 224 px
    hits = {name: pointing_game(maps, masks[:, 0], tolerance).mean()
            for name, maps in result.maps.items()}
    assert hits["lrp"] >= hits["gradcam"] and hits["lrp"] >= 0.9
    assert result.attributions["lrp"].shape == (24, 128, 128, 3)
    conservation = result.extras["lrp"]["conservation_error"]
    assert conservation.shape == (24,) and np.isfinite(conservation).all()


@pytest.mark.slow  # over ~3 s
def test_lrp_runs_through_metrics_gates_and_the_sanity_check(sample_dir):
    import cnnviz_cli

    result = cnnviz_cli.cam("demo", sample_dir / "pair.png", methods=["lrp"], size=64,
                            metrics=True, sanity=True, lrp_composite="epsilon-gamma-box",
                            fail_under=["insertion=0"])
    record = next(r for r in result.records() if r["kind"] == "overlay")
    assert {"deletion_auc", "insertion_auc", "conservation_error", "randomisation"} <= set(record)
    assert record["randomisation"] < 0.99  # the maps change as the layers are re-initialised
    assert result.passed and result.gates[0]["method"] == "lrp"
    assert "--lrp-composite epsilon-gamma-box" in result.command_line


def test_lrp_options_need_the_method():
    import cnnviz_cli

    with pytest.raises(CnnvizError, match="--lrp-gamma applies only when --method includes lrp"):
        cnnviz_cli.cam("demo", "sample_images/star.png", methods=["gradcam"], lrp_gamma=0.5)
