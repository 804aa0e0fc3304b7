"""The tb_xai TensorBoard plugin: pure route logic, the real WSGI app, and real servers in both load modes.

Synthetic runs are written with `tb_xai.summary` (exact expected numbers); the real-server tests also serve the
log directories the callback wrote next to `keras.callbacks.TensorBoard` (the `tabular_run` and `image_run`
session fixtures of conftest.py).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from tensorboard import errors
from tensorboard.compat.proto import event_pb2
from tensorboard.data import provider
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from tb_xai import metadata, runmodel, summary
from tb_xai.plugin import loader, plugin, run_data
from tensorboard_server import ROUTE, Server, wsgi_client

FEATURES = ["age", "bmi", "bp", "chol", "glucose"]
PROBES = 6


# ---- synthetic runs -----------------------------------------------------------------------------------


def tabular_attribution(step: int, probes: int = PROBES, features: int = len(FEATURES)) -> np.ndarray:
    """a[p, f] = (f + 1) * (step + 1) * (+1 for even probes, -1 for odd): mean |a| is (f + 1) * (step + 1)."""
    sign = np.where(np.arange(probes) % 2 == 0, 1.0, -1.0)[:, None]
    return (np.arange(1, features + 1)[None, :] * (step + 1) * sign).astype(np.float32)


def tabular_summaries(steps: int) -> list:
    """(step, Summary) pairs of a tabular run: methods `ig` and `saliency`, `lime` failing at step 1."""
    pairs = [
        (0, summary.probe_pb("x", np.arange(PROBES * 5).reshape(PROBES, 5), feature_names=FEATURES,
                             modality=metadata.TABULAR)),
        (0, summary.labels_pb(np.arange(PROBES) % 2)),
    ]
    for step in range(steps):
        pairs += [
            (step, summary.predictions_pb(np.full((PROBES, 2), step / 100.0), class_names=["no", "yes"])),
            (step, summary.targets_pb(np.arange(PROBES) % 2)),
            (step, summary.attribution_pb("ig", "x", tabular_attribution(step), feature_names=FEATURES,
                                          modality=metadata.TABULAR, config={"steps": 50})),
            # saliency ranks features in reverse order
            (step, summary.attribution_pb("saliency", "x", tabular_attribution(step)[:, ::-1],
                                          feature_names=FEATURES, modality=metadata.TABULAR)),
        ]
        if step == 1:
            pairs.append((1, summary.failure_pb("lime", "ValueError: lime needs RGB")))
    return pairs


def image_summaries(steps: int) -> list:
    """An image run: 3 probes of 4x5x3; attribution channel c of probe p at step s is (c + 1) * (s + 1)."""
    shape = (3, 4, 5, 3)
    pairs = [(0, summary.probe_pb("img", np.linspace(0.0, 1.0, np.prod(shape)).reshape(shape), modality=metadata.IMAGE))]
    for step in range(steps):
        a = np.broadcast_to(np.arange(1.0, 4.0) * (step + 1), shape).astype(np.float32)
        pairs += [
            (step, summary.predictions_pb(np.eye(3, 10))),
            (step, summary.targets_pb(np.array([0, 1, 2]))),
            (step, summary.attribution_pb("grad_cam", "img", a, modality=metadata.IMAGE)),
        ]
    return pairs


def write_run(run_dir: str, pairs) -> None:
    writer = summary.SummaryWriter(run_dir)
    for step, value in pairs:
        writer.write(value, step)
    writer.close()


def write_scalars(run_dir: str, steps: int) -> None:
    """Scalars the way Keras 3 writes them (tensor summaries of the `scalars` plugin)."""
    os.makedirs(run_dir, exist_ok=True)
    writer = EventFileWriter(run_dir)
    for step in range(steps):
        for tag, value in (("epoch_loss", 1.0 / (step + 1)), ("epoch_accuracy", step / steps)):
            writer.add_event(event_pb2.Event(wall_time=1.0 + step, step=step,
                                             summary=scalar_summary.scalar_pb(tag, value)))
    writer.close()


def truncate_last_record(run_dir: str, nbytes: int = 7) -> None:
    """Cuts the end of the run's event file, as a reader sees a file whose last write is under way."""
    (path,) = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - nbytes)


def memory_run(name: str, pairs) -> runmodel.Run:
    """A `Run` read by the plugin's reader from (step, Summary) pairs served by an in-memory data provider."""
    return run_data.ProviderReader(CountingProvider(name, pairs), cache_bytes=2**20).runs(None, "")[name]


# ---- pure route logic ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tabular():
    return memory_run("exp1/xai", tabular_summaries(4))


@pytest.fixture(scope="module")
def image():
    return memory_run("img/xai", image_summaries(3))


def test_index_tags_leaves_out_payloads_of_unknown_versions_and_says_why():
    content = metadata.plugin_data_pb2.PluginData(version=metadata.PROTO_VERSION + 1,
                                                  kind=metadata.ATTRIBUTION, method="future").SerializeToString()
    known = summary.attribution_pb("ig", "x", np.zeros((1, 2))).value[0].metadata.plugin_data.content
    only_future = runmodel.index_tags("a", [("t1", content, ())])
    assert not only_future.holds_data and "payload version" in only_future.skipped["t1"]
    index = runmodel.index_tags("b", [("t1", content, ()), ("t2", known, (0, 0.0))])
    assert list(index.attributions) == ["ig"] and list(index.skipped) == ["t1"]


def test_runs_impl_describes_methods_inputs_steps_and_failures(tabular):
    (run,) = plugin.runs_impl({"exp1/xai": tabular}, ["exp1/train", "exp1/validation", "exp2/train"],
                              {"exp1/train": "3@4.0", "exp1/validation": "3@5.0", "exp2/train": "9@9.0"})["runs"]
    assert run["run"] == "exp1/xai"
    assert run["class_count"] == 2
    assert run["scalar_versions"] == {"exp1/train": "3@4.0", "exp1/validation": "3@5.0"}
    assert run["version"] and "3@0.0" in run["version"]
    assert run["probe_count"] == PROBES
    assert run["has_labels"] is True
    assert run["class_names"] == ["no", "yes"]
    assert run["prediction_steps"] == [0, 1, 2, 3]
    assert run["scalar_runs"] == ["exp1/train", "exp1/validation"]
    assert run["probe_inputs"] == [{"input": "x", "modality": metadata.TABULAR, "feature_names": FEATURES}]
    assert [m["method"] for m in run["methods"]] == ["ig", "lime", "saliency"]
    ig, lime, _ = run["methods"]
    assert ig["inputs"] == [{
        "input": "x", "modality": metadata.TABULAR, "feature_names": FEATURES, "attribution_shape": [5],
        "map_shape": [5], "layout": {"kind": "vector", "map_shape": [5], "picture": False, "names": FEATURES,
                                     "name_pattern": None},
        "steps": [0, 1, 2, 3], "dropped_steps": [], "config": {"steps": 50}, "version": "3@0.0",
    }]
    assert ig["failures"] == []
    assert lime == {"method": "lime", "inputs": [], "failures": [{"step": 1, "message": "ValueError: lime needs RGB"}]}
    assert run["skipped"] == []


def test_evolution_impl_means_over_probes(tabular):
    body = plugin.evolution_impl(tabular, "ig", None)
    assert body["steps"] == [0, 1, 2, 3]
    assert body["features"] == FEATURES and body["map_shape"] == [5]
    np.testing.assert_allclose(body["importance"], np.outer([1, 2, 3, 4], [1, 2, 3, 4, 5]))
    assert body["probe_counts"] == [PROBES] * 4
    assert body["order"] == [4, 3, 2, 1, 0]
    assert body["range"] == [1.0, 20.0]
    signed = plugin.evolution_impl(tabular, "ig", "x", signed=True)
    np.testing.assert_allclose(signed["importance"], 0.0)  # even and odd probes cancel


def test_evolution_impl_per_target_and_step_range(tabular):
    body = plugin.evolution_impl(tabular, "ig", "x", signed=True, target=1, steps=(1, 3))
    assert body["steps"] == [1, 2] and body["target"] == 1
    np.testing.assert_allclose(body["importance"], -np.outer([2, 3], [1, 2, 3, 4, 5]))  # odd probes only
    assert body["probe_counts"] == [PROBES // 2] * 2
    empty = plugin.evolution_impl(tabular, "ig", "x", steps=(100, None))
    assert empty["steps"] == [] and empty["importance"] == [] and empty["map_shape"] == [5]
    absent = plugin.evolution_impl(tabular, "ig", "x", target=7)
    assert absent["importance"][0] == [None] * 5 and absent["probe_counts"][0] == 0
    assert absent["range"] is None


def client_element_names(body: dict) -> list:
    """Every element name by the documented rule of the sent `layout` (docs/http_api.md), applied literally:
    `names` for a 1-D map, else `name_pattern` with `{d}` replaced by the element's index along axis d."""
    layout = body["layout"]
    if layout["names"] is not None:
        return layout["names"]
    names = []
    for index in np.ndindex(*layout["map_shape"]):
        name = layout["name_pattern"]
        for axis, i in enumerate(index):
            name = name.replace("{%d}" % axis, str(i))
        names.append(name)
    return names


def test_evolution_impl_of_images_sends_channel_reduced_maps(image):
    body = plugin.evolution_impl(image, "grad_cam", None)
    assert body["map_shape"] == [4, 5] and body["order"] == list(range(20))  # a flat map: ties by index
    assert body["features"] is None and body["layout"]["names"] is None  # a rule, not 20 strings
    assert body["layout"]["kind"] == "picture" and body["layout"]["picture"] is True
    assert client_element_names(body) == [f"pixel ({r}, {c})" for r in range(4) for c in range(5)]
    probe = plugin.probe_impl(image, "grad_cam", None, 0)
    assert probe["features"] is None and probe["map_shape"] == [4, 5]
    assert len(body["importance"][0]) == 20
    np.testing.assert_allclose(body["importance"], np.outer([6, 12, 18], np.ones(20)))  # 1 + 2 + 3 channels


def test_probe_impl_follows_one_probe(tabular):
    body = plugin.probe_impl(tabular, "ig", "x", 1, signed=True, steps=(2, None))
    assert body["steps"] == [2, 3]
    np.testing.assert_allclose(body["attributions"], -np.outer([3, 4], [1, 2, 3, 4, 5]))
    assert body["prediction_steps"] == [2, 3]
    np.testing.assert_allclose(body["predictions"], [[0.02, 0.02], [0.03, 0.03]])
    assert body["targets"] == [1, 1] and body["label"] == 1
    assert body["input_shape"] == [5] and body["input_values"] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert body["input_range"] == [5.0, 9.0]
    magnitudes = plugin.probe_impl(tabular, "ig", "x", 1)
    assert min(min(row) for row in magnitudes["attributions"]) > 0


def test_probe_impl_of_images(image):
    body = plugin.probe_impl(image, "grad_cam", "img", 2, steps=(None, 1))
    assert body["steps"] == [0] and body["map_shape"] == [4, 5]
    np.testing.assert_allclose(body["attributions"], [[6.0] * 20])
    assert body["input_shape"] == [4, 5, 3] and len(body["input_values"]) == 60
    assert body["label"] is None and body["targets"] == [2]


def test_probe_impl_rejects_a_probe_out_of_range(tabular):
    with pytest.raises(errors.InvalidArgumentError, match=r"probe=6 .*6 probes \(0\.\.5\)"):
        plugin.probe_impl(tabular, "ig", "x", PROBES)


def test_stability_impl_of_a_constant_ranking_is_one(tabular):
    body = plugin.stability_impl(tabular, "ig", "x", k=2)
    assert body["steps"] == [0, 1, 2, 3] and body["k"] == 2
    assert body["spearman_previous"] == [None, 1.0, 1.0, 1.0]
    assert body["topk_previous"] == [None, 1.0, 1.0, 1.0]
    assert body["spearman_last"] == [1.0] * 4 and body["topk_last"] == [1.0] * 4


def test_agreement_impl_compares_methods_on_common_steps(tabular):
    body = plugin.agreement_impl(tabular, None, k=2)
    assert body["methods"] == ["ig", "saliency"]
    (pair,) = body["pairs"]
    assert pair["methods"] == ["ig", "saliency"] and pair["steps"] == [0, 1, 2, 3]
    assert pair["spearman"] == [-1.0] * 4 and pair["topk"] == [0.0] * 4


def test_a_tag_that_changed_shape_serves_its_latest_shape_and_says_which_steps_it_left_out():
    # The model was rebuilt with 7 features from step 2 on: the dashboard shows the new model's steps.
    ig = metadata.attribution_tag("ig", "x")
    pairs = [(step, value) for step, value in tabular_summaries(4) if step < 2 or value.value[0].tag != ig]
    pairs += [(step, summary.attribution_pb("ig", "x", tabular_attribution(step, features=7), modality=metadata.TABULAR))
              for step in (2, 3)]
    run = memory_run("changed/xai", pairs)
    ig = plugin.runs_impl({"changed/xai": run}, [])["runs"][0]["methods"][0]
    assert ig["inputs"][0]["steps"] == [2, 3] and ig["inputs"][0]["dropped_steps"] == [0, 1]
    assert ig["inputs"][0]["map_shape"] == [7]
    body = plugin.evolution_impl(run, "ig", None)
    assert body["steps"] == [2, 3] and body["features"] == [f"feature {i}" for i in range(7)]


def test_lookups_name_the_bad_value(tabular):
    with pytest.raises(errors.NotFoundError, match="'nope'.*exp1/xai"):
        plugin.find_run({"exp1/xai": tabular}, "nope")
    with pytest.raises(errors.NotFoundError, match="'shap'.*'ig', 'saliency'"):
        plugin.evolution_impl(tabular, "shap", None)
    with pytest.raises(errors.NotFoundError, match="input 'y'.*'x'"):
        plugin.stability_impl(tabular, "ig", "y")
    with pytest.raises(errors.NotFoundError, match="input 'y'"):
        plugin.agreement_impl(tabular, "y")


def test_a_run_holding_only_failures_has_nothing_to_compare():
    failed = memory_run("f/xai", [(0, summary.failure_pb("lime", "boom"))])
    assert plugin.runs_impl({"f/xai": failed}, [])["runs"][0]["methods"][0]["failures"] == [
        {"step": 0, "message": "boom"}]
    with pytest.raises(errors.NotFoundError, match="run 'f/xai' holds no attributions"):
        plugin.agreement_impl(failed, None)


def test_parsers_accept_documented_forms_and_name_bad_values():
    assert plugin.parse_step_range("5:10") == (5, 10)
    assert plugin.parse_step_range(":10") == (None, 10)
    assert plugin.parse_step_range("5:") == (5, None)
    assert plugin.parse_step_range(None) == (None, None)
    assert plugin.parse_target("all") is None and plugin.parse_target("3") == 3
    assert plugin.parse_bool("1", "signed") is True and plugin.parse_bool(None, "signed") is False
    for bad, call in [
        ("'5'", lambda: plugin.parse_step_range("5")),
        ("'a:b'", lambda: plugin.parse_step_range("a:b")),
        ("'9:3'", lambda: plugin.parse_step_range("9:3")),
        ("'-1'", lambda: plugin.parse_target("-1")),
        ("'yes'", lambda: plugin.parse_bool("yes", "signed")),
        ("k='1e9x'", lambda: plugin.parse_int("1e9x", "k")),
        ("k='0'", lambda: plugin.parse_int("0", "k", minimum=1)),
    ]:
        with pytest.raises(errors.InvalidArgumentError, match=re.escape(bad)):
            call()


def test_sibling_runs_pair_xai_with_keras_runs():
    candidates = ["exp1/train", "exp1/validation", "exp2/train", "train", "exp1/xai"]
    assert plugin.sibling_runs("exp1/xai", candidates) == ["exp1/train", "exp1/validation"]
    assert plugin.sibling_runs("xai", candidates) == ["train"]


def test_resolve_static_serves_only_files_inside_the_static_folder(tmp_path):
    root = tmp_path / "static"
    (root / "chunks").mkdir(parents=True)
    (root / "index.js").write_text("export function render() {}")
    (root / "chunks" / "a.css").write_text("body {}")
    (tmp_path / "secret.js").write_text("secret")
    (root / "escape.js").symlink_to(tmp_path / "secret.js")
    (root / "README.py").write_text("x")
    assert plugin.resolve_static("index.js", str(root)) == (str(root / "index.js"), "text/javascript")
    assert plugin.resolve_static("chunks/a.css", str(root))[1] == "text/css"
    for name in ["../secret.js", "chunks/../../secret.js", "/etc/passwd", "..\\secret.js", "escape.js",
                 "README.py", "", "missing.js", "chunks//a.css", "./index.js", "index.js\0.png"]:
        with pytest.raises(errors.NotFoundError):
            plugin.resolve_static(name, str(root))


def test_floats_round_relative_to_the_peak_and_send_null_for_non_finite():
    assert plugin._floats(np.array([123.456789, 0.000123456, np.nan, np.inf])) == [123.457, 0.0, None, None]
    assert plugin._floats(np.array([1e-8, 3.14159265e-8])) == [1e-8, 3.14159e-8]


# ---- loader -------------------------------------------------------------------------------------------


class _Flags:
    def __init__(self, samples_per_plugin):
        self.samples_per_plugin = samples_per_plugin


def test_loader_keeps_every_step_unless_the_user_chose():
    flags = _Flags({})
    loader.XaiLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {metadata.PLUGIN_NAME: 0}
    chosen = {metadata.PLUGIN_NAME: 5, "images": 3}
    flags = _Flags(chosen)
    loader.XaiLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {metadata.PLUGIN_NAME: 5, "images": 3}


def test_loader_flag_bounds_the_cache():
    parser = argparse.ArgumentParser()
    loader.XaiLoader().define_flags(parser)
    assert parser.parse_args([]).xai_cache_mb == loader.DEFAULT_CACHE_MB
    assert parser.parse_args(["--xai_cache_mb", "0"]).xai_cache_mb == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--xai_cache_mb", "-1"])


def test_plugin_modules_import_neither_tensorflow_nor_shap_nor_lime():
    code = (
        "import sys, tb_xai.plugin.loader, tb_xai.plugin.plugin\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'shap', 'lime', 'keras'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ---- the real WSGI app (Python loader, loaded once, in process) ---------------------------------------


def test_runs_impl_counts_classes_without_class_names(image):
    (run,) = plugin.runs_impl({"img/xai": image}, [])["runs"]
    assert run["class_names"] == [] and run["class_count"] == 10
    assert run["scalar_runs"] == [] and run["scalar_versions"] == {}


def test_versions_change_when_a_refit_rewrites_the_same_steps():
    listing = lambda wall_time: {"a": {t: provider.TensorTimeSeries(
        max_step=3, max_wall_time=wall_time, plugin_content=v.metadata.plugin_data.content, description="",
        display_name="") for _, s in tabular_summaries(1) for v in s.value for t in [v.tag]}}
    index = lambda tags: runmodel.index_tags(
        "a", ((tag, s.plugin_content, (s.max_step, s.max_wall_time)) for tag, s in tags["a"].items()))
    first, refit = (index(listing(w)) for w in (10.0, 20.0))
    read = lambda ref: runmodel.TagSeries.from_points([(0, np.zeros((PROBES, 5)))])
    describe = lambda index: plugin.runs_impl({"a": runmodel.Run(index, read)}, [])["runs"][0]
    before, after = describe(first), describe(refit)
    assert before["version"] != after["version"]
    assert before["methods"][0]["inputs"][0]["version"] == "3@10.0"
    assert after["methods"][0]["inputs"][0]["version"] == "3@20.0"
    scalars = lambda step, wall_time: {"t": provider.ScalarTimeSeries(
        max_step=step, max_wall_time=wall_time, plugin_content=b"", description="", display_name="")}
    assert plugin.scalar_versions({"exp/train": scalars(4, 7.5), "exp/empty": {}}) == {"exp/train": "4@7.5"}


def test_scalars_impl_sends_steps_and_values_bounded():
    points = {"steps": list(range(2500)), "wall_times": [0.0] * 2500, "values": [float("nan")] + [1.0] * 2499}
    answer = plugin.scalars_impl("e/xai", {"e/train": {"loss": points}}, max_points=1000)
    loss = answer["runs"]["e/train"]["loss"]
    assert set(loss) == {"steps", "values"}
    assert len(loss["steps"]) == 1000 and loss["steps"][0] == 0 and loss["steps"][-1] == 2499
    assert loss["values"][0] is None and len(loss["values"]) == 1000
    short = plugin.scalars_impl("e/xai", {"e/train": {"loss": {"steps": [0, 1], "values": [2.0, 1.0]}}})
    assert short["runs"]["e/train"]["loss"] == {"steps": [0, 1], "values": [2.0, 1.0]}


@pytest.fixture(scope="module")
def synthetic_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("synthetic")
    write_run(str(logdir / "long" / "xai"), tabular_summaries(150))
    write_scalars(str(logdir / "long" / "train"), 150)
    write_run(str(logdir / "img" / "xai"), image_summaries(3))
    write_run(str(logdir / "cut" / "xai"), tabular_summaries(10))
    truncate_last_record(str(logdir / "cut" / "xai"))
    return str(logdir)


def test_wsgi_app_serves_every_route(synthetic_logdir):
    client = wsgi_client(synthetic_logdir)
    listing = client.get("/data/plugins_listing").get_json()
    assert listing[metadata.PLUGIN_NAME]["enabled"] is True
    assert listing[metadata.PLUGIN_NAME]["loading_mechanism"]["module_path"] == ROUTE + "index.js"
    runs = {r["run"]: r for r in client.get(ROUTE + "runs").get_json()["runs"]}
    assert runs["long/xai"]["methods"][0]["inputs"][0]["steps"] == list(range(150))
    assert runs["long/xai"]["scalar_runs"] == ["long/train"]
    assert runs["long/xai"]["scalar_versions"] == {"long/train": "149@150.0"}
    assert runs["img/xai"]["class_count"] == 10
    evolution = client.get(ROUTE + "evolution?run=long/xai&method=ig&target=0&signed=1").get_json()
    assert evolution["steps"] == list(range(150)) and evolution["probe_counts"][0] == PROBES // 2
    probe = client.get(ROUTE + "probe?run=img/xai&method=grad_cam&probe=0&steps=1:2").get_json()
    assert probe["steps"] == [1] and probe["map_shape"] == [4, 5]
    stability = client.get(ROUTE + "stability?run=long/xai&method=saliency&k=3").get_json()
    assert stability["k"] == 3 and len(stability["spearman_last"]) == 150
    agreement = client.get(ROUTE + "agreement?run=long/xai&input=x").get_json()
    assert agreement["pairs"][0]["steps"] == list(range(150))
    scalars = client.get(ROUTE + "scalars?run=long/xai").get_json()
    loss = scalars["runs"]["long/train"]["epoch_loss"]
    assert loss["steps"] == list(range(150)) and loss["values"][1] == pytest.approx(0.5)
    assert "wall_times" not in loss
    response = client.get(ROUTE + "index.js")
    assert response.status_code == 200 and b"render" in response.data
    assert response.headers["Content-Type"].startswith("text/javascript")


def test_wsgi_app_lets_an_explicit_samples_per_plugin_win(synthetic_logdir):
    client = wsgi_client(synthetic_logdir, "--samples_per_plugin", f"{metadata.PLUGIN_NAME}=5")
    evolution = client.get(ROUTE + "evolution?run=long/xai&method=ig").get_json()
    assert len(evolution["steps"]) == 5


# ---- real servers on 127.0.0.1 in both load modes -----------------------------------------------------

@pytest.fixture(scope="module")
def served_logdir(tmp_path_factory, synthetic_logdir, tabular_run, image_run):
    """The synthetic runs and the callback's two log directories (xai, train, validation runs) in one logdir."""
    logdir = tmp_path_factory.mktemp("served")
    shutil.copytree(synthetic_logdir, logdir, dirs_exist_ok=True)
    shutil.copytree(tabular_run.log_dir, logdir / "tabular")
    shutil.copytree(image_run.log_dir, logdir / "digits")
    return str(logdir)


@pytest.mark.parametrize("name", ["tabular", "digits"])
def test_the_dashboard_and_tb_xai_load_give_the_same_answers(served_logdir, name):
    import tb_xai

    client = wsgi_client(served_logdir)
    run = tb_xai.load(os.path.join(served_logdir, name))
    query = f"run={name}/xai&target=1&k=5"
    listed = {r["run"]: r for r in client.get(ROUTE + "runs").get_json()["runs"]}[f"{name}/xai"]
    methods = [m["method"] for m in listed["methods"] if m["inputs"]]
    assert methods and set(methods) <= set(run.methods)
    for method in methods:
        evolution = client.get(ROUTE + f"evolution?{query}&method={method}").get_json()
        importance = run.importance(method, target=1).reshape(len(evolution["steps"]), -1)
        assert evolution["steps"] == run.steps(method)
        # the CSV export's names (sent for 1-D maps, built from map_shape for images) are the DataFrame's
        assert client_element_names(evolution) == run.map_names(method)
        assert (evolution["features"] is None) == (len(evolution["map_shape"]) != 1)
        peak = np.nanmax(np.abs(importance))
        np.testing.assert_allclose(np.array(evolution["importance"], dtype=float), importance,
                                   rtol=1e-5, atol=1e-5 * peak)
        stability = client.get(ROUTE + f"stability?{query}&method={method}").get_json()
        expected = run.stability(method, k=5, target=1)
        np.testing.assert_allclose(np.array(stability["spearman_previous"], dtype=float),
                                   expected["spearman_previous"], rtol=1e-9)
    agreement = client.get(ROUTE + f"agreement?{query}").get_json()
    expected = run.agreement(k=5, target=1)
    assert [p["methods"] for p in agreement["pairs"]] == [p["methods"] for p in expected] != []
    for got, want in zip(agreement["pairs"], expected):
        assert got["steps"] == want["steps"].tolist()
        np.testing.assert_allclose(np.array(got["spearman"], dtype=float), want["spearman"], rtol=1e-9)
        np.testing.assert_allclose(np.array(got["topk"], dtype=float), want["topk"], rtol=1e-9)


@pytest.fixture(scope="module", params=["true", "false"], ids=lambda mode: f"load_fast={mode}")
def server(request, served_logdir):
    # TensorBoard as users run it, TensorFlow imported, on both loaders here (the other files' `true` servers
    # start without it: tests/tensorboard_server.py).
    server = Server(served_logdir, request.param, tensorflow=True)
    try:
        server.runs = server.wait_for({"long/xai": 150, "tabular/xai": 20, "digits/xai": 20, "img/xai": 3})
        yield server
    finally:
        server.stop()


def test_server_lists_the_plugin(server):
    listing = server.json("/data/plugins_listing")
    assert listing[metadata.PLUGIN_NAME]["enabled"] is True
    assert listing[metadata.PLUGIN_NAME]["tab_name"] == "Attributions"
    status, body = server.get(ROUTE + "index.js")
    assert status == 200 and b"render" in body


def test_server_keeps_all_150_steps(server):
    ig = server.runs["long/xai"]["methods"][0]
    assert ig["method"] == "ig" and ig["inputs"][0]["steps"] == list(range(150))
    assert server.json(ROUTE + "evolution?run=long/xai&method=ig")["steps"] == list(range(150))
    assert len(server.json(ROUTE + "probe?run=long/xai&method=saliency&probe=5")["steps"]) == 150


@pytest.mark.parametrize("name, modality", [("tabular", metadata.TABULAR), ("digits", metadata.IMAGE)])
def test_server_serves_every_route_over_a_callback_run(server, name, modality):
    run = server.runs[f"{name}/xai"]
    keras_runs = sorted(f"{name}/{d}" for d in os.listdir(os.path.join(server.logdir, name)) if d != "xai")
    assert f"{name}/train" in keras_runs and run["scalar_runs"] == keras_runs
    assert run["has_labels"] is True and run["probe_count"] > 0
    methods = [m for m in run["methods"] if m["inputs"]]
    assert methods, run["methods"]
    for method in methods:
        entry = method["inputs"][0]
        assert entry["modality"] == modality and entry["steps"] == list(range(20)), (method["method"], entry)
        query = f"run={name}/xai&method={method['method']}&input={entry['input']}"
        evolution = server.json(ROUTE + f"evolution?{query}&signed=1&target=1")
        assert evolution["steps"] == entry["steps"]
        assert len(evolution["importance"][0]) == int(np.prod(entry["map_shape"]))
        probe = server.json(ROUTE + f"probe?{query}&probe={run['probe_count'] - 1}&steps=18:")
        assert probe["steps"] == [18, 19] and probe["prediction_steps"] == [18, 19]
        assert probe["input_values"] is not None and probe["label"] is not None
        stability = server.json(ROUTE + f"stability?{query}&k=5")
        last = server.json(ROUTE + f"evolution?{query}")["importance"][-1]
        ranked = None not in last and len(set(last)) > 1  # a constant ranking has no rank correlation
        assert len(stability["spearman_previous"]) == 20, method["method"]
        assert stability["spearman_last"][-1] == (1.0 if ranked else None), (method["method"], last)
    agreement = server.json(ROUTE + f"agreement?run={name}/xai&input={methods[0]['inputs'][0]['input']}")
    shapes = [tuple(m["inputs"][0]["map_shape"]) for m in methods]
    assert len(agreement["pairs"]) == sum(n * (n - 1) // 2 for n in map(shapes.count, set(shapes)))
    for pair in agreement["pairs"]:
        assert pair["steps"] == list(range(20)) and len(pair["spearman"]) == 20
    scalars = server.json(ROUTE + f"scalars?run={name}/xai")["runs"]
    assert sorted(scalars) == keras_runs
    assert scalars[f"{name}/train"]["epoch_loss"]["steps"] == list(range(20))


def test_server_serves_what_is_readable_of_a_truncated_run(server):
    run = server.runs["cut/xai"]
    steps = {m["method"]: m["inputs"][0]["steps"] for m in run["methods"] if m["inputs"]}
    assert steps["ig"] == list(range(10)) and steps["saliency"] == list(range(9))  # last record cut
    evolution = server.json(ROUTE + "evolution?run=cut/xai&method=saliency")
    assert evolution["steps"] == list(range(9))


@pytest.mark.parametrize("path, status, message", [
    ("evolution?run=nope&method=ig", 404, b"'nope'"),
    ("evolution?run=long/xai&method=shap", 404, b"'shap'"),
    ("evolution?run=long/xai&method=ig&input=z", 404, b"'z'"),
    ("evolution?method=ig", 400, b"'run'"),
    ("evolution?run=long/xai&method=ig&signed=maybe", 400, b"'maybe'"),
    ("evolution?run=long/xai&method=ig&steps=3", 400, b"'3'"),
    ("probe?run=long/xai&method=ig&probe=6", 400, b"probe=6"),
    ("probe?run=long/xai&method=ig&probe=-1", 400, b"'-1'"),
    ("probe?run=long/xai&method=ig&probe=one", 400, b"'one'"),
    ("stability?run=long/xai&method=ig&k=0", 400, b"k='0'"),
    ("agreement?run=long/xai&target=x", 400, b"'x'"),
    ("static/../plugin.py", 404, b"no static file"),
    ("static/..%2fplugin.py", 404, b"no static file"),
    ("static/%2e%2e/%2e%2e/metadata.py", 404, b"no static file"),
    ("static/index.py", 404, b"no static file"),
])
def test_server_answers_bad_requests_with_400_or_404(server, path, status, message):
    got, body = server.get(ROUTE + path)
    assert got == status and message in body, (path, got, body)


# ---- the provider reader: one read per tag in flight, descriptions without decoding, the cache's bound ---

import collections  # noqa: E402 - used by this section only
import threading  # noqa: E402


class CountingProvider:
    """A data provider over (step, Summary) pairs of one run that counts `read_tensors` calls per tag.

    `before_read(tag)`, when set, runs inside each read (to hold it open, or to fail it).
    """

    def __init__(self, run: str, pairs):
        self.run, self.listing, self.points = run, {}, {}
        for step, value in pairs:
            for v in value.value:
                self.points.setdefault(v.tag, []).append(
                    provider.TensorDatum(step=step, wall_time=0.0, numpy=tensor_util.make_ndarray(v.tensor)))
                self.listing[v.tag] = provider.TensorTimeSeries(
                    max_step=step, max_wall_time=0.0, plugin_content=v.metadata.plugin_data.content,
                    description="", display_name="")
        self.reads = collections.Counter()
        self.before_read = None
        self._lock = threading.Lock()

    def list_tensors(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        return {self.run: dict(self.listing)}

    def read_scalars(self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None):
        return {}  # no scalars: the quality figures are absent

    def read_tensors(self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None):
        (tag,) = run_tag_filter.tags
        with self._lock:
            self.reads[tag] += 1
        if self.before_read is not None:
            self.before_read(tag)
        return {self.run: {tag: list(self.points[tag])}}


def _read_concurrently(monkeypatch, reader, run, ref, readers: int = 4) -> list:
    """`readers` threads read `ref` while the first one's read is held open until every other one waits on it."""
    entered, release, waiting = threading.Event(), threading.Event(), threading.Semaphore(0)

    class WaitCountingFuture(run_data.Future):
        def result(self, timeout=None):
            waiting.release()
            return super().result(timeout)

    monkeypatch.setattr(run_data, "Future", WaitCountingFuture)
    held = reader._data_provider.before_read
    reader._data_provider.before_read = lambda tag: (entered.set(), release.wait(10), held and held(tag))
    outcomes = [None] * readers

    def read(i):
        try:
            outcomes[i] = run.read(ref)
        except Exception as e:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[i] = e

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    threads[0].start()
    assert entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    for _ in threads[1:]:
        assert waiting.acquire(timeout=10)
    release.set()
    for thread in threads:
        thread.join(10)
    reader._data_provider.before_read = held
    return outcomes


def test_concurrent_readers_of_one_tag_share_one_read(monkeypatch):
    data = CountingProvider("exp1/xai", tabular_summaries(4))
    reader = run_data.ProviderReader(data, cache_bytes=0)
    run = reader.runs(None, "")["exp1/xai"]
    ref = run.index.attributions["ig"]["x"]
    outcomes = _read_concurrently(monkeypatch, reader, run, ref)
    assert data.reads[ref.tag] == 1
    assert all(o is outcomes[0] for o in outcomes)
    assert outcomes[0].steps.tolist() == [0, 1, 2, 3] and outcomes[0].values.shape == (4, PROBES, 5)
    assert reader._in_flight == {}


def test_an_evolution_answer_prepares_its_methods_noise_floor_in_the_background():
    from tensorboard.plugins import base_plugin
    from werkzeug import test as werkzeug_test

    from tb_xai import aggregate, findings, query

    rng = np.random.default_rng(0)
    pairs = [(0, summary.probe_pb("x", rng.normal(size=(8, 5)), feature_names=FEATURES, modality=metadata.TABULAR))]
    pairs += [(step, summary.attribution_pb("ig", "x", rng.normal(size=(8, 5)).astype(np.float32),
                                            feature_names=FEATURES, modality=metadata.TABULAR)) for step in range(6)]
    data = CountingProvider("exp1/xai", pairs)
    xai = plugin.XaiPlugin(base_plugin.TBContext(data_provider=data, flags=argparse.Namespace(xai_cache_mb=64)))
    client = werkzeug_test.Client(xai.get_plugin_apps()["/evolution"])
    assert client.get("/evolution?run=exp1/xai&method=ig").status_code == 200
    xai._background.submit(lambda: None).result(timeout=60)  # one worker: the preparation has run before this
    run = xai._reader.runs(None, "")["exp1/xai"]
    ref, full = query.attribution(run, "ig")
    prepared = query.floors_cache(full)[("floors", aggregate.DEFAULT_K)]
    expected = findings.bootstrap_floors(findings.as_maps(full.values, metadata.TABULAR), aggregate.DEFAULT_K)
    for name in ("ndcg_floor", "spearman_floor"):
        np.testing.assert_array_equal(prepared[name], expected[name])
    # The stability view's band is those floors, not computed again, and the tag was read once.
    assert query.noise_floor(run, "ig", k=aggregate.DEFAULT_K)["ndcg_floor"] is prepared["ndcg_floor"]
    assert data.reads[ref.tag] == 1
    # Once the stability view is asked for another k, the next views prepare that k too (the latest first).
    data.list_scalars = lambda *args, **kwargs: {}
    stability = werkzeug_test.Client(xai.get_plugin_apps()["/stability"])
    assert stability.get("/stability?run=exp1/xai&method=ig&k=2").status_code == 200
    assert xai._stability_ks == [aggregate.DEFAULT_K, 2]
    query.floors_cache(full).pop(("floors", 2))
    probe = werkzeug_test.Client(xai.get_plugin_apps()["/probe"])
    assert probe.get("/probe?run=exp1/xai&method=ig&probe=1").status_code == 200
    xai._background.submit(lambda: None).result(timeout=60)
    assert set(query.floors_cache(full)) >= {("floors", 2), ("floors", aggregate.DEFAULT_K)}
    xai._background.shutdown()


def test_a_failed_read_reaches_every_waiter_and_the_next_read_tries_again(monkeypatch):
    data = CountingProvider("exp1/xai", tabular_summaries(2))

    def fail(tag):
        raise OSError("event file went away")

    data.before_read = fail
    reader = run_data.ProviderReader(data, cache_bytes=2**20)
    run = reader.runs(None, "")["exp1/xai"]
    ref = run.index.attributions["ig"]["x"]
    outcomes = _read_concurrently(monkeypatch, reader, run, ref)
    assert data.reads[ref.tag] == 1
    assert all(isinstance(o, OSError) and "went away" in str(o) for o in outcomes)
    assert reader._in_flight == {}
    data.before_read = None
    assert run.read(ref).steps.tolist() == [0, 1] and data.reads[ref.tag] == 2


def test_runs_are_described_without_decoding_attributions_again_when_the_cache_holds_nothing():
    data = CountingProvider("exp1/xai", tabular_summaries(4))
    reader = run_data.ProviderReader(data, cache_bytes=0)
    attribution_tags = lambda run: {ref.tag for by_input in run.index.attributions.values()
                                    for ref in by_input.values()}
    runs = reader.runs(None, "")
    first = plugin.runs_impl(runs, [])
    tags = attribution_tags(runs["exp1/xai"])
    assert tags and all(data.reads[tag] == 1 for tag in tags)
    data.reads.clear()
    assert plugin.runs_impl(reader.runs(None, ""), []) == first
    assert not tags & set(data.reads)
    # A tag that grows is read again, once; the others are still described from memory.
    grown = sorted(tags)[0]
    data.listing[grown] = provider.TensorTimeSeries(
        max_step=3, max_wall_time=1.0, plugin_content=data.listing[grown].plugin_content,
        description="", display_name="")
    plugin.runs_impl(reader.runs(None, ""), [])
    assert {tag: data.reads[tag] for tag in tags if data.reads[tag]} == {grown: 1}


def test_an_entry_over_the_bound_drops_the_older_version_of_its_tag():
    small = run_data.TagSeries(np.arange(2), np.zeros((2, 10)))
    large = run_data.TagSeries(np.arange(2), np.zeros((2, 100)))
    reader = run_data.ProviderReader(None, cache_bytes=run_data.series_nbytes(small))
    reader._store(("e", "r", "t"), (1, 0.0), small)
    assert ("e", "r", "t") in reader._cache
    reader._store(("e", "r", "t"), (2, 0.0), large)
    assert ("e", "r", "t") not in reader._cache and reader._cache_total == 0


def test_the_cache_counts_what_object_arrays_hold():
    messages = np.array([b"x" * 10_000, b"y" * 10_000], dtype=object)
    series = run_data.TagSeries(np.arange(2), messages)
    assert run_data.series_nbytes(series) >= 20_000 + messages.nbytes + series.steps.nbytes


def test_a_failure_while_storing_reaches_every_waiter_and_the_next_read_works(monkeypatch):
    data = CountingProvider("exp1/xai", tabular_summaries(2))
    reader = run_data.ProviderReader(data, cache_bytes=2**20)
    run = reader.runs(None, "")["exp1/xai"]
    ref = run.index.attributions["ig"]["x"]
    store = run_data.ProviderReader._store_locked

    def fail(self, *args):
        raise MemoryError("no room to cache")

    monkeypatch.setattr(run_data.ProviderReader, "_store_locked", fail)
    outcomes = _read_concurrently(monkeypatch, reader, run, ref)
    assert data.reads[ref.tag] == 1
    assert all(isinstance(o, MemoryError) and "no room" in str(o) for o in outcomes), outcomes
    assert reader._in_flight == {} and not reader._lock.locked()
    monkeypatch.setattr(run_data.ProviderReader, "_store_locked", store)
    assert run.read(ref).steps.tolist() == [0, 1] and data.reads[ref.tag] == 2
    assert run.read(ref).steps.tolist() == [0, 1] and data.reads[ref.tag] == 2  # cached this time


def test_the_index_is_kept_per_run_until_a_tag_grows():
    data = CountingProvider("exp1/xai", tabular_summaries(2))
    reader = run_data.ProviderReader(data, cache_bytes=2**20)
    decoded = []
    reader._decode = lambda content, decode=reader._decode: decoded.append(1) or decode(content)
    first = reader.runs(None, "")["exp1/xai"].index
    assert reader.runs(None, "")["exp1/xai"].index is first and len(decoded) == len(data.listing)
    tag = metadata.attribution_tag("ig", "x")
    data.listing[tag] = provider.TensorTimeSeries(max_step=2, max_wall_time=1.0, description="", display_name="",
                                                  plugin_content=data.listing[tag].plugin_content)
    grown = reader.runs(None, "")["exp1/xai"].index
    assert grown is not first and grown.attributions["ig"]["x"].version == (2, 1.0)
