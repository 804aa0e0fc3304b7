"""The findings, quality and probes routes and the stability noise band: the same numbers as `tb_xai.load`,
served by TensorBoard's real WSGI app and by a real server, with answers renewed when quality scalars arrive."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tb_xai import aggregate, findings as F, metadata, quality as Q, summary
from tensorboard_server import ROUTE, Server, wsgi_client

CLASS_NAMES = ["malignant", "benign"]


@pytest.fixture(scope="module")
def callback_run(tmp_path_factory, tabular_data):
    """A small MLP on breast cancer, 5 epochs, saliency and SmoothGrad, every quality figure."""
    import keras
    import tb_xai
    from tb_xai.methods import SmoothGrad

    x, y, feature_names, _ = tabular_data
    log_dir = str(tmp_path_factory.mktemp("findings_routes"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(log_dir, x[:16], labels=y[:16], feature_names=feature_names,
                                          class_names=CLASS_NAMES, methods=["saliency", SmoothGrad(samples=8)],
                                          quality=Q.Quality(Q.GROUPS, seed_probes=4, points=8), max_overhead=None)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[callback])
    return log_dir, tb_xai.load(log_dir)


@pytest.fixture(scope="module")
def client(callback_run):
    return wsgi_client(callback_run[0])


def get(client, path: str, status: int = 200):
    response = client.get(ROUTE + path)
    assert response.status_code == status, (path, response.status_code, response.data[:300])
    return response.get_json() if status == 200 else response.data.decode()


def test_findings_are_run_findings_with_where_to_open_them(callback_run, client):
    _, run = callback_run
    answer = get(client, "findings?run=xai")
    assert answer["kinds"] == list(F.KINDS)
    expected = run.findings()
    assert expected, "this run's predictions flip: the list must not be empty"
    assert [{k: v for k, v in f.items() if k != "open"} for f in answer["findings"]] == expected
    views = {"topk_enter": "evolution", "topk_leave": "evolution", "drift": "stability", "prediction_flip": "probe",
             "explanation_changed": "probe", "prediction_flipped_explanation_stable": "probe",
             "sanity_failed": "quality", "methods_disagree": "agreement"}
    for finding in answer["findings"]:
        opened = finding["open"]
        assert set(opened) == {"view", "method", "input", "step", "probe"}
        assert opened["view"] == views[finding["kind"]] and opened["step"] == finding["step"]
        assert opened["input"] == "input" and opened["method"] in ("saliency", "smoothgrad")
        assert opened["probe"] == finding["probe"]
        if finding["method"] is not None:
            assert opened["method"] == finding["method"] and finding["input"] == "input"
        assert set(finding) >= {"step", "kind", "method", "input", "feature", "feature_index", "probe", "value",
                                "noise", "message"}
    flips = [f for f in answer["findings"] if f["kind"] == "prediction_flip"]
    assert flips and all(f["open"]["method"] == "saliency" for f in flips)  # the run's first method
    # Thresholds and the reference step reach the findings.
    assert [{k: v for k, v in f.items() if k != "open"}
            for f in get(client, "findings?run=xai&k=3&reference_step=1")["findings"]] == run.findings(
        k=3, reference_step=1)
    assert "reference_step=9 is not a logged step" in get(client, "findings?run=xai&reference_step=9", 400)


def test_quality_serves_run_metrics_with_labels_groups_and_thresholds(callback_run, client):
    _, run = callback_run
    for method in ("saliency", "smoothgrad"):
        answer = get(client, f"quality?run=xai&method={method}")
        metrics = run.metrics(method)
        assert answer["steps"] == metrics.pop("steps").tolist() == [0, 1, 2, 3, 4]
        present = {name for name, values in metrics.items() if np.isfinite(values).any()}
        assert set(answer["figures"]) == set(answer["labels"]) == present
        for name, values in answer["figures"].items():
            expected = [None if not np.isfinite(v) else pytest.approx(v, rel=1e-12) for v in metrics[name]]
            assert values == expected, name
        assert answer["labels"]["ndcg_reference"] == "nDCG@10 vs the reference step"
        assert answer["thresholds"] == {"ndcg_reference": F.DEFAULT_DRIFT_THRESHOLD,
                                        "sanity_spearman": F.Thresholds().sanity}
        assert answer["groups"]["faithfulness"] == list(Q.FIGURES["faithfulness"])
        assert answer["k"] == 10 and answer["reference_step"] == 0
    # Saliency draws no random samples: no seed figures, and no empty group for them.
    assert "seeds" not in get(client, "quality?run=xai&method=saliency")["groups"]
    assert get(client, "quality?run=xai&method=smoothgrad")["groups"]["seeds"] == list(Q.FIGURES["seeds"])
    k3 = get(client, "quality?run=xai&method=saliency&k=3&reference_step=2")
    assert k3["figures"]["ndcg_reference"] == pytest.approx(
        run.metrics("saliency", k=3, reference_step=2)["ndcg_reference"].tolist())
    assert k3["labels"]["seed_ndcg" if "seed_ndcg" in k3["labels"] else "ndcg_floor"].startswith("nDCG@3")
    assert "missing query parameter 'method'" in get(client, "quality?run=xai", 400)
    assert "no attributions for method 'lime'" in get(client, "quality?run=xai&method=lime", 404)


def test_the_probe_menu_by_hand(callback_run, client):
    _, run = callback_run
    steps = run.steps("saliency")
    predicted = run.predictions().argmax(axis=-1)  # [steps, probes]
    labels = run.labels()
    maps = np.abs(run.attributions("saliency"))  # [steps, probes, 30]
    for step in (steps[2], steps[-1]):
        i = steps.index(step)
        answer = get(client, f"probes?run=xai&method=saliency&step={step}")
        assert answer["step"] == step and len(answer["probes"]) == 16
        assert answer == dict(run.probe_summary("saliency", step=step), run="xai", method="saliency", input=None)
        for p, row in enumerate(answer["probes"]):
            assert row["probe"] == p
            assert row["label"] == labels[p] and row["label_name"] == CLASS_NAMES[labels[p]]
            assert row["prediction"] == predicted[i, p] and row["prediction_name"] == CLASS_NAMES[predicted[i, p]]
            assert row["correct"] is bool(predicted[i, p] == labels[p])
            assert row["flipped"] is bool(predicted[i, p] != predicted[0, p])
            assert row["flip_steps"] == [steps[j] for j in range(1, len(steps))
                                         if predicted[j, p] != predicted[j - 1, p]]
            assert row["change"] == pytest.approx(1.0 - aggregate.spearman(maps[0, p], maps[i, p]))
    assert any(row["flip_steps"] for row in answer["probes"])  # the menu has flips to show
    last = get(client, f"probes?run=xai&method=saliency&step={steps[-1]}")
    assert get(client, "probes?run=xai&method=saliency") == last
    # Without a method: the predictions' steps, no change.
    plain = get(client, "probes?run=xai&step=1")
    assert plain["step"] == 1 and all(row["change"] is None for row in plain["probes"])
    assert [row["prediction"] for row in plain["probes"]] == predicted[1].tolist()
    assert "step=7 is not a logged step of method 'saliency'; logged steps: [0, 1, 2, 3, 4]" in get(
        client, "probes?run=xai&method=saliency&step=7", 400)
    assert "step must be an integer" in get(client, "probes?run=xai&step=last", 400)


def test_the_stability_noise_band_is_the_metrics_floor(callback_run, client):
    _, run = callback_run
    for method in ("saliency", "smoothgrad"):
        noise = get(client, f"stability?run=xai&method={method}")["noise"]
        metrics = run.metrics(method)
        assert noise["spearman_floor"] == pytest.approx(metrics["spearman_floor"].tolist(), rel=1e-12)
        assert noise["ndcg_floor"] == pytest.approx(metrics["ndcg_floor"].tolist(), rel=1e-12)
        seeds = [None if not np.isfinite(v) else pytest.approx(v) for v in metrics["seed_spearman"]]
        assert noise["seed_spearman"] == seeds
    assert get(client, "stability?run=xai&method=saliency")["noise"]["seed_ndcg"] == [None] * 5
    # Per target: the floor of the probes explained for that class only.
    targets = run.targets()
    maps = np.abs(run.attributions("saliency"))
    by_target = get(client, "stability?run=xai&method=saliency&target=0&k=4")["noise"]
    for i in range(5):
        counted = maps[i][targets[i] == 0]
        expected = F.bootstrap_floor(counted, 4)
        assert by_target["ndcg_floor"][i] == (pytest.approx(expected["ndcg_floor"])
                                              if np.isfinite(expected["ndcg_floor"]) else None)


def _write_ig_run(run_dir: str, steps: int = 4) -> None:
    """Four steps of `ig` over 5 features whose maps never change, with predictions; no quality scalars."""
    writer = summary.SummaryWriter(run_dir)
    maps = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]] * 6, np.float32)
    for step in range(steps):
        writer.write(summary.predictions_pb(np.tile([0.9, 0.1], (6, 1)).astype(np.float32)), step)
        writer.write(summary.attribution_pb("ig", "x", maps, modality=metadata.TABULAR), step)
    writer.close()


def test_new_quality_scalars_renew_the_cached_answers(tmp_path):
    """The callback writes its scalars after the step's attributions: an answer cached in between must not
    outlive them (the cache key holds the version of the run's quality scalars)."""
    from tensorboard import program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from werkzeug import test as werkzeug_test

    run_dir = str(tmp_path / "exp" / "xai")
    _write_ig_run(run_dir)
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", str(tmp_path), "--load_fast", "false", "--reload_interval", "0",
                       "--reload_task", "blocking"])
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(tb.flags, tb.plugin_loaders, ingester.data_provider,
                                         tb.assets_zip_provider, ingester.deprecated_multiplexer)
    client = werkzeug_test.Client(app)
    before = get(client, "quality?run=exp/xai&method=ig")
    assert "sanity_spearman" not in before["figures"]
    assert get(client, "findings?run=exp/xai")["findings"] == []
    stability = get(client, "stability?run=exp/xai&method=ig")
    listed = get(client, "runs")["runs"][0]
    assert listed["run"] == "exp/xai" and listed["quality_version"] == ""
    # The scalars arrive: the maps stay as close to the randomized model's as they are to each other.
    writer = summary.SummaryWriter(run_dir)
    for step in range(4):
        writer.write(Q.scalar_pb(Q.scalar_tag("ig", "sanity_spearman"), 0.95), step)
        writer.write(Q.scalar_pb(Q.scalar_tag("ig", "seed_spearman"), 0.5), step)
    writer.close()
    ingester.deprecated_multiplexer.Reload()
    renewed_listing = get(client, "runs")["runs"][0]
    assert renewed_listing["version"] == listed["version"]  # the tb_xai tags did not change ...
    assert renewed_listing["quality_version"].startswith("xai/ig/sanity_spearman=3@")  # ... the scalars did
    after = get(client, "quality?run=exp/xai&method=ig")
    assert after["figures"]["sanity_spearman"] == [pytest.approx(0.95)] * 4
    assert after["figures"]["ndcg_reference"] == before["figures"]["ndcg_reference"]
    (finding,) = get(client, "findings?run=exp/xai")["findings"]
    assert finding["kind"] == "sanity_failed" and finding["open"]["view"] == "quality"
    renewed = get(client, "stability?run=exp/xai&method=ig")
    assert renewed["noise"]["seed_spearman"] == [pytest.approx(0.5)] * 4
    assert stability["noise"]["seed_spearman"] == [None] * 4
    # Answers that do not read scalars are unchanged.
    assert renewed["spearman_previous"] == stability["spearman_previous"]


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_a_real_server_serves_the_routes_as_tb_xai_load_computes_them(callback_run, client, load_fast):
    log_dir, run = callback_run
    with Server(log_dir, load_fast) as server:
        server.wait_for({"xai": 5})
        for path in ("findings?run=xai", "quality?run=xai&method=smoothgrad", "probes?run=xai&method=smoothgrad",
                     "stability?run=xai&method=smoothgrad&k=5"):
            assert server.json(ROUTE + path) == get(client, path), path
        status, body = server.get(ROUTE + "probes?run=xai&method=smoothgrad&step=99")
        assert status == 400 and b"step=99 is not a logged step" in body
