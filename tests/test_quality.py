"""tb_xai.quality: faithfulness by hand on a real linear model, seeds, sanity, and the callback's scalars and logs."""

from __future__ import annotations

import csv
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tb_xai import quality as Q


def linear_adapter(weights):
    """A real Keras model y = w . x (one linear unit) behind the callback's own adapter."""
    import keras
    from tb_xai.backend import adapt
    from tb_xai.probe import as_probe_set

    weights = np.asarray(weights, dtype=np.float32)
    model = keras.Sequential([keras.Input((len(weights),)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(weights[:, None])
    probe = as_probe_set(np.ones((2, len(weights)), np.float32), None, None, None)
    return adapt(model, probe), probe


def test_deletion_and_insertion_auc_by_hand():
    adapter, _ = linear_adapter([3.0, 2.0, 1.0, 0.0])
    x = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]], np.float32)
    attribution = x * np.array([3.0, 2.0, 1.0, 0.0])  # gradient x input: the exact contributions
    out = Q.faithfulness(adapter, [x], [attribution], np.zeros(2, int), ["tabular"], [np.zeros(4, np.float32)],
                         points=4)
    # Probe 0 in attribution order: deleting 0..4 features leaves 6, 3, 1, 0, 0; inserting gives 0, 3, 5, 6, 6.
    # The area by the trapezoid rule over fractions 0, 1/4, ..., 1.
    assert out["deletion_auc"][0] == pytest.approx((6 + 3 + 3 + 1 + 1 + 0 + 0 + 0) / 8)
    assert out["insertion_auc"][0] == pytest.approx((0 + 3 + 3 + 5 + 5 + 6 + 6 + 6) / 8)
    # Probe 1: all its output (6) sits on feature 0, removed first.
    assert out["deletion_auc"][1] == pytest.approx(6 / 8)
    assert out["insertion_auc"][1] == pytest.approx((0 + 6 * 7) / 8)
    # A random order is worse on average, and never better than the true order for this additive model.
    assert (out["deletion_auc_random"] >= out["deletion_auc"] - 1e-9).all()
    assert (out["insertion_auc_random"] <= out["insertion_auc"] + 1e-9).all()
    # Another baseline: deleted features become 1, so deleting everything from probe 0 changes nothing.
    ones = Q.faithfulness(adapter, [x[:1]], [attribution[:1]], np.zeros(1, int), ["tabular"],
                          [np.ones(4, np.float32)], points=4)
    assert ones["deletion_auc"][0] == pytest.approx(6.0)


def test_image_maps_delete_whole_pixels_and_superpixel_runs(digits_data=None):
    import keras
    from tb_xai.backend import adapt
    from tb_xai.probe import as_probe_set

    # y = sum of the image: deleting a pixel (both channels) removes its value in every channel.
    model = keras.Sequential([keras.Input((2, 2, 2)), keras.layers.Flatten(),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 2, 2, 2)
    probe = as_probe_set(x, None, None, None)
    adapter = adapt(model, probe)
    per_pixel = x.sum(axis=-1)  # (1, 2, 2): 3, 7, 11, 15
    for attribution in (x, per_pixel):  # a channel attribution, and an (H, W) map as LIME/KernelSHAP log
        out = Q.faithfulness(adapter, [x], [attribution], np.zeros(1, int), ["image"], [np.zeros((2, 2, 2))],
                             points=4)
        # Largest pixel first: 36, 21, 10, 3, 0.
        assert out["deletion_auc"][0] == pytest.approx((36 + 21 + 21 + 10 + 10 + 3 + 3 + 0) / 8)


def test_randomized_weights_shuffle_and_restore_exactly():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    before = [w.copy() for w in model.get_weights()]
    with Q.randomized_weights(model):
        inside = model.get_weights()
        assert any(not np.array_equal(a, b) for a, b in zip(before, inside))
        # Shuffled, not redrawn: every weight keeps its values.
        assert all(np.array_equal(np.sort(a.ravel()), np.sort(b.ravel())) for a, b in zip(before, inside))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(RuntimeError):
        with Q.randomized_weights(model):
            raise RuntimeError("a method failed")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_reseeded_twin_draws_its_own_noise():
    from models import mlp, random_inputs
    from tb_xai.backend import adapt
    from tb_xai.methods import Saliency, SmoothGrad
    from tb_xai.probe import as_probe_set

    probe = as_probe_set(random_inputs((6,), 2), None, None, None)
    adapter = adapt(mlp(), probe)
    method = SmoothGrad(samples=4, noise_level=0.5)
    method.setup(adapter, probe)
    first = method.attribute(probe.inputs, np.zeros(2, int))[0]
    twin = Q.reseeded(method)
    assert twin.seed == method.seed + Q.SEED_OFFSET and twin._noise is not method._noise
    again = twin.attribute(probe.inputs, np.zeros(2, int))[0]
    assert np.array_equal(first, method.attribute(probe.inputs, np.zeros(2, int))[0])  # the original is untouched
    assert not np.allclose(first, again)
    assert Q.is_sampling(method) and not Q.is_sampling(Saliency())


def test_quality_argument_names_bad_values():
    # Faithfulness costs several times a gradient method's own time: only when asked for.
    assert Q.Quality().figures == Q.Quality.from_arg(True).figures == Q.DEFAULT == ("drift", "seeds", "sanity")
    assert Q.Quality.from_arg("all").figures == Q.GROUPS
    assert Q.Quality.from_arg(False).figures == ()
    assert Q.Quality.from_arg(["sanity", "drift"]).figures == ("drift", "sanity")
    with pytest.raises(ValueError, match=r"unknown quality figures \['speed'\]; choose from"):
        Q.Quality(["speed"])
    with pytest.raises(ValueError, match="quality must be True, False, \"all\", a list of"):
        Q.Quality.from_arg(3)
    with pytest.raises(ValueError, match="points must be an integer >= 2; received: 1"):
        Q.Quality(points=1)
    with pytest.raises(ValueError, match="seed_probes must be an integer >= 2; received: 0"):
        Q.Quality(seed_probes=0)
    with pytest.raises(ValueError, match="baseline must be a number or one array per input; received: 'zeros'"):
        Q.Quality(baseline="zeros")
    assert Q.parse_scalar_tag("xai/ig/deletion_auc") == ("ig", "deletion_auc")
    assert Q.parse_scalar_tag("xai/ig/loss") is None and Q.parse_scalar_tag("epoch_loss") is None


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory, tabular_data):
    """A small MLP, 4 epochs, with tb_xai then EarlyStopping, CSVLogger and keras.callbacks.TensorBoard after it."""
    import keras
    import tb_xai
    from tb_xai.methods import SmoothGrad

    x, y, feature_names, _ = tabular_data
    log_dir = str(tmp_path_factory.mktemp("quality_run"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(log_dir, x[:16], labels=y[:16], feature_names=feature_names,
                                          methods=["saliency", SmoothGrad(samples=8)],
                                          quality=Q.Quality(Q.GROUPS, seed_probes=4, points=8), max_overhead=None)
    csv_path = os.path.join(log_dir, "log.csv")
    stopper = keras.callbacks.EarlyStopping(monitor="xai_saliency_deletion_auc", mode="min", patience=10)
    seen = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    history = model.fit(x, y, epochs=4, batch_size=64, verbose=0,
                        callbacks=[callback, stopper, keras.callbacks.CSVLogger(csv_path), recorder,
                                   keras.callbacks.TensorBoard(log_dir)])
    return log_dir, callback, seen, csv_path, history


def test_figures_reach_the_callbacks_after_tb_xai(quality_run, caplog):
    log_dir, callback, seen, csv_path, history = quality_run
    expected = {Q.logs_key("saliency", f) for f in Q.FIGURES["drift"] + Q.FIGURES["faithfulness"]
                + Q.FIGURES["sanity"]}
    expected |= {Q.logs_key("smoothgrad", f) for f in Q.FIGURES["seeds"]}
    assert expected - {Q.logs_key("saliency", "ndcg_previous"), Q.logs_key("saliency", "spearman_previous")} \
        <= set(seen[0])
    assert expected <= set(seen[-1])
    assert not any(k.startswith("xai_saliency_seed") for k in seen[-1])  # saliency draws nothing
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and float(rows[-1]["xai_saliency_deletion_auc"]) == pytest.approx(
        seen[-1]["xai_saliency_deletion_auc"])
    assert history.history["xai_smoothgrad_seed_spearman"] == [s["xai_smoothgrad_seed_spearman"] for s in seen]
    # keras.callbacks.TensorBoard after tb_xai writes them too, as epoch_<key>.
    from tensorboard.backend.event_processing import event_accumulator

    train = event_accumulator.EventAccumulator(os.path.join(log_dir, "train"), size_guidance={"tensors": 0})
    train.Reload()
    assert "epoch_xai_saliency_deletion_auc" in train.Tags()["tensors"]


def test_run_metrics_match_what_the_callback_logged(quality_run):
    import tb_xai

    log_dir, callback, seen, _, _ = quality_run
    metrics = tb_xai.load(log_dir).metrics("saliency")
    assert metrics["steps"].tolist() == [0, 1, 2, 3]
    for figure in ("ndcg_reference", "ndcg_floor", "spearman_floor", "total_attribution", "entropy",
                   "deletion_auc", "insertion_auc_random", "sanity_spearman"):
        assert metrics[figure] == pytest.approx([s[Q.logs_key("saliency", figure)] for s in seen], rel=1e-6), figure
    assert np.isnan(metrics["ndcg_previous"][0]) and np.isnan(metrics["seed_ndcg"]).all()
    smooth = tb_xai.load(log_dir).metrics("smoothgrad")
    assert smooth["seed_spearman"] == pytest.approx([s["xai_smoothgrad_seed_spearman"] for s in seen], rel=1e-6)
    assert 0 < smooth["seed_spearman"][-1] <= 1
    # Faithfulness: the map deletes the prediction faster than a random order.
    assert metrics["deletion_auc"][-1] < metrics["deletion_auc_random"][-1]
    assert list(callback.quality.per_probe) == [3]  # the last logged step only
    assert set(callback.quality.per_probe[3]["saliency"]) >= {"deletion_auc", "insertion_auc", "probes"}
    with pytest.raises(ValueError, match=r"reference_step=7 is not a logged step; logged steps: \[0, 1, 2, 3\]"):
        tb_xai.load(log_dir).metrics("saliency", reference_step=7)


def test_tensorboard_serves_the_figures_as_scalars(quality_run):
    from tensorboard import program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from werkzeug import test as werkzeug_test

    log_dir = quality_run[0]
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", log_dir, "--load_fast", "false", "--reload_interval", "0",
                       "--reload_task", "blocking"])
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(tb.flags, tb.plugin_loaders, ingester.data_provider,
                                         tb.assets_zip_provider, ingester.deprecated_multiplexer)
    client = werkzeug_test.Client(app)
    tags = client.get("/data/plugin/scalars/tags").get_json()
    assert "xai/saliency/deletion_auc" in tags["xai"] and "xai/smoothgrad/seed_ndcg" in tags["xai"]
    points = client.get("/data/plugin/scalars/scalars?run=xai&tag=xai/saliency/ndcg_reference").get_json()
    assert [p[1] for p in points] == [0, 1, 2, 3]


def test_the_plugins_reader_answers_metrics_and_findings_as_the_event_files_do(quality_run):
    """Through TensorBoard's own data provider (the plugin's side of the run model) the quality scalars, the
    figures and the findings are those `tb_xai.load` reads from the files: one query layer for both."""
    from tensorboard import context, program
    from tensorboard.backend.event_processing import data_ingester

    from tb_xai import query, reader
    from tb_xai.plugin import run_data

    log_dir = quality_run[0]
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", log_dir, "--load_fast", "false", "--reload_interval", "0",
                       "--reload_task", "blocking"])
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    runs = run_data.ProviderReader(ingester.data_provider, cache_bytes=2**24).runs(context.RequestContext(), "")
    served, files = runs["xai"], reader.read_run(os.path.join(log_dir, "xai"))
    logged = query.logged_figures(served)
    assert set(logged) == {"saliency", "smoothgrad"} and logged.keys() == query.logged_figures(files).keys()
    steps, values = logged["saliency"]["deletion_auc"]
    assert steps.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(values, query.logged_figures(files)["saliency"]["deletion_auc"][1])
    for method in ("saliency", "smoothgrad"):
        a, b = query.metrics(served, method), query.metrics(files, method)
        assert a.keys() == b.keys()
        for figure in a:
            np.testing.assert_array_equal(a[figure], b[figure], err_msg=f"{method} {figure}")
    found = query.findings(files)
    assert found and query.findings(served) == found  # this run's prediction flips at least
    assert query.findings(served, reference_step=1) == query.findings(files, reference_step=1)


def test_a_baseline_that_does_not_fit_fails_before_training(tmp_path, tabular_data):
    import keras
    import tb_xai

    x, y, _, _ = tabular_data
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"],
                                          quality=Q.Quality(Q.GROUPS, baseline=np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=r"the faithfulness baseline has shapes \[\(3,\)\]; expected one row per "
                                         r"probe input, \[\(30,\)\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_a_failing_figure_warns_once_and_training_goes_on(tmp_path, tabular_data, caplog):
    import keras
    import tb_xai
    from tb_xai.methods.base import AttributionMethod

    class FirstFive(AttributionMethod):
        """A user's method whose maps cover 5 of the 30 features: no order over the input to delete in."""

        name = "first_five"

        def attribution_shape(self, input_shape):
            return (5,)

        def _attribute(self, inputs, target):
            return [np.abs(inputs[0][:, :5])]

    x, y, _, _ = tabular_data
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=[FirstFive()], quality=["faithfulness",
                                                                                                 "drift"])
    with caplog.at_level(logging.WARNING, logger="tb_xai.quality"):
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2 and "xai_first_five_entropy" in history.history
    failures = [r.getMessage() for r in caplog.records if "faithfulness quality figures of first_five" in r.getMessage()]
    assert len(failures) == 1 and "does not rank the elements of inputs (30,)" in failures[0]
    assert tb_xai.load(str(tmp_path)).attributions("first_five").shape == (2, 4, 5)


def test_quality_off_writes_no_figures(tmp_path, tabular_data):
    import keras
    import tb_xai

    x, y, _, _ = tabular_data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    seen = []
    model.fit(x, y, epochs=1, verbose=0, callbacks=[
        tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"], quality=False),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))])
    assert not any(k.startswith("xai_") for k in seen[0])
    assert np.isnan(tb_xai.load(str(tmp_path)).metrics("saliency")["deletion_auc"]).all()


def test_the_default_computes_no_faithfulness(tmp_path, tabular_data):
    import keras
    import tb_xai

    x, y, _, _ = tabular_data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    seen = []
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[
        callback, keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))])
    assert not any("auc" in key for key in seen[-1])
    assert np.isfinite(seen[-1]["xai_saliency_ndcg_reference"])
    assert np.isfinite(seen[-1]["xai_saliency_sanity_spearman"])
    assert "faithfulness" not in callback.quality.timings["saliency"] and not callback.quality.per_probe
    metrics = tb_xai.load(str(tmp_path)).metrics("saliency")
    assert np.isnan(metrics["deletion_auc"]).all() and np.isfinite(metrics["sanity_spearman"]).all()


def test_faithfulness_leaves_an_input_the_method_does_not_explain_as_it_is():
    """y = w_a . a + w_b . b: with no attribution of `a`, every curve point of b's deletion and insertion carries
    w_a . a unchanged, so each AUC is b's own AUC (from a model of b alone) plus that constant."""
    import keras
    from tb_xai.backend import adapt
    from tb_xai.probe import as_probe_set

    w_a, w_b = np.array([1.0, -2.0], np.float32), np.array([3.0, 2.0, 1.0], np.float32)
    a_in, b_in = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    dense_a, dense_b = keras.layers.Dense(1, use_bias=False), keras.layers.Dense(1, use_bias=False)
    model = keras.Model({"a": a_in, "b": b_in}, keras.layers.Add()([dense_a(a_in), dense_b(b_in)]))
    dense_a.kernel.assign(w_a[:, None])
    dense_b.kernel.assign(w_b[:, None])
    x = {"a": np.array([[1.0, 0.5], [2.0, -1.0]], np.float32),
         "b": np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]], np.float32)}
    probe = as_probe_set(x, None, None, None)
    adapter = adapt(model, probe)
    attribution_b = x["b"] * w_b
    zeros = [np.zeros(2, np.float32), np.zeros(3, np.float32)]
    out = Q.faithfulness(adapter, probe.inputs, [None, attribution_b], np.zeros(2, int), ["tabular", "tabular"],
                         zeros, points=3)
    alone, _ = linear_adapter(w_b)
    reference = Q.faithfulness(alone, [x["b"]], [attribution_b], np.zeros(2, int), ["tabular"], zeros[1:], points=3)
    held = x["a"] @ w_a
    for figure in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"):
        np.testing.assert_allclose(out[figure], reference[figure] + held, rtol=1e-5, err_msg=figure)
    with pytest.raises(ValueError, match="every attribution is None"):
        Q.faithfulness(adapter, probe.inputs, [None, None], np.zeros(2, int), ["tabular", "tabular"], zeros)
    # The maps of the figures leave the unexplained input out too.
    assert Q.flat_maps([None, attribution_b], ["tabular", "tabular"]).shape == (2, 3)


def test_grad_cam_on_a_tabular_image_model_explains_the_image_only(tmp_path):
    """Grad-CAM returns None for the tabular input, which does not reach its layer: its figures are the image's."""
    import keras
    import tb_xai

    keras.utils.set_random_seed(0)
    tabular, image = keras.Input((4,), name="tabular"), keras.Input((8, 8, 1), name="image")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                                  name="conv")(image))
    merged = keras.layers.Concatenate()([keras.layers.Dense(4, activation="tanh")(tabular), h])
    model = keras.Model({"tabular": tabular, "image": image}, keras.layers.Dense(3, activation="softmax")(merged))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {"tabular": rng.standard_normal((32, 4)).astype(np.float32),
         "image": rng.random((32, 8, 8, 1)).astype(np.float32)}
    y = np.arange(32) % 3
    seen = []
    callback = tb_xai.AttributionCallback(str(tmp_path), {k: v[:5] for k, v in x.items()},
                                          methods=["grad_cam", "saliency"], quality=Q.Quality(Q.GROUPS, points=4))
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[
        callback, keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))])
    for method in ("grad_cam", "saliency"):
        for figure in ("deletion_auc", "insertion_auc_random", "sanity_spearman", "ndcg_reference", "entropy"):
            assert np.isfinite(seen[-1][f"xai_{method}_{figure}"]), (method, figure)
    run = tb_xai.load(str(tmp_path))
    assert run.inputs == ["tabular", "image"] and list(run._run.index.attributions["grad_cam"]) == ["image"]
    cam = run.metrics("grad_cam")
    assert cam["ndcg_reference"] == pytest.approx([s["xai_grad_cam_ndcg_reference"] for s in seen], rel=1e-6)
    assert cam["deletion_auc"] == pytest.approx([s["xai_grad_cam_deletion_auc"] for s in seen], rel=1e-6)
    from tb_xai import query

    history = query.method_history(run._run, "grad_cam")
    assert history.maps.shape == (3, 5, 64) and all(n.startswith("image: pixel (") for n in history.names)
    assert query.method_history(run._run, "saliency").maps.shape == (3, 5, 4 + 64)


def test_two_input_models_rank_every_inputs_features_together(tmp_path):
    import keras
    import tb_xai
    from models import random_inputs, two_inputs_two_outputs

    model = two_inputs_two_outputs()
    model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    x = {"a": random_inputs((5,), 64, seed=1), "b": random_inputs((3,), 64, seed=2)}
    y = {"cls": np.random.default_rng(0).integers(0, 3, 64), "reg": np.zeros((64, 1), np.float32)}
    seen = []
    model.fit(x, y, epochs=2, verbose=0, callbacks=[
        tb_xai.AttributionCallback(str(tmp_path), {"a": x["a"][:6], "b": x["b"][:6]}, target=("cls", "predicted"),
                                   methods=["saliency", "smoothgrad"], quality=Q.Quality(Q.GROUPS, seed_probes=3, points=4)),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))])
    for figure in ("deletion_auc", "insertion_auc_random", "sanity_spearman", "ndcg_floor"):
        assert np.isfinite(seen[-1][f"xai_saliency_{figure}"]), figure
    assert np.isfinite(seen[-1]["xai_smoothgrad_seed_spearman"])
    run = tb_xai.load(str(tmp_path))
    metrics = run.metrics("saliency")
    assert metrics["ndcg_reference"] == pytest.approx([s["xai_saliency_ndcg_reference"] for s in seen], rel=1e-6)
    names = [f["feature"] for f in run.findings(k=2) if f["feature"]]
    assert all(n.startswith(("a: ", "b: ")) for n in names)


def test_faithfulness_and_sanity_on_a_subclassed_cnn_built_by_its_first_batch(tmp_path):
    import keras
    import tb_xai
    from models import SubclassedCNN

    keras.utils.set_random_seed(0)
    model = SubclassedCNN(n_classes=4)  # never called: built by its first training batch
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)
    y = np.arange(32) % 4
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["grad_cam", "saliency"],
                                          quality=Q.Quality(["faithfulness", "sanity"], points=4))
    seen = []
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[
        callback, keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))])
    for method in ("grad_cam", "saliency"):
        for figure in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"):
            assert np.isfinite(seen[0][f"xai_{method}_{figure}"]), (method, figure)
    assert -1 <= seen[0]["xai_saliency_sanity_spearman"] < 1
    assert set(callback.quality._reference) >= {"saliency"}


def test_a_steps_methods_share_one_bootstrap_of_their_floors(tmp_path, tabular_data, monkeypatch):
    """At the defaults (saliency, integrated gradients) a logged step resamples the floors of both methods in one
    `findings.bootstrap_floors` call (the code before: one per method), and logs each method's floors as computed
    from its own logged maps alone."""
    import keras
    import tb_xai
    from tb_xai import findings, metadata

    x, y, _, _ = tabular_data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    calls = []
    original = findings.bootstrap_floors
    monkeypatch.setattr(findings, "bootstrap_floors", lambda *a, **k: calls.append(1) or original(*a, **k))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tb_xai.AttributionCallback(str(tmp_path), x[:6])])
    assert len(calls) == 2  # two logged steps
    run = tb_xai.load(str(tmp_path))
    for method in ("saliency", "integrated_gradients"):
        maps = findings.as_maps(run.attributions(method), metadata.TABULAR)
        logged = run.metrics(method)
        for step in range(2):
            alone = findings.bootstrap_floor(maps[step], 10)
            assert logged["ndcg_floor"][step] == pytest.approx(alone["ndcg_floor"], rel=1e-6, abs=1e-7)
            assert logged["spearman_floor"][step] == pytest.approx(alone["spearman_floor"], rel=1e-6, abs=1e-7)
