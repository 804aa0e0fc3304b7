"""The Attributions tab in a real browser: Chromium (driven by playwright-core) against a real TensorBoard
serving log directories written by the callback.

One browser session (frontend/tests/dashboard.mjs) walks through the tab and reports every check; each test
here asserts one of them, so a failure names the behaviour that broke. Screenshots of every view are written
to a temporary directory; to regenerate the README's, run

    TB_XAI_SCREENSHOTS=docs/screenshots python -m pytest -q tests/test_frontend.py
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from browser_session import assert_check, check_prerequisites, run_session, screenshot_dir
from tensorboard_server import Server

XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module", autouse=True)
def browser_prerequisites():
    check_prerequisites()




@pytest.fixture(scope="module")
def xss_run(tmp_path_factory):
    """A tiny model logged by the callback with a feature name that is HTML, and other hostile names."""
    import keras
    import tb_xai

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    log_dir = str(tmp_path_factory.mktemp("xss_run"))
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(
        log_dir, x[:8], labels=y[:8], methods=["saliency"],
        feature_names=[XSS_NAME, '=HYPERLINK("x")', "a, \"quoted\" name"],
        class_names=["<b>no</b>", "<script>alert(2)</script>"], max_overhead=None,
    )
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback])
    return log_dir


# The step writers below run without TensorFlow: TensorBoard's event writer then uses its own file layer
# instead of importing TensorFlow (seconds per process), and the event files are the same.
NO_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # an import of tensorflow fails: TensorBoard falls back to its stub
"""

# Appends one more epoch to a run, as a model still training does: `python -c GROW <run dir> <step>`.
GROW = NO_TENSORFLOW + """
import numpy as np
import tb_xai
from tb_xai import metadata, summary
run_dir, step = sys.argv[1], int(sys.argv[2])
run = tb_xai.load(run_dir)
(input,) = run.inputs
probes, features = run.attributions("saliency").shape[1:]
writer = summary.SummaryWriter(run_dir)
writer.write(summary.predictions_pb(np.full((probes, 2), 0.5), class_names=run.class_names()), step)
writer.write(summary.targets_pb(np.zeros(probes)), step)
values = np.random.default_rng(step).random((probes, features)).astype(np.float32)
writer.write(summary.attribution_pb("saliency", input, values, feature_names=run.feature_names(input),
                                    modality=metadata.TABULAR), step)
writer.close()
"""


# A run the callback wrote where every method failed so far; HEAL logs a first attribution at step 1, as when
# the next epoch succeeds: `python -c HEAL <run dir>`.
HEAL = NO_TENSORFLOW + """
import numpy as np
from tb_xai import metadata, summary
writer = summary.SummaryWriter(sys.argv[1])
writer.write(summary.predictions_pb(np.full((4, 2), 0.5)), 1)
writer.write(summary.attribution_pb("saliency", "x", np.random.default_rng(1).random((4, 3)).astype(np.float32),
                                    modality=metadata.TABULAR), 1)
writer.close()
"""


def write_failing_run(run_dir: str) -> None:
    """Step 0 of a run whose only method failed: predictions and the failure, no attribution."""
    from tb_xai import summary

    writer = summary.SummaryWriter(run_dir)
    writer.write(summary.predictions_pb(np.full((4, 2), 0.5)), 0)
    writer.write(summary.failure_pb("saliency", "ValueError: the model has no gradient here"), 0)
    writer.close()


def write_one_step_run(run_dir: str) -> None:
    """A run with one logged step and no class names: 4 probes, 3 classes, 5 tabular features."""
    from tb_xai import metadata, summary

    rng = np.random.default_rng(0)
    writer = summary.SummaryWriter(run_dir)
    writer.write(summary.probe_pb("x", rng.random((4, 5)), modality=metadata.TABULAR), 0)
    writer.write(summary.predictions_pb(rng.random((4, 3))), 0)
    writer.write(summary.targets_pb(np.array([0, 1, 2, 0])), 0)
    writer.write(summary.attribution_pb("saliency", "x", rng.random((4, 5)).astype(np.float32),
                                        modality=metadata.TABULAR), 0)
    writer.close()


def train(log_dir, model, x, y, epochs, methods, seed, **options):
    """Trains `model` on (x, y) with the callback explaining its first 16 rows; `options` go to the callback."""
    import keras
    import tb_xai

    keras.utils.set_random_seed(seed)
    callback = tb_xai.AttributionCallback(log_dir, x[:16], labels=y[:16], methods=methods,
                                          **{"max_overhead": None, **options})
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[callback])
    return log_dir


@pytest.fixture(scope="module")
def tabular_b_run(tmp_path_factory, tabular_data):
    """A second MLP on the tabular run's data and feature names, 12 epochs against its 20: a shorter run to compare."""
    import keras

    x, y, feature_names, class_names = tabular_data
    model = keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return train(str(tmp_path_factory.mktemp("tabular_b")), model, x, y, 12, ["saliency", "integrated_gradients"], 1,
                 feature_names=feature_names, class_names=class_names)


@pytest.fixture(scope="module")
def digits_b_run(tmp_path_factory, digits_data):
    """A smaller CNN on the image run's digits, 6 epochs against its 20: an image run to compare."""
    import keras

    x, y = digits_data
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return train(str(tmp_path_factory.mktemp("digits_b")), model, x, y, 6, ["saliency"], 2,
                 class_names=[str(i) for i in range(10)])


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """A regression MLP (one output, float labels such as 2.1948): no classes to filter probes by."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5, 0.0]) + 0.1 * rng.normal(size=256)).astype(np.float32)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return train(str(tmp_path_factory.mktemp("regression")), model, x, y, 4, ["saliency", "integrated_gradients"], 0,
                 feature_names=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def frontend_logdir(tmp_path_factory, tabular_run, image_run, xss_run, tabular_b_run, digits_b_run, regression_run):
    logdir = tmp_path_factory.mktemp("frontend_logdir")
    for name, path in (("tabular", tabular_run.log_dir), ("digits", image_run.log_dir), ("xss", xss_run),
                       ("tabular_b", tabular_b_run), ("digits_b", digits_b_run), ("regression", regression_run)):
        shutil.copytree(path, logdir / name)
    write_one_step_run(str(logdir / "onestep" / "xai"))
    write_failing_run(str(logdir / "diverged" / "xai"))  # written last: the newest run, but nothing to draw
    return logdir


@pytest.fixture(scope="module")
def failing_logdir(tmp_path_factory):
    """A logdir whose only run has failures and nothing to draw yet."""
    logdir = tmp_path_factory.mktemp("failing_logdir")
    write_failing_run(str(logdir / "failing" / "xai"))
    return logdir


@pytest.fixture(scope="module")
def tensorboard_url(frontend_logdir):
    """A TensorBoard process over the callback's runs; yields its URL once every run is loaded."""
    yield from serve(frontend_logdir, {"tabular/xai": 20, "digits/xai": 20, "xss/xai": 3, "onestep/xai": 1,
                                       "tabular_b/xai": 12, "digits_b/xai": 6, "regression/xai": 4, "diverged/xai": 1})


@pytest.fixture(scope="module")
def failing_url(failing_logdir):
    """A second TensorBoard, over the logdir holding only failures."""
    yield from serve(failing_logdir, {"failing/xai": 1})


def serve(logdir, expected):
    """TensorBoard over `logdir` as users run it (TensorFlow imported; the Rust data server, at TensorBoard's
    default reload interval of 5 s: with a reload every second one run of the suite saw the default run's
    evolution miss its deadline); yields its URL once each run lists its expected prediction steps."""
    with Server(str(logdir), "true", tensorflow=True) as server:
        server.wait_for(expected)
        yield server.url + "/"


@pytest.fixture(scope="module")
def report(tensorboard_url, failing_url, frontend_logdir, failing_logdir, tabular_run, image_run, tmp_path_factory):
    """Runs the browser session once and parses its report."""
    import tb_xai

    screenshots = screenshot_dir(tmp_path_factory)
    digits = tb_xai.load(image_run.log_dir)
    config = {
        "url": tensorboard_url,
        "screenshots": screenshots,
        "downloads": str(tmp_path_factory.mktemp("downloads")),
        "runs": {"tabular": "tabular/xai", "image": "digits/xai", "xss": "xss/xai", "onestep": "onestep/xai",
                 "tabular_b": "tabular_b/xai", "digits_b": "digits_b/xai", "regression": "regression/xai", "diverged": "diverged/xai"},
        "tabular_features": tabular_run.feature_names,
        # The top-k the card must show: what tb_xai.load ranks first at the last step, per image method.
        "image_rankings": {method: digits.ranking(method)[:5] for method in digits.methods},
        "xss_name": XSS_NAME,
        "grow": [sys.executable, "-c", GROW, str(frontend_logdir / "xss" / "xai"), "3"],
        "grow_again": [sys.executable, "-c", GROW, str(frontend_logdir / "xss" / "xai"), "4"],
        "failing": {"url": failing_url, "run": "failing/xai",
                    "heal": [sys.executable, "-c", HEAL, str(failing_logdir / "failing" / "xai")]},
    }
    out = run_session("dashboard.mjs", config, timeout=600)
    print("browser session, per check (ms):", {name: c["ms"] for name, c in out["checks"].items()})
    return out


CHECKS = [
    "tab_appears",
    "tabular_views_draw",
    "hover_shows_value",
    "keyboard_reads_cells",
    "method_change_updates",
    "probe_change_updates",
    "url_remembers_selection",
    "export_png_svg_csv",
    "agreement_draws",
    "agreement_hover_and_pick",
    "agreement_export",
    "image_run_draws",
    "slider_changes_image",
    "compare_methods_side_by_side",
    "names_render_as_text",
    "reload_shows_new_steps",
    "one_step_run_draws",
    "hostile_hash_stays_consistent",
    "failures_only_run_lists_failures_then_draws",
    "default_opens_the_latest_run_with_data",
    "topk_of_an_image_run_is_its_ranking",
    "diverged_run_is_listed_with_its_failures",
    "another_run_opens_at_its_last_step",
    "regression_has_no_class_filter",
    "filmstrip_has_a_colour_scale",
    "prediction_legend_shows_every_class",
    "method_configuration_is_shown",
    "agreement_axis_fits_the_data",
    "compare_two_runs",
    "compare_image_runs",
    "dark_theme_follows_tensorboard",
    "polls_while_a_run_grows",
    "no_page_errors",
]


@pytest.mark.parametrize("name", CHECKS)
def test_dashboard(report, name):
    assert_check(report, name)


def test_no_dialog_fired(report):
    assert report["dialogs"] == []


def test_screenshots_of_every_view_are_saved(report):
    names = {os.path.basename(path) for path in report["screenshots"]}
    assert {"evolution_heatmap.png", "topk_lines.png", "stability.png", "probe_tabular.png",
            "evolution_filmstrip.png", "probe_image_compare.png", "agreement.png", "compare_runs.png",
            "dark_theme.png"} <= names
    for path in report["screenshots"]:
        assert os.path.getsize(path) > 5000, path
