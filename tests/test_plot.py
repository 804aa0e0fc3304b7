"""tb_xai.plot: every view saves to PNG, SVG and PDF with something drawn, and draws the aggregated numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib import image as mimage

from tb_xai import aggregate, plot

VIEWS = {
    "evolution_heatmap": lambda run, method: plot.evolution_heatmap(run, method),
    "top_k_lines": lambda run, method: plot.top_k_lines(run, method, k=4),
    "probe_filmstrip": lambda run, method: plot.probe_filmstrip(run, method, 1),
    "stability": lambda run, method: plot.stability(run, method, k=5),
    "agreement": lambda run, method: plot.agreement(run, k=5),
}


@pytest.fixture(scope="module")
def runs(tabular_run, image_run):
    import tb_xai

    return {"tabular": tb_xai.load(tabular_run.log_dir), "image": tb_xai.load(image_run.log_dir)}


def _drawn_share(png_path: str) -> float:
    """Share of pixels that are not the (white) background."""
    pixels = mimage.imread(png_path)[..., :3]
    return float((pixels.min(axis=-1) < 0.97).mean())


def _has_warm_colour(png_path: str) -> bool:
    """Whether some pixel is orange-red, as strong attributions on the magnitude ramp are."""
    r, g, b = np.moveaxis(mimage.imread(png_path)[..., :3], -1, 0)
    return bool(((r > 0.6) & (b < 0.3) & (g < 0.6)).any())


@pytest.mark.parametrize("modality", ["tabular", "image"])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_every_view_saves_non_blank_png_svg_and_pdf(runs, tmp_path, modality, view):
    run = runs[modality]
    fig = VIEWS[view](run, "integrated_gradients")
    png, svg, pdf = (str(tmp_path / f"{view}.{ext}") for ext in ("png", "svg", "pdf"))
    for path in (png, svg, pdf):
        fig.savefig(path, dpi=60)
    assert _drawn_share(png) > 0.03
    assert len(np.unique(mimage.imread(png)[..., :3].reshape(-1, 3), axis=0)) > 20
    if view in ("evolution_heatmap", "probe_filmstrip"):
        assert _has_warm_colour(png)
    elements = [e.tag.rsplit("}", 1)[-1] for e in ET.parse(svg).iter()]
    assert elements.count("path") + elements.count("use") > 20
    if view in ("evolution_heatmap", "probe_filmstrip"):
        assert "image" in elements  # the heatmap or maps, embedded as raster images
    with open(pdf, "rb") as f:
        content = f.read()
    assert content.startswith(b"%PDF") and len(content) > 5000


def test_saved_figures_are_drawn_under_a_non_interactive_backend_after_pyplot_show(runs, tmp_path):
    # shap users save blank figures after plt.show() consumed pyplot's current figure; ours own their canvas.
    script = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        import tb_xai
        plt.plot([0, 1]); plt.show(); plt.close("all")
        fig = tb_xai.plot.evolution_heatmap({runs["tabular"].path!r}, "saliency")
        plt.show()
        fig.savefig({str(tmp_path / "after_show.png")!r}, dpi=60)
        fig.savefig({str(tmp_path / "after_show.pdf")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120,
                   env={**os.environ, "MPLBACKEND": "svg"})
    assert _drawn_share(str(tmp_path / "after_show.png")) > 0.05
    assert os.path.getsize(tmp_path / "after_show.pdf") > 5000


def test_evolution_heatmap_draws_the_ranked_importance(runs):
    run = runs["tabular"]
    fig = plot.evolution_heatmap(run, "saliency", rows=6)
    importance = run.importance("saliency")
    order = aggregate.importance_order(importance)[:6]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), importance[:, order].T)
    names = run.map_names("saliency")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [names[i] for i in order]
    assert names[order[0]] == run.ranking("saliency")[0]


def test_image_evolution_draws_the_mean_map_of_first_and_last_step(runs):
    run = runs["image"]
    fig = plot.evolution_heatmap(run, "grad_cam", frames=4)
    importance = run.importance("grad_cam")
    maps = [ax.images[0].get_array() for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(maps) == 4
    np.testing.assert_allclose(maps[0], importance[0])
    np.testing.assert_allclose(maps[-1], importance[-1])


def test_top_k_lines_follow_the_top_features(runs):
    run = runs["tabular"]
    fig = plot.top_k_lines(run, "gradient_x_input", k=3)
    importance = run.importance("gradient_x_input")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3
    for line, feature in zip(lines, aggregate.importance_order(importance)[:3]):
        np.testing.assert_allclose(line.get_ydata(), importance[:, feature])
        assert line.get_label() == run.map_names("gradient_x_input")[feature]


def test_stability_draws_the_rank_stability(runs):
    run = runs["image"]
    expected = run.stability("saliency", k=5)
    lines = plot.stability(run, "saliency", k=5).axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), expected["spearman_previous"])
    np.testing.assert_allclose(lines[3].get_ydata(), expected["topk_last"])



def test_agreement_labels_the_top_k_it_compared(runs):
    run = runs["tabular"]
    features = len(run.map_names(run.agreement()[0]["methods"][0]))
    title = plot.agreement(run, k=features + 100).axes[0].get_title()
    assert f"top-{features} overlap" in title, title

def test_probe_filmstrip_shows_the_probe_predictions(runs):
    run = runs["tabular"]
    fig = plot.probe_filmstrip(run, "saliency", 2)
    lines = fig.axes[-1].get_lines()
    predictions = run.predictions()[:, 2]
    assert lines and all(
        np.allclose(line.get_ydata(), predictions[:, run.class_names().index(line.get_label())]) for line in lines
    )


def test_sequence_attributions_are_drawn_as_feature_rows(tmp_path):
    import tb_xai
    from tb_xai import summary

    writer = summary.SummaryWriter(str(tmp_path))
    writer.write(summary.probe_pb("input", np.ones((2, 5, 3)), modality="sequence"), 0)
    rng = np.random.default_rng(0)
    for step in range(4):
        writer.write(summary.predictions_pb(rng.random((2, 2))), step)
        writer.write(summary.targets_pb(np.zeros(2)), step)
        writer.write(summary.attribution_pb("saliency", "input", rng.random((2, 5, 3)), modality="sequence"), step)
    writer.close()
    run = tb_xai.load(str(tmp_path))
    assert run.map_names("saliency")[:2] == ["position 0, channel 0", "position 0, channel 1"]
    fig = plot.evolution_heatmap(run, "saliency", rows=6)
    assert fig.axes[0].images[0].get_array().shape == (6, 4)
    for figure in (fig, plot.top_k_lines(run, "saliency"), plot.probe_filmstrip(run, "saliency", 1)):
        figure.savefig(tmp_path / "sequence.png", dpi=50)
        assert _drawn_share(str(tmp_path / "sequence.png")) > 0.03


def test_bad_arguments_name_the_value(runs):
    with pytest.raises(IndexError, match="probe=99 is out of range"):
        plot.probe_filmstrip(runs["image"], "saliency", 99)
    with pytest.raises(KeyError, match="no attributions for method 'nope'"):
        plot.top_k_lines(runs["tabular"], "nope")
    with pytest.raises(TypeError, match="run must be a tb_xai.Run or a log directory; received: 3"):
        plot.stability(3, "saliency")
    with pytest.raises(ValueError, match="k must be at least 1; received k=0"):
        plot.top_k_lines(runs["tabular"], "saliency", k=0)


def _scaled_copy(run, dest, method, steps, factor):
    """Writes `run`'s `method` at its first `steps` steps, times `factor`, as a new run: a shorter run of the same
    probes and features to compare with."""
    from tb_xai import summary

    (input_name,) = run.inputs
    attributions = run.attributions(method)
    predictions = run.predictions()
    writer = summary.SummaryWriter(str(dest))
    writer.write(summary.probe_pb(input_name, run.probe(input_name), feature_names=run.feature_names(input_name),
                                  modality=run.modality(input_name)), 0)
    for position, step in enumerate(run.steps(method)[:steps]):
        writer.write(summary.predictions_pb(predictions[position], class_names=run.class_names()), step)
        writer.write(summary.targets_pb(np.zeros(attributions.shape[1])), step)
        writer.write(summary.attribution_pb(method, input_name, attributions[position] * factor,
                                            feature_names=run.feature_names(input_name),
                                            modality=run.modality(input_name)), step)
    writer.close()
    import tb_xai

    return tb_xai.load(str(dest))


@pytest.mark.parametrize("modality", ["tabular", "image"])
def test_compare_aligns_runs_by_step_and_takes_the_difference(runs, tmp_path, modality):
    import tb_xai

    run = runs[modality]
    shorter = _scaled_copy(run, tmp_path / "shorter", "saliency", 8, 3.0)
    result = tb_xai.compare([run, shorter], "saliency")
    steps = run.steps("saliency")
    assert result.steps.tolist() == steps and result.common_steps.tolist() == steps[:8]
    base = run.importance("saliency")
    np.testing.assert_allclose(result.importance[0], base)
    assert np.isnan(result.importance[1, 8:]).all()
    # Mean magnitudes scale with the attributions: B - A = 3A - A = 2A at every common step.
    np.testing.assert_allclose(result.difference[0], 2 * base[:8], rtol=1e-5, atol=1e-9)
    assert [result.names[i] for i in result.order[:3]] == run.ranking("saliency")[:3]
    fig = plot.compare([run, shorter], "saliency")
    fig.savefig(tmp_path / "compare.png", dpi=60)
    assert _drawn_share(str(tmp_path / "compare.png")) > 0.05
    assert fig._suptitle.get_text().startswith("saliency: ")


def test_compare_names_what_cannot_be_compared(runs):
    import tb_xai

    with pytest.raises(ValueError, match="two or more runs"):
        tb_xai.compare([runs["tabular"]], "saliency")
    with pytest.raises(ValueError, match="maps differ in shape"):
        tb_xai.compare([runs["tabular"], runs["image"]], "saliency")
    with pytest.raises(KeyError, match="no attributions for method 'nope'"):
        plot.compare([runs["tabular"], runs["tabular"]], "nope")


def test_evolution_heatmap_step_ticks_are_evenly_spaced(runs):
    for modality in ("tabular",):
        ax = plot.evolution_heatmap(runs[modality], "saliency").axes[0]
        labels = [int(t.get_text()) for t in ax.get_xticklabels()]
        gaps = set(np.diff(labels).tolist())
        assert labels[0] == runs[modality].steps("saliency")[0] and len(gaps) == 1, labels


def test_agreement_takes_a_method_like_the_other_views(runs):
    run = runs["tabular"]
    fig = plot.agreement(run, "saliency")
    labels = [line.get_label() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")]
    others = [m for m in run.methods if m != "saliency"]
    assert len(labels) == len(others) and all("saliency" in label for label in labels), labels
    with pytest.raises(KeyError, match="no attributions for method 'nope'"):
        plot.agreement(run, "nope")


def test_stability_defaults_to_the_dashboards_top_k(runs):
    labels = [line.get_label() for line in plot.stability(runs["tabular"], "saliency").axes[0].get_lines()]
    assert any(label.startswith(f"top-{plot.K} overlap") for label in labels) and plot.K == 5, labels


def test_a_regression_probe_is_titled_with_its_value_not_a_class(tmp_path):
    import keras
    import tb_xai

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -1.0, 0.5]) + 0.3).astype(np.float32)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:6], labels=y[:6], methods=["saliency"],
                                          max_overhead=None)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[callback])
    fig = plot.probe_filmstrip(str(tmp_path), "saliency", 2)
    assert f"(label {float(y[2]):.4g})" in fig.axes[0].get_title()
    legend = fig.axes[-1].get_legend()
    assert legend.get_title().get_text() == "" and [t.get_text() for t in legend.get_texts()] == ["output"]
