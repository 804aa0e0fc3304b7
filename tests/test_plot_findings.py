"""tb_xai.plot's findings timeline and quality figure: saved non-blank, drawing run.findings() and run.metrics()."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from matplotlib import collections as mcollections, image as mimage

from tb_xai import metadata, plot, quality as Q, summary


@pytest.fixture(scope="module")
def run(tmp_path_factory, tabular_data):
    """A small MLP, 5 epochs, saliency and SmoothGrad with every quality figure."""
    import keras
    import tb_xai
    from tb_xai.methods import SmoothGrad

    x, y, feature_names, class_names = tabular_data
    log_dir = str(tmp_path_factory.mktemp("plot_findings"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(log_dir, x[:16], labels=y[:16], feature_names=feature_names,
                                          class_names=class_names, methods=["saliency", SmoothGrad(samples=8)],
                                          quality=Q.Quality(Q.GROUPS, seed_probes=4, points=8), max_overhead=None)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[callback])
    return tb_xai.load(log_dir)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """Four steps of one method whose maps never change, with no quality scalars: nothing to find."""
    import tb_xai

    log_dir = tmp_path_factory.mktemp("plain")
    writer = summary.SummaryWriter(str(log_dir / metadata.DEFAULT_SUBDIR))
    for step in range(4):
        writer.write(summary.predictions_pb(np.tile([0.8, 0.2], (5, 1)).astype(np.float32)), step)
        writer.write(summary.attribution_pb("ig", "x", np.tile(np.arange(6.0, 0, -1), (5, 1)).astype(np.float32),
                                            modality=metadata.TABULAR), step)
    writer.close()
    return tb_xai.load(str(log_dir))


def _saved_non_blank(fig, tmp_path, name: str) -> None:
    png, svg = str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.svg")
    fig.savefig(png, dpi=60)
    fig.savefig(svg)
    pixels = mimage.imread(png)[..., :3]
    assert (pixels.min(axis=-1) < 0.97).mean() > 0.02
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert os.path.getsize(svg) > 5000


def test_the_findings_timeline_marks_every_finding_and_lists_them_in_words(run, tmp_path):
    found = run.findings()
    assert found
    fig = plot.findings_timeline(run, most=3)
    _saved_non_blank(fig, tmp_path, "timeline")
    timeline, words = fig.axes[:2]
    points = np.concatenate([c.get_offsets() for c in timeline.collections])
    assert sorted(points[:, 0].tolist()) == sorted(f["step"] for f in found)
    rows = [t.get_text() for t in timeline.get_yticklabels()]
    methods = sorted({f["method"] for f in found if f["method"] is not None})
    assert rows == methods + (["predictions"] if any(f["method"] is None for f in found) else [])
    for (x, y), finding in zip(points, [f for kind in _kinds_drawn(found) for f in found if f["kind"] == kind]):
        row = finding["method"] if finding["method"] is not None else "predictions"
        assert x == finding["step"] and round(y) == rows.index(row)
    text = words.texts[0].get_text().splitlines()
    assert text[:3] == [f["message"] for f in found[:3]]  # messages start "step N: " already
    assert (text[3] == f"... and {len(found) - 3} more") if len(found) > 3 else len(text) == len(found)
    assert {t.get_text() for t in timeline.get_legend().get_texts()} == {f["kind"].replace("_", " ") for f in found}


def _kinds_drawn(found):
    from tb_xai.findings import KINDS

    return [kind for kind in KINDS if any(f["kind"] == kind for f in found)]


def test_the_timeline_says_when_nothing_beat_the_noise(plain_run, tmp_path):
    assert plain_run.findings() == []
    fig = plot.findings_timeline(plain_run)
    _saved_non_blank(fig, tmp_path, "empty")
    assert fig.axes[0].get_title() == "no findings: no change beat the noise floor"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ig"]
    with pytest.raises(ValueError, match="most must be at least 0; received -1"):
        plot.findings_timeline(plain_run, most=-1)


def test_the_quality_figure_draws_the_metrics_with_the_noise_band(run, tmp_path):
    fig = plot.quality(run)
    _saved_non_blank(fig, tmp_path, "quality")
    faithful, sanity, drift = fig.axes[:3]
    for i, method in enumerate(["saliency", "smoothgrad"]):
        m = run.metrics(method)
        ys = lambda ax: [line.get_ydata() for line in ax.lines if line.get_color() == f"C{i}"]  # noqa: E731
        drawn = ys(faithful)
        order = ["deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random"]
        assert len(drawn) == 4
        for figure, values in zip(order, drawn):
            np.testing.assert_allclose(values, m[figure], err_msg=figure)
        np.testing.assert_allclose(ys(sanity)[0], m["sanity_spearman"])
        np.testing.assert_allclose(ys(drift)[0], m["ndcg_reference"])
        band = [c for c in drift.collections if isinstance(c, mcollections.PolyCollection)][i]
        vertices = band.get_paths()[0].vertices
        assert vertices[:, 1].max() == pytest.approx(1.0)
        assert vertices[:, 1].min() == pytest.approx(np.nanmin(m["ndcg_floor"]))
    # The thresholds findings use are drawn: the sanity level and the drift alarm.
    assert any(np.allclose(line.get_ydata(), 0.7) for line in sanity.lines)
    assert any(np.allclose(line.get_ydata(), 0.9) for line in drift.lines)
    one = plot.quality(run, ["smoothgrad"], k=3)
    assert one.axes[2].get_ylabel() == "nDCG@3"
    with pytest.raises(KeyError, match=r"no attributions for methods \['lime'\]"):
        plot.quality(run, ["lime"])


def test_a_quality_figure_not_logged_says_so(plain_run, tmp_path):
    fig = plot.quality(plain_run)
    _saved_non_blank(fig, tmp_path, "plain_quality")
    faithful, sanity, drift = fig.axes[:3]
    assert [t.get_text() for t in faithful.texts] == ['faithfulness not logged (quality="all")']
    assert [t.get_text() for t in sanity.texts] == ["sanity not logged"]
    assert not drift.texts and len(drift.lines) == 2  # nDCG is computed from the maps, with its alarm level
