"""Run's notebook accessors: importance, ranking, stability, agreement and the tidy DataFrame.

They must give the numbers the dashboard draws: the plugin's routes and these accessors both go through
tb_xai.aggregate; these tests check them against hand-computed means and aggregate's functions on runs the
callback really wrote.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import tb_xai
from tb_xai import aggregate


@pytest.fixture(scope="module")
def tabular(tabular_run):
    return tb_xai.load(tabular_run.log_dir)


@pytest.fixture(scope="module")
def image(image_run):
    return tb_xai.load(image_run.log_dir)


def test_importance_is_the_mean_map_over_probes(tabular, image):
    attributions = tabular.attributions("saliency")
    np.testing.assert_allclose(tabular.importance("saliency"), np.abs(attributions).mean(axis=1), rtol=1e-5)
    maps = np.abs(image.attributions("integrated_gradients")).sum(axis=-1)
    importance = image.importance("integrated_gradients")
    assert importance.shape == (len(image.steps("integrated_gradients")), 8, 8)
    np.testing.assert_allclose(importance, maps.mean(axis=1), rtol=1e-5)


def test_importance_for_one_target_counts_only_its_probes(tabular):
    targets = tabular.targets()
    attributions = tabular.attributions("gradient_x_input")
    importance = tabular.importance("gradient_x_input", signed=True, target=1)
    for step in (0, len(targets) - 1):
        chosen = targets[step] == 1
        expected = attributions[step][chosen].mean(axis=0) if chosen.any() else np.full(30, np.nan)
        np.testing.assert_allclose(importance[step], expected, rtol=1e-5)


def test_ranking_names_features_by_importance(tabular, image, tabular_run):
    importance = tabular.importance("integrated_gradients")
    ranking = tabular.ranking("integrated_gradients")
    assert sorted(ranking) == sorted(tabular_run.feature_names)
    assert ranking[0] == tabular_run.feature_names[int(np.argmax(importance[-1]))]
    assert ranking != tabular.ranking("integrated_gradients", step=0) or np.allclose(importance[0], importance[-1])
    top_pixel = np.unravel_index(np.argmax(image.importance("saliency")[-1]), (8, 8))
    assert image.ranking("saliency")[0] == f"pixel ({top_pixel[0]}, {top_pixel[1]})"
    with pytest.raises(IndexError, match="step position 99 is out of range for 20 logged steps"):
        tabular.ranking("saliency", step=99)


def test_stability_and_agreement_come_from_the_shared_aggregation(tabular):
    stability = tabular.stability("saliency", k=5)
    importance = tabular.importance("saliency")
    expected = aggregate.rank_stability(importance, 5)
    for key in ("spearman_previous", "topk_previous", "spearman_last", "topk_last"):
        np.testing.assert_allclose(stability[key], expected[key])
    assert stability["steps"].tolist() == tabular.steps("saliency") and stability["k"] == 5
    pairs = tabular.agreement(k=5)
    methods = sorted(m for m in tabular.methods if tabular.steps(m))
    assert [p["methods"] for p in pairs] == [[a, b] for i, a in enumerate(methods) for b in methods[i + 1:]]
    for pair in pairs:
        first, second = (tabular.importance(m) for m in pair["methods"])
        assert pair["spearman"][-1] == pytest.approx(aggregate.spearman(first[-1], second[-1]))


def test_to_dataframe_is_tidy_and_sums_back(tabular, image, tabular_run):
    df = tabular.to_dataframe()
    assert list(df.columns) == ["method", "input", "step", "probe", "feature", "channel", "attribution", "target"]
    assert (df.channel == -1).all()  # tabular attributions have no channel axis
    assert sorted(df.method.unique()) == sorted(tabular.methods)
    steps, probes, features = tabular.attributions("saliency").shape
    one = df[df.method == "saliency"]
    assert len(one) == steps * probes * features
    assert set(one.feature) == set(tabular_run.feature_names)
    last = one[one.step == tabular.steps("saliency")[-1]]
    by_feature = last.groupby("feature").attribution.apply(lambda a: a.abs().mean())
    np.testing.assert_allclose(by_feature[tabular_run.feature_names].to_numpy(),
                               tabular.importance("saliency")[-1], rtol=1e-5)
    np.testing.assert_array_equal(
        one[one.feature == tabular_run.feature_names[0]].target.to_numpy().reshape(steps, probes),
        tabular.targets(),
    )
    grad_cam = image.to_dataframe(methods=["grad_cam"])
    assert len(grad_cam) == image.attributions("grad_cam").size
    assert grad_cam.feature.iloc[9] == "pixel (1, 1)"
    # the DataFrame names a map's elements as the dashboard, ranking and plots do: the layout's names
    first_probe = grad_cam[(grad_cam.step == 0) & (grad_cam.probe == 0)]
    assert list(dict.fromkeys(first_probe.feature)) == image.map_names("grad_cam")
    assert set(image.ranking("grad_cam")) == set(image.map_names("grad_cam"))


def test_to_dataframe_without_pandas_says_how_to_get_it(tabular, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="to_dataframe needs pandas.*pip install pandas"):
        tabular.to_dataframe()
