"""The dashboard's text views in a real browser: Chromium (driven by playwright-core) against a real TensorBoard
serving text runs written with tb_xai's own summary writers (token ids as the probe, the TOKENS tag, per-token
attributions, predictions and targets), so the views are checked against exactly what the server sends.

One browser session (frontend/tests/text.mjs) walks through the text views and reports every check; each test
here asserts one of them. Screenshots go to a temporary directory; to regenerate the README's, run

    TB_XAI_SCREENSHOTS=docs/screenshots python -m pytest -q tests/test_text_frontend.py
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.browser_session import assert_check, check_prerequisites, run_session, screenshot_dir
from tests.tensorboard_server import ROUTE, Server


# Id 0 is padding (TextVectorization's ''), 1 the unknown token; the last two would run if parsed as HTML.
VOCABULARY = ["", "[UNK]", "the", "movie", "was", "great", "boring", "plot", "and", "acting", "a", "bit", "slow",
              "but", "ending", "<script>alert(3)</script>", "<img src=x onerror=alert(4)>", "really", "loved", "it"]
POSITIONS = 40
STEPS = 8
METHOD = "integrated_gradients"
INPUT = "tokens"


# The probes as words: short, hostile, long (it wraps, and fills every position), mid-length; padded with id 0.
SENTENCES = [
    "the movie was great".split(),
    ["<script>alert(3)</script>", "the", "plot", "was", "<img src=x onerror=alert(4)>", "boring"],
    ("the acting was a bit slow but the ending was great and i really loved it " * 3).split()[:POSITIONS],
    "really boring movie but great acting".split(),
]


def texts(vocabulary):
    """The probes' token ids [probes, POSITIONS]: unknown words are 1, padding 0."""
    index = {word: i for i, word in enumerate(vocabulary)}
    ids = np.zeros((len(SENTENCES), POSITIONS), dtype=np.int32)
    for p, words in enumerate(SENTENCES):
        ids[p, :len(words)] = [index.get(w, 1) for w in words]
    return ids


def write_text_run(run_dir, vocabulary, seed):
    """A text run: STEPS steps of signed per-token attributions that move onto "great" (up) and "boring" (down)."""
    from tb_xai import metadata, summary

    rng = np.random.default_rng(seed)
    ids = texts(vocabulary)
    tokens = np.asarray(vocabulary, dtype=object)[ids]
    padding = ids == 0
    weight = {"great": 1.0, "boring": -1.0, "loved": 0.6, "slow": -0.4}
    writer = summary.SummaryWriter(run_dir)
    for step in range(STEPS):
        growth = (step + 1) / STEPS
        values = rng.normal(scale=0.05, size=ids.shape)
        for word, w in weight.items():
            values[tokens == word] += w * growth
        values[padding] = 0.0
        if step == 0:
            writer.write(summary.probe_pb(INPUT, ids, modality=metadata.TEXT), step)
            writer.write(summary.tokens_pb(INPUT, tokens, padding_id=0, mask_id=0), step)
        logits = np.stack([-values.sum(1), values.sum(1)], axis=1)
        probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        writer.write(summary.predictions_pb(probabilities, class_names=["negative", "positive"]), step)
        writer.write(summary.targets_pb(np.ones(len(ids))), step)
        for method, scale in ((METHOD, 1.0), ("saliency", 0.5)):
            writer.write(summary.attribution_pb(method, INPUT, (scale * values).astype(np.float32),
                                                modality=metadata.TEXT), step)
    writer.close()
    return tokens, padding


@pytest.fixture(scope="module", autouse=True)
def browser_prerequisites():
    check_prerequisites()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Writes two text runs (the second lacks some words), serves them, runs the browser session once."""
    logdir = tmp_path_factory.mktemp("text_logdir")
    tokens, padding = write_text_run(str(logdir / "text" / "xai"), VOCABULARY, 0)
    # Run B: "loved" and "acting" are unknown words there, so B's word ranking lacks them.
    vocabulary_b = [w if w not in ("loved", "acting") else "[UNK]" for w in VOCABULARY]
    write_text_run(str(logdir / "text_b" / "xai"), vocabulary_b, 1)
    screenshots = screenshot_dir(tmp_path_factory)
    with Server(str(logdir), "true", tensorflow=True) as server:
        server.wait_for({"text/xai": STEPS, "text_b/xai": STEPS})
        config = {
            "url": server.url + "/",
            "route": server.url + ROUTE,
            "screenshots": screenshots,
            "downloads": str(tmp_path_factory.mktemp("downloads")),
            "runs": {"text": "text/xai", "text_b": "text_b/xai"},
            "method": METHOD,
            "input": INPUT,
            "tokens": tokens.tolist(),
            "padding": padding.tolist(),
            "missing_in_b": ["loved", "acting"],
        }
        return run_session("text.mjs", config, timeout=300)


CHECKS = [
    "text_probe_draws_the_tokens",
    "tokens_render_as_text",
    "colours_follow_signed_values",
    "colours_follow_magnitudes",
    "padding_is_dimmed_and_counted",
    "long_text_wraps",
    "slider_changes_the_step",
    "strip_shows_every_step",
    "strip_row_opens_its_step",
    "tooltip_names_token_position_value",
    "evolution_ranks_the_servers_words",
    "evolution_ranks_positions",
    "probe_menu_shows_first_words",
    "compared_runs_line_up_by_word",
    "csv_of_a_text_probe",
    "two_methods_side_by_side",
    "dark_theme_text",
    "no_page_errors",
]


@pytest.mark.parametrize("name", CHECKS)
def test_text_dashboard(report, name):
    assert_check(report, name)


def test_no_dialog_fired(report):
    assert report["dialogs"] == []


def test_text_screenshots_are_saved(report):
    names = {os.path.basename(path) for path in report["screenshots"]}
    assert {"text_probe.png", "text_evolution.png"} <= names
    for path in report["screenshots"]:
        assert os.path.getsize(path) > 5000, path
