"""The findings, quality and probe-menu parts of the Attributions tab in a real browser: Chromium (playwright-core)
against a real TensorBoard serving a run the callback wrote while the shortcut demo's model learned its stamp.

One browser session (frontend/tests/findings.mjs) walks through the cards and reports every check; each test here
asserts one of them. What the page must show is read from the same server (and from `tb_xai.load`), so the test
checks that the dashboard draws the server's answers, not numbers of its own. Screenshots go to a temporary
directory; to regenerate the README's:

    TB_XAI_SCREENSHOTS=docs/screenshots python -m pytest -q tests/test_findings_frontend.py
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from browser_session import assert_check, check_prerequisites, run_session, screenshot_dir
from tensorboard_server import ROUTE, Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "demo"))

SHORTCUT, QUIET = "shortcut/xai", "quiet/xai"


@pytest.fixture(scope="module", autouse=True)
def browser_prerequisites():
    check_prerequisites()


def write_quiet_run(run_dir: str) -> None:
    """A run in which nothing happens: the same maps and predictions at every step (no finding to report)."""
    from tb_xai import metadata, summary

    rng = np.random.default_rng(0)
    values = rng.random((8, 6)).astype(np.float32)
    predictions = np.tile([[0.8, 0.2]], (8, 1))
    writer = summary.SummaryWriter(run_dir)
    writer.write(summary.probe_pb("x", rng.normal(size=(8, 6)), modality=metadata.TABULAR), 0)
    writer.write(summary.labels_pb(np.zeros(8, dtype=np.int64)), 0)
    for step in range(4):
        writer.write(summary.predictions_pb(predictions, class_names=["no", "yes"]), step)
        writer.write(summary.targets_pb(np.zeros(8)), step)
        writer.write(summary.attribution_pb("saliency", "x", values, modality=metadata.TABULAR), step)
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """The quiet run, then (written last, so the tab opens on it) the shortcut demo's model trained 6 epochs
    with integrated gradients and saliency, faithfulness and sanity figures on (quality="all" groups)."""
    import keras
    import shortcut
    import tb_xai
    from tb_xai.methods import IntegratedGradients
    from tb_xai.quality import Quality

    root = tmp_path_factory.mktemp("findings_frontend")
    write_quiet_run(str(root / QUIET))
    keras.utils.set_random_seed(0)
    x_train, y_train, probe, labels, _ = shortcut.stamped_digits(16, 0)
    model = shortcut.build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(
        str(root / "shortcut"), probe, labels=labels, class_names=shortcut.CLASS_NAMES,
        methods=[IntegratedGradients(steps=16), "saliency"],
        quality=Quality(["drift", "faithfulness", "sanity"], points=8), max_overhead=None)
    model.fit(x_train, y_train, epochs=6, batch_size=64, verbose=0, callbacks=[callback])
    return root


@pytest.fixture(scope="module")
def server(logdir):
    with Server(str(logdir), "true", tensorflow=True) as s:
        s.wait_for({SHORTCUT: 6, QUIET: 4}, timeout=60)
        yield s


@pytest.fixture(scope="module")
def report(server, logdir, tmp_path_factory):
    """Runs the browser session once and parses its report."""
    import tb_xai

    started = time.perf_counter()
    screenshots = screenshot_dir(tmp_path_factory)
    run = f"run={SHORTCUT}"
    findings = server.json(f"{ROUTE}findings?{run}")
    assert [f["message"] for f in findings["findings"]] == [f["message"] for f in tb_xai.load(str(logdir / SHORTCUT)).findings()]
    kinds = {f["kind"] for f in findings["findings"]}
    assert {"topk_enter", "prediction_flip"} <= kinds, kinds  # what the session clicks must be there
    method = "integrated_gradients"
    listed = {r["run"]: r for r in server.json(ROUTE + "runs")["runs"]}
    (input_name,) = [i["input"] for m in listed[SHORTCUT]["methods"] if m["method"] == method for i in m["inputs"]]
    config = {
        "url": server.url,
        "screenshots": screenshots,
        "runs": {"shortcut": SHORTCUT, "quiet": QUIET},
        "findings": findings,
        "probes": server.json(f"{ROUTE}probes?{run}&method={method}&input={input_name}"),
        "quality": {m: server.json(f"{ROUTE}quality?{run}&method={m}") for m in ("integrated_gradients", "saliency")},
        "method": method,
        "input": input_name,
    }
    out = run_session("findings.mjs", config, timeout=300)
    print(f"browser session: {out['ms']} ms of {time.perf_counter() - started:.1f} s; per check (ms):",
          {name: c["ms"] for name, c in out["checks"].items()})
    return out


CHECKS = [
    "findings_card_is_first_and_lists_the_server_findings",
    "timeline_has_a_lane_per_kind_and_a_mark_per_event",
    "timeline_lanes_by_method",
    "clicking_a_flip_opens_its_probe_at_its_step",
    "clicking_a_top_k_event_opens_its_method_in_the_evolution_card",
    "probe_menu_shows_labels_predictions_and_flips",
    "probe_menu_sorts_by_change",
    "quality_card_draws_the_figures",
    "stability_draws_the_noise_band",
    "a_run_without_findings_says_what_was_checked",
    "dark_theme_redraws_the_cards",
    "no_page_errors",
]


@pytest.mark.parametrize("name", CHECKS)
def test_findings_dashboard(report, name):
    assert_check(report, name)


def test_screenshots_are_saved(report):
    names = {os.path.basename(path) for path in report["screenshots"]}
    assert {"findings.png", "findings_quality.png", "findings_noise_band.png", "findings_dark.png"} <= names, names
    for path in report["screenshots"]:
        assert os.path.getsize(path) > 5000, path
