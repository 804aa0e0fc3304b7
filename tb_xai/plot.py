"""Matplotlib figures of the dashboard's views, for notebooks, papers and CI artifacts.

Every function takes a `tb_xai.Run` (or a log directory) and returns a `matplotlib.figure.Figure` built without
pyplot: no global current figure, so `fig.savefig("x.png" | "x.svg" | "x.pdf")` draws the same figure under any
backend, before or after `plt.show()`. In a notebook, a returned figure displays itself.

The numbers drawn come from `tb_xai.aggregate` through `Run.importance`, `Run.stability` and `Run.agreement`:
the same aggregation the TensorBoard plugin serves. Colours follow the dashboard: white means no attribution,
magnitudes use a white-yellow-red ramp, signed values blue (against the class) - white - red (towards it).

Example:
    >>> run = tb_xai.load("runs/exp1")
    >>> tb_xai.plot.evolution_heatmap(run, "integrated_gradients").savefig("evolution.png", dpi=150)
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

import numpy as np
from matplotlib import colormaps, colors as mcolors
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

from tb_xai import aggregate, findings as findings_lib, metadata, quality as quality_lib
from tb_xai.comparison import compare as _compare
from tb_xai.reader import Run, RunLike, as_run

#: The top-k size the dashboard opens with; the stability and agreement figures default to it too.
K = 5

#: The dashboard's scales: magnitudes on a ramp from white through yellow to red, signed values red-white-blue.
_MAGNITUDE = mcolors.LinearSegmentedColormap.from_list(
    "tb_xai_magnitude", ["#ffffff"] + [mcolors.to_hex(c) for c in colormaps["YlOrRd"](np.linspace(0.0, 0.95, 8))]
)
_SIGNED = "RdBu_r"


def _norm(values: np.ndarray, signed: bool) -> mcolors.Normalize:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    top = top or 1.0
    return mcolors.Normalize(-top if signed else 0.0, top)


def _pick(count: int, most: int) -> List[int]:
    """At most `most` positions out of `count`, evenly spaced, always the first and the last."""
    if most < 1:
        raise ValueError(f"the number of frames must be at least 1; received {most}")
    if count <= most:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, most)})


def _step_ticks(count: int, most: int = 12) -> List[int]:
    """Positions of step ticks: every n-th step from the first, so the labels are evenly spaced."""
    every = max(1, -(-count // most))
    return list(range(0, count, every))


def _has_classes(run: Run) -> bool:
    """Whether the explained head has two or more outputs (a classifier), not one (a regression)."""
    predictions = run.predictions()
    return predictions.ndim >= 3 and predictions.shape[2] > 1


def _value_name(signed: bool) -> str:
    return "signed mean attribution" if signed else "mean |attribution|"


def _steps_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step (epoch)")


def evolution_heatmap(
    run: RunLike,
    method: str,
    *,
    input: Optional[str] = None,
    signed: bool = False,
    target: Optional[int] = None,
    rows: int = 20,
    frames: int = 10,
) -> Figure:
    """Which features matter, since when: the dashboard's evolution view.

    Tabular probes: a feature x step heatmap of the importance, features ranked by their importance at the
    last step (the top `rows`). Image probes: the mean attribution map at up to `frames` steps, on one scale.

    Args:
        run: a `tb_xai.Run` or a log directory.
        method: a logged method.
        input: the probe input, for multi-input models.
        signed: signed mean attributions instead of mean magnitudes.
        target: only average probes explained for this class.
        rows: the most features drawn (tabular).
        frames: the most steps drawn (images); the first and last are always among them.

    Example:
        >>> fig = tb_xai.plot.evolution_heatmap("runs/exp1", "saliency", rows=10)
        >>> fig.savefig("evolution.svg")
    """
    run = as_run(run)
    if rows < 1:
        raise ValueError(f"rows must be at least 1; received rows={rows}")
    importance = run.importance(method, input, signed=signed, target=target)
    steps = run.steps(method, input)
    norm = _norm(importance, signed)
    cmap = _SIGNED if signed else _MAGNITUDE
    if run.modality(input) == metadata.IMAGE:
        return _map_strip(None, importance, steps, norm, cmap, frames, f"{method}: mean map over probes per step",
                          _value_name(signed))
    names = run.map_names(method, input)
    importance = importance.reshape(len(importance), -1)  # sequences: (steps, length x channels)
    order = aggregate.importance_order(importance)[:rows]
    data = importance[:, order].T
    fig = Figure(figsize=(min(3 + 0.35 * len(steps), 14), 1.2 + 0.28 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    ax.set_yticks(range(len(order)), [names[i] for i in order], fontsize=8)
    ticks = _step_ticks(len(steps))
    ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    ax.set_xlabel("step (epoch)")
    ax.set_title(f"{method}: feature importance per step, ranked at step {steps[-1]}")
    fig.colorbar(image, ax=ax, label=_value_name(signed), shrink=0.9)
    return fig


def _map_strip(
    fig: Optional[Union[Figure, SubFigure]], maps, steps, norm, cmap, frames, title, value_name, first=None
) -> Union[Figure, SubFigure]:
    """Maps at up to `frames` steps side by side on one colour scale, optionally after the input image."""
    picks = _pick(len(steps), frames)
    columns = len(picks) + (first is not None)
    if fig is None:
        fig = Figure(figsize=(1.6 * columns + 1.4, 2.6), layout="constrained")
    axes = fig.subplots(1, columns, squeeze=False)[0]
    if first is not None:
        _draw_input(axes[0], first)
    image = None
    for ax, i in zip(axes[columns - len(picks):], picks):
        image = ax.imshow(np.ma.masked_invalid(maps[i]), cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(f"step {steps[i]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.colorbar(image, ax=list(axes), label=value_name, shrink=0.85)
    return fig


def _draw_input(ax, value: np.ndarray) -> None:
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 3 and value.shape[-1] in (3, 4):
        low, high = np.nanmin(value), np.nanmax(value)
        ax.imshow((value - low) / ((high - low) or 1.0), interpolation="nearest")
    else:
        ax.imshow(value.reshape(value.shape[:2]), cmap="gray_r", interpolation="nearest")
    ax.set_title("input", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def top_k_lines(
    run: RunLike,
    method: str,
    *,
    k: int = 5,
    input: Optional[str] = None,
    signed: bool = False,
    target: Optional[int] = None,
) -> Figure:
    """The `k` most important features' importance over steps (ranked at the last step), one line each.

    Args:
        run: a `tb_xai.Run` or a log directory.
        method: a logged method.
        k: how many features (or pixels, for image maps).
        input: the probe input, for multi-input models.
        signed: signed mean attributions instead of mean magnitudes.
        target: only average probes explained for this class.

    Example:
        >>> tb_xai.plot.top_k_lines("runs/exp1", "integrated_gradients", k=3).savefig("top3.pdf")
    """
    run = as_run(run)
    if k < 1:
        raise ValueError(f"k must be at least 1; received k={k}")
    importance = run.importance(method, input, signed=signed, target=target)
    flat = importance.reshape(len(importance), -1)
    names = run.map_names(method, input)
    order = aggregate.importance_order(flat)[:k]
    steps = run.steps(method, input)
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i in order:
        ax.plot(steps, flat[:, i], marker="o", markersize=3, label=names[i])
    _steps_axis(ax)
    ax.set_ylabel(_value_name(signed))
    ax.set_title(f"{method}: top {len(order)} at step {steps[-1]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def probe_filmstrip(
    run: RunLike,
    method: str,
    probe: int,
    *,
    input: Optional[str] = None,
    signed: Optional[bool] = None,
    frames: int = 8,
    rows: int = 15,
) -> Figure:
    """One probe across steps: its attributions and, below, the model's predicted probabilities.

    Shows whether the explanation of this probe changed while its prediction did not, or the reverse. Image
    probes get the input and its attribution map at up to `frames` steps; tabular probes a feature x step
    heatmap of their `rows` largest attributions at the last step.

    Args:
        run: a `tb_xai.Run` or a log directory.
        method: a logged method.
        probe: index of the probe in the probe set.
        input: the probe input, for multi-input models.
        signed: draw signed attributions; by default signed for tabular probes, magnitudes for images.
        frames: the most steps drawn as maps (images).
        rows: the most features drawn (tabular).

    Example:
        >>> tb_xai.plot.probe_filmstrip("runs/exp1", "grad_cam", probe=3).savefig("probe3.png")
    """
    run = as_run(run)
    attributions = run.attributions(method, input)
    if not 0 <= probe < attributions.shape[1]:
        raise IndexError(f"probe={probe} is out of range: {method!r} has {attributions.shape[1]} probes")
    steps = run.steps(method, input)
    values = attributions[:, probe]
    modality = run.modality(input)
    picture = modality == metadata.IMAGE
    if signed is None:
        signed = not picture
    label = run.labels()
    class_names = run.class_names()
    title = f"{method}: probe {probe}"
    if label is not None and np.ndim(label[probe]) == 0:
        value = label[probe]
        if _has_classes(run) and float(value).is_integer():
            title += f" (label {_class_name(int(value), class_names)})"
        else:
            title += f" (label {float(value):.4g})"
    if picture:
        maps = aggregate.to_maps(values, attributions.shape[2:], modality, signed=signed)
        columns = min(len(steps), frames) + 1
        fig = Figure(figsize=(1.6 * columns + 1.2, 5.0), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.6, 2.4])
        _map_strip(top, maps, steps, _norm(maps, signed), _SIGNED if signed else _MAGNITUDE, frames, title,
                   "attribution" if signed else "|attribution|", first=run.probe(input)[probe])
        _prediction_panel(bottom.add_subplot(), run, probe)
        return fig
    flat = values.reshape(len(values), -1)
    labels = run.map_names(method, input)
    order = np.argsort(-np.abs(flat[-1]), kind="stable")[:rows]
    fig = Figure(figsize=(min(3 + 0.35 * len(steps), 14), 3.2 + 0.28 * len(order)), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[0.28 * len(order) + 0.8, 2.2])
    ax = fig.add_subplot(grid[0])
    norm = _norm(flat[:, order], signed)
    image = ax.imshow(flat[:, order].T if signed else np.abs(flat[:, order]).T, aspect="auto",
                      interpolation="nearest", cmap=_SIGNED if signed else _MAGNITUDE, norm=norm)
    ax.set_yticks(range(len(order)), [labels[i] for i in order], fontsize=8)
    ticks = _step_ticks(len(steps))
    ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="attribution" if signed else "|attribution|", shrink=0.9)
    _prediction_panel(fig.add_subplot(grid[1]), run, probe)
    return fig


def _class_name(index: int, class_names: Optional[Sequence[str]]) -> str:
    return class_names[index] if class_names and 0 <= index < len(class_names) else str(index)


def _prediction_panel(ax, run: Run, probe: int) -> None:
    """The probe's predicted outputs over the logged steps; for classifiers, each class it ever predicted."""
    predictions = run.predictions()
    prediction_steps = run.steps()
    rows = predictions[:, probe].reshape(len(predictions), -1)
    class_names = run.class_names()
    shown = {0}
    classes = rows.shape[1] > 1
    if classes:
        shown = set(rows.argmax(axis=1).tolist())
        labels = run.labels()
        if labels is not None and np.ndim(labels[probe]) == 0 and 0 <= int(labels[probe]) < rows.shape[1]:
            shown.add(int(labels[probe]))
    for c in sorted(shown):
        ax.plot(prediction_steps, rows[:, c], marker="o", markersize=3,
                label=_class_name(c, class_names) if classes else "output")
    _steps_axis(ax)
    ax.set_ylabel("prediction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="class" if classes else None, title_fontsize=8, loc="best")


def stability(
    run: RunLike, method: str, *, k: int = K, input: Optional[str] = None, target: Optional[int] = None
) -> Figure:
    """Are the explanations settled? Rank correlation and top-k overlap of the importance, step to step.

    Solid lines compare each step with the step before it, dashed lines with the last step.

    Args:
        run: a `tb_xai.Run` or a log directory.
        method: a logged method.
        k: size of the top-k sets compared.
        input: the probe input, for multi-input models.
        target: only count probes explained for this class.

    Example:
        >>> tb_xai.plot.stability("runs/exp1", "saliency", k=5).savefig("stability.png")
    """
    run = as_run(run)
    result = run.stability(method, input, k=k, target=target)
    steps = result["steps"]
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, result["spearman_previous"], "-o", markersize=3, color="C0", label="Spearman vs previous step")
    ax.plot(steps, result["topk_previous"], "-o", markersize=3, color="C1", label=f"top-{result['k']} overlap vs previous")
    ax.plot(steps, result["spearman_last"], "--", color="C0", label="Spearman vs last step")
    ax.plot(steps, result["topk_last"], "--", color="C1", label=f"top-{result['k']} overlap vs last")
    ax.set_ylim(-1.05, 1.05)
    _steps_axis(ax)
    ax.set_title(f"{method}: rank stability of the importance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def agreement(
    run: RunLike,
    method: Optional[str] = None,
    *,
    k: int = K,
    input: Optional[str] = None,
    target: Optional[int] = None,
) -> Figure:
    """Do the methods agree? Spearman correlation of every pair of methods' importance, per step.

    Args:
        run: a `tb_xai.Run` or a log directory.
        method: draw only the pairs that include this method (every pair when not given).
        k: size of the top-k sets compared (drawn dashed); clipped to the number of map elements, and
            labelled with the clipped size.
        input: the probe input, for multi-input models.
        target: only count probes explained for this class.

    Raises:
        ValueError: fewer than two methods with maps of one shape were logged.

    Example:
        >>> tb_xai.plot.agreement("runs/exp1", "integrated_gradients").savefig("agreement.svg")
    """
    run = as_run(run)
    pairs = run.agreement(input, k=k, target=target)
    if method is not None:
        if method not in run.methods:
            raise KeyError(f"no attributions for method {method!r} in {run.path}; logged methods: {run.methods}")
        pairs = [pair for pair in pairs if method in pair["methods"]]
    if not pairs:
        raise ValueError(f"agreement needs two methods with maps of one shape; {run.path} has {run.methods}")
    # The aggregate clips k to each pair's number of map elements; label the k it compared, not the one asked.
    tops = [min(k, len(run.map_names(pair["methods"][0], input))) for pair in pairs]
    fig = Figure(figsize=(10, max(3.8, 1.2 + 0.22 * len(pairs))), layout="constrained")
    ax = fig.add_subplot()
    for i, (pair, top) in enumerate(zip(pairs, tops)):
        color = f"C{i % 10}"
        name = " vs ".join(pair["methods"])
        ax.plot(pair["steps"], pair["spearman"], "-o", markersize=3, color=color, label=f"{name} (Spearman)")
        overlap = {"label": f"{name} (top-{top} overlap)"} if len(set(tops)) > 1 else {}
        ax.plot(pair["steps"], pair["topk"], "--", color=color, alpha=0.7, **overlap)
    ax.set_ylim(-1.05, 1.05)
    _steps_axis(ax)
    compared = f"top-{tops[0]}" if len(set(tops)) == 1 else "top-k"
    ax.set_title(f"method agreement (solid: Spearman; dashed: {compared} overlap)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _short(message: str) -> str:
    """A finding's message without its leading ``"step N: "`` (the timeline's x axis says the step)."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("step ") else message


#: Marker and colour of each finding kind on the timeline.
_KIND_STYLE = {
    "drift": ("v", "C3"), "topk_enter": ("^", "C2"), "topk_leave": ("v", "C1"), "sanity_failed": ("X", "C7"),
    "methods_disagree": ("D", "C4"), "prediction_flip": ("o", "C0"), "explanation_changed": ("s", "C5"),
    "prediction_flipped_explanation_stable": ("P", "C9"),
}


def findings_timeline(
    run: RunLike, *, findings: Optional[Sequence[dict]] = None, most: int = 12, **threshold_values
) -> Figure:
    """What changed, and when: every finding as a marker over steps, one row per method (flips on a row of
    their own), and the first `most` findings in words.

    Args:
        run: a `tb_xai.Run` or a log directory.
        findings: the findings to draw (by default ``run.findings(**threshold_values)``).
        most: how many findings are listed in words (the timeline shows all).
        **threshold_values: `tb_xai.findings.Thresholds` fields (``k=5``), when `findings` is not given.

    Example:
        >>> tb_xai.plot.findings_timeline("runs/shortcut", k=5).savefig("findings.png")
    """
    run = as_run(run)
    if most < 0:
        raise ValueError(f"most must be at least 0; received {most}")
    found = list(run.findings(**threshold_values) if findings is None else findings)
    rows = sorted({f["method"] for f in found if f["method"] is not None}) or list(run.methods)
    if any(f["method"] is None for f in found):
        rows.append("predictions")
    listed = found[:most]
    fig = Figure(figsize=(9, 2.0 + 0.35 * len(rows) + 0.2 * (len(listed) + (len(found) > most))),
                 layout="constrained")
    timeline, words = fig.subplots(2, 1, height_ratios=[1.0 + 0.35 * len(rows), 0.3 + 0.2 * len(listed)])
    row_of = {name: i for i, name in enumerate(rows)}
    for kind in findings_lib.KINDS:
        of_kind = [f for f in found if f["kind"] == kind]
        if not of_kind:
            continue
        marker, color = _KIND_STYLE[kind]
        # Several findings of one kind at one step and row are spread a little, so each stays visible.
        ys = [row_of[f["method"] if f["method"] is not None else "predictions"] for f in of_kind]
        seen: dict = {}
        offsets = []
        for f, y in zip(of_kind, ys):
            n = seen[(f["step"], y)] = seen.get((f["step"], y), -1) + 1
            offsets.append(0.12 * n)
        timeline.scatter([f["step"] for f in of_kind], [y + o for y, o in zip(ys, offsets)], marker=marker,
                         color=color, s=40, label=kind.replace("_", " "), zorder=3)
    steps = [s for m in run.methods for s in run.steps(m)] or [0]
    timeline.set_xlim(min(steps) - 0.5, max(steps) + 0.5)
    timeline.set_yticks(range(len(rows)), rows)
    timeline.set_ylim(len(rows) - 0.5, -0.5)
    timeline.grid(alpha=0.3)
    _steps_axis(timeline)
    timeline.set_title(f"findings ({len(found)})" if found else "no findings: no change beat the noise floor")
    if found:
        timeline.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    words.axis("off")
    lines = [f"step {f['step']}: {_short(f['message'])}" for f in listed]
    if len(found) > most:
        lines.append(f"... and {len(found) - most} more")
    words.text(0.0, 1.0, "\n".join(lines) if lines else "(none)", va="top", ha="left", fontsize=8,
               family="monospace", transform=words.transAxes)
    return fig


def quality(run: RunLike, methods: Optional[Sequence[str]] = None, *, k: int = aggregate.DEFAULT_K) -> Figure:
    """Are the maps faithful, do they explain what was learned, has the ranking drifted? Per method, over steps.

    Three panels: deletion and insertion AUC (solid) against the same curves for a random order (dashed; a
    faithful map deletes faster and inserts faster than random), the similarity of the maps to a randomized
    model's (the sanity check; the dashed line is the level findings flag), and nDCG@k against the reference
    step with the noise band (from the bootstrap floor up to 1: a value inside it could be the probe set's
    noise; the dotted line is the drift alarm). A figure that was not logged says so in its panel.

    Args:
        run: a `tb_xai.Run` or a log directory.
        methods: the methods to draw (default: every logged one with attributions).
        k: top-k size of the nDCG.

    Example:
        >>> tb_xai.plot.quality("runs/exp1", ["integrated_gradients"]).savefig("quality.png")
    """
    run = as_run(run)
    methods = list(run.methods if methods is None else methods)
    unknown = [m for m in methods if m not in run.methods]
    if unknown or not methods:
        raise KeyError(f"no attributions for methods {unknown or methods} in {run.path}; logged methods: "
                       f"{run.methods}")
    metrics = {m: run.metrics(m, k=k) for m in methods}
    labels = quality_lib.figure_labels(k)
    thresholds = findings_lib.Thresholds()
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    faithful, sanity, drift = fig.subplots(1, 3)
    drawn = {"faithful": False, "sanity": False, "drift": False}
    for i, method in enumerate(methods):
        color, m = f"C{i % 10}", metrics[method]
        steps = m["steps"]

        def line(ax, figure, style="-o", label=None, **kwargs):
            if not np.isfinite(m[figure]).any():
                return False
            ax.plot(steps, m[figure], style, markersize=3, color=color, label=label, **kwargs)
            return True

        for name, tag in (("deletion_auc", "deletion"), ("insertion_auc", "insertion")):
            style = "-o" if name == "deletion_auc" else "-s"
            if line(faithful, name, style, f"{method}: {tag}"):
                drawn["faithful"] = True
                line(faithful, f"{name}_random", "--", alpha=0.7)
        drawn["sanity"] |= line(sanity, "sanity_spearman", "-o", method)
        if line(drift, "ndcg_reference", "-o", method):
            drawn["drift"] = True
            floor = m["ndcg_floor"]
            known = np.isfinite(floor)
            drift.fill_between(steps[known], floor[known], 1.0, color=color, alpha=0.15, linewidth=0)
    panels = (
        (faithful, "faithfulness (dashed: random order)", "explained output AUC", "faithful",
         "faithfulness not logged (quality=\"all\")", None),
        (sanity, labels["sanity_spearman"] + " (sanity)", "Spearman of |maps|", "sanity", "sanity not logged",
         thresholds.sanity),
        (drift, labels["ndcg_reference"] + " (band: noise)", f"nDCG@{k}", "drift", "drift not computed",
         thresholds.drift),
    )
    for ax, title, ylabel, key, missing, level in panels:
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
        _steps_axis(ax)
        ax.grid(alpha=0.3)
        if not drawn[key]:
            ax.text(0.5, 0.5, missing, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
            continue
        if level is not None:
            ax.axhline(level, color="0.3", linestyle=":" if key == "drift" else "--", linewidth=1)
        ax.legend(fontsize=7, loc="best")
    return fig


def compare(
    runs: Sequence[RunLike],
    method: str,
    *,
    input: Optional[str] = None,
    signed: bool = False,
    target: Optional[int] = None,
    rows: int = 15,
    frames: int = 8,
    k: int = K,
) -> Figure:
    """Runs side by side, as the dashboard compares them: each run's importance on one colour scale, each
    run minus the first (the baseline) at the steps both logged, and the baseline's top-k features in every run.

    Steps are aligned by value; a run that did not log a step shows a gap there. The numbers come from
    `tb_xai.compare`.

    Args:
        runs: two or more `tb_xai.Run` objects or log directories; the first is the baseline.
        method: a method logged in every run.
        input: the probe input, for multi-input models.
        signed: signed mean attributions instead of mean magnitudes.
        target: only average the probes explained for this class.
        rows: the most features drawn (tabular).
        frames: the most steps drawn as maps (images).
        k: the top-k features drawn as lines.

    Example:
        >>> tb_xai.plot.compare(["runs/baseline", "runs/fix"], "integrated_gradients").savefig("compare.png")
    """
    result = _compare(runs, method, input=input, signed=signed, target=target)
    names = [os.path.basename(os.path.dirname(path.rstrip(os.sep))) if os.path.basename(path) == metadata.DEFAULT_SUBDIR
             else os.path.basename(path) for path in result.runs]
    count = len(result.runs)
    steps = result.steps
    norm = _norm(result.importance, signed)
    cmap = _SIGNED if signed else _MAGNITUDE
    diff_norm = _norm(result.difference, True)
    picture = result.importance.ndim == 4
    panels = [(f"{name}", values, norm, cmap, steps) for name, values in zip(names, result.importance)]
    panels += [(f"{names[i + 1]} − {names[0]}", values, diff_norm, _SIGNED, result.common_steps)
               for i, values in enumerate(result.difference)]
    if picture:
        picks = _pick(len(steps), frames)
        fig = Figure(figsize=(1.5 * len(picks) + 1.6, 1.7 * len(panels) + 2.8), layout="constrained")
        grid = fig.add_gridspec(len(panels) + 1, len(picks), height_ratios=[1.0] * len(panels) + [1.6])
        for row, (title, values, panel_norm, panel_cmap, panel_steps) in enumerate(panels):
            image = None
            for column, pick in enumerate(picks):
                ax = fig.add_subplot(grid[row, column])
                ax.set_xticks([])
                ax.set_yticks([])
                at = np.flatnonzero(panel_steps == steps[pick])
                if at.size:
                    image = ax.imshow(values[at[0]], cmap=panel_cmap, norm=panel_norm, interpolation="nearest")
                else:
                    ax.text(0.5, 0.5, "not logged", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                if row == 0 or row == count:
                    ax.set_title(f"step {steps[pick]}", fontsize=8)
                if column == 0:
                    ax.set_ylabel(title, fontsize=8)
            if image is not None and (row == count - 1 or row == len(panels) - 1):
                fig.colorbar(image, ax=fig.axes[-len(picks):], shrink=0.8,
                             label="difference" if row >= count else _value_name(signed))
        lines_ax = fig.add_subplot(grid[len(panels), :])
    else:
        order = result.order[:rows]
        fig = Figure(figsize=(4.2 * len(panels) + 1.0, 0.28 * len(order) + 5.2), layout="constrained")
        grid = fig.add_gridspec(2, len(panels), height_ratios=[0.28 * len(order) + 1.0, 3.0])
        for column, (title, values, panel_norm, panel_cmap, panel_steps) in enumerate(panels):
            ax = fig.add_subplot(grid[0, column])
            flat = values.reshape(len(values), -1)
            on_union = np.full((len(steps), flat.shape[1]), np.nan)
            on_union[np.searchsorted(steps, panel_steps)] = flat
            ax.set_facecolor("#e0e0e0")  # a step the run did not log: grey, as in the dashboard
            image = ax.imshow(np.ma.masked_invalid(on_union[:, order].T), aspect="auto", interpolation="nearest",
                              cmap=panel_cmap, norm=panel_norm)
            ax.set_yticks(range(len(order)), [result.names[i] for i in order] if column == 0 else [], fontsize=8)
            ticks = _step_ticks(len(steps), 8)
            ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
            ax.set_xlabel("step (epoch)")
            ax.set_title(title, fontsize=10)
            if column == count - 1 or column == len(panels) - 1:
                fig.colorbar(image, ax=ax, shrink=0.9, label="difference" if column >= count else _value_name(signed))
        lines_ax = fig.add_subplot(grid[1, :])
    flat_all = result.importance.reshape(count, len(steps), -1)
    styles = ["-", "--", ":", "-."]
    for n, element in enumerate(result.order[:k]):
        for r in range(count):
            lines_ax.plot(steps, flat_all[r, :, element], styles[n % len(styles)], color=f"C{r % 10}", marker="o",
                          markersize=2, label=f"{result.names[element]} · {names[r]}")
    _steps_axis(lines_ax)
    lines_ax.set_ylabel(_value_name(signed))
    lines_ax.set_title(f"top-{min(k, len(result.order))} features of {names[0]}, in every run (colour = run)", fontsize=10)
    lines_ax.grid(alpha=0.3)
    lines_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{method}: {' vs '.join(names)}")
    return fig
