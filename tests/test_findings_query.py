"""tb_xai.query's findings, probe menu and noise band on runs written with exact numbers: a two-input probe,
a one-unit sigmoid head, a regression head, string labels."""

from __future__ import annotations

import numpy as np
import pytest

import tb_xai
from tb_xai import metadata, reader, summary
from tb_xai.plugin import plugin

PROBES = 6


def write(tmp_path, pairs) -> tb_xai.Run:
    writer = summary.SummaryWriter(str(tmp_path / metadata.DEFAULT_SUBDIR))
    for step, value in pairs:
        writer.write(value, step)
    writer.close()
    return tb_xai.load(str(tmp_path))


def two_input_maps(step: int) -> tuple:
    """Input "a" (3 features) holds importance 5, 4, 3 throughout; input "b" (4 features) 1, 1, 1, 0.5 until
    step 1, when its feature 2 rises to 6 (a little different per probe) and stays."""
    a = np.tile([5.0, 4.0, 3.0], (PROBES, 1))
    b = np.tile([1.0, 1.0, 1.0, 0.5], (PROBES, 1))
    if step >= 2:
        b[:, 2] = 6.0 + 0.1 * np.arange(PROBES)
    return a.astype(np.float32), b.astype(np.float32)


def test_a_feature_of_the_second_input_is_named_with_its_input_and_its_own_index(tmp_path):
    pairs = []
    for step in range(5):
        a, b = two_input_maps(step)
        pairs += [(step, summary.attribution_pb("ig", "a", a, modality=metadata.TABULAR)),
                  (step, summary.attribution_pb("ig", "b", b, modality=metadata.TABULAR,
                                                feature_names=["w", "x", "y", "z"]))]
    run = write(tmp_path, pairs)
    (entered,) = [f for f in run.findings(k=2) if f["kind"] == "topk_enter"]
    assert entered["step"] == 2 and entered["input"] == "b" and entered["feature"] == "b: y"
    assert entered["feature_index"] == 2  # within b's map, not the concatenated one (5)
    assert run.open_view(entered) == {"view": "evolution", "method": "ig", "input": "b", "step": 2, "probe": None}
    # Feature 1 of "a" was pushed out of the top 2, its own importance unchanged: not a finding of its own.
    assert [f for f in run.findings(k=2) if f["kind"] == "topk_leave"] == []


def test_a_two_input_method_level_finding_has_no_single_input_and_opens_the_first(tmp_path):
    pairs = []
    for step in range(5):
        a, b = two_input_maps(step)
        pairs += [(step, summary.attribution_pb("ig", "a", a, modality=metadata.TABULAR)),
                  (step, summary.attribution_pb("ig", "b", b, modality=metadata.TABULAR))]
    run = write(tmp_path, pairs)
    (drift,) = [f for f in run.findings(k=2) if f["kind"] == "drift"]
    assert drift["input"] is None and drift["step"] == 2
    assert run.open_view(drift)["input"] == "a"


def test_the_probe_menu_of_a_sigmoid_head_without_labels(tmp_path):
    # One unit: class 1 above 0.5. Probe 0 crosses at step 2 and back at step 3.
    outputs = np.array([[0.2, 0.9, 0.6], [0.3, 0.9, 0.6], [0.7, 0.9, 0.6], [0.4, 0.8, 0.6]])
    maps = lambda step: np.tile(np.arange(1.0, 5.0) if step < 2 else np.arange(4.0, 0.0, -1), (3, 1))  # noqa: E731
    pairs = [(s, summary.predictions_pb(outputs[s][:, None])) for s in range(4)]
    pairs += [(s, summary.attribution_pb("saliency", "x", maps(s), modality=metadata.TABULAR)) for s in range(4)]
    run = write(tmp_path, pairs)
    menu = run.probe_summary("saliency", step=2)
    assert menu["step"] == 2
    first = menu["probes"][0]
    assert first == {"probe": 0, "label": None, "label_name": None, "prediction": 1, "prediction_name": None,
                     "correct": None, "flipped": True, "flip_steps": [2, 3], "change": pytest.approx(2.0)}
    assert menu["probes"][1]["prediction"] == 1 and menu["probes"][1]["flip_steps"] == []
    assert run.probe_summary("saliency", step=1)["probes"][0]["change"] == pytest.approx(0.0)
    assert not run.probe_summary("saliency", step=3)["probes"][0]["flipped"]  # back to its first class


def test_the_probe_menu_of_a_regression_head_with_string_labels(tmp_path):
    values = np.array([[[-3.0], [2.5]], [[4.0], [-1.0]]])  # two steps, two probes, one output outside [0, 1]
    pairs = [(0, summary.labels_pb(np.array(["low", "high"])))]
    pairs += [(s, summary.predictions_pb(values[s])) for s in range(2)]
    pairs += [(s, summary.attribution_pb("ig", "x", np.array([[1.0, 2.0], [2.0, 1.0]]), modality=metadata.TABULAR))
              for s in range(2)]
    run = write(tmp_path, pairs)
    rows = run.probe_summary("ig")["probes"]
    assert [r["label"] for r in rows] == ["low", "high"]
    assert all(r["prediction"] is None and r["correct"] is None and r["label_name"] is None for r in rows)
    assert all(r["flip_steps"] == [] and r["flipped"] is False for r in rows)
    assert [r["change"] for r in rows] == [pytest.approx(0.0)] * 2
    assert plugin.probes_impl(reader.read_run(run.path), "ig", "x", step=1)["probes"] == rows


def test_the_probe_menu_names_a_bad_request(tmp_path):
    pairs = [(s, summary.attribution_pb("ig", "x", np.ones((2, 3)), modality=metadata.TABULAR)) for s in (0, 3)]
    run = write(tmp_path, pairs)
    with pytest.raises(ValueError, match=r"step=1 is not a logged step of method 'ig'; logged steps: \[0, 3\]"):
        run.probe_summary("ig", step=1)
    with pytest.raises(KeyError, match="no attributions for method 'lime'"):
        run.probe_summary("lime")
    # Constant maps have no ranking: no change to report; no predictions: no prediction.
    rows = run.probe_summary("ig")["probes"]
    assert [(r["change"], r["prediction"], r["flipped"]) for r in rows] == [(None, None, False)] * 2
