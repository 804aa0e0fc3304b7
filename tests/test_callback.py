"""AttributionCallback end to end: real training, real event files, read back with tb_xai.load."""

from __future__ import annotations

import glob
import logging
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import models
import tb_xai
from conftest import EPOCHS
from tensorboard.backend.event_processing import event_accumulator


def _fit(model, x, y, callbacks, epochs=3, loss="sparse_categorical_crossentropy"):
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)


def test_twenty_epochs_of_every_tabular_method_read_back(tabular_run):
    run = tb_xai.load(tabular_run.log_dir)
    assert run.methods == sorted(tabular_run.methods)
    assert run.failures() == []
    for method in run.methods:
        attributions = run.attributions(method)
        assert attributions.shape == (EPOCHS, 24, 30)
        assert run.steps(method) == list(range(EPOCHS))
        assert np.all(np.isfinite(attributions))
    assert run.predictions().shape == (EPOCHS, 24, 2)
    assert run.targets().shape == (EPOCHS, 24)
    np.testing.assert_array_equal(run.targets(), run.predictions().argmax(axis=2))
    np.testing.assert_array_equal(run.probe(), tabular_run.probe)
    np.testing.assert_array_equal(run.labels(), tabular_run.labels)
    assert run.feature_names() == tabular_run.feature_names
    assert run.class_names() == tabular_run.class_names
    assert run.modality() == "tabular"
    # The last logged predictions are the trained model's outputs on the probe.
    np.testing.assert_allclose(run.predictions()[-1], tabular_run.model.predict(tabular_run.probe, verbose=0),
                               rtol=1e-5, atol=1e-6)
    # Training changed what the model relies on: the first and last epochs differ.
    ig = run.attributions("integrated_gradients")
    assert not np.allclose(ig[0], ig[-1])
    assert run.config("integrated_gradients")["steps"] == 8


def test_twenty_epochs_of_every_image_method_read_back(image_run):
    run = tb_xai.load(image_run.log_dir)
    assert run.methods == sorted(image_run.methods)
    assert run.failures() == []
    for method in run.methods:
        attributions = run.attributions(method)
        assert attributions.shape[:2] == (EPOCHS, 12)
        assert attributions.shape[2:] in ((8, 8, 1), (8, 8))
    assert run.attributions("grad_cam").shape == (EPOCHS, 12, 8, 8)
    assert run.config("grad_cam") == {"layer": "last_conv"}
    assert run.modality() == "image"
    assert run.predictions().shape == (EPOCHS, 12, 10)


def test_writing_next_to_keras_tensorboard_loses_nothing(tabular_run):
    """Keras writes train/ and validation/; we write xai/. Each loader sees every step of both."""
    runs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(tabular_run.log_dir, "*")))
    assert runs == ["train", "xai"]
    keras_run = event_accumulator.EventAccumulator(
        os.path.join(tabular_run.log_dir, "train"), size_guidance={event_accumulator.TENSORS: 0})
    keras_run.Reload()
    assert [e.step for e in keras_run.Tensors("epoch_loss")] == list(range(EPOCHS))
    ours = event_accumulator.EventAccumulator(
        os.path.join(tabular_run.log_dir, "xai"), size_guidance={event_accumulator.TENSORS: 0})
    ours.Reload()
    tag = "tb_xai/attributions/integrated_gradients/input"
    assert [e.step for e in ours.Tensors(tag)] == list(range(EPOCHS))
    assert not any(t.startswith("tb_xai/") for t in keras_run.Tags()["tensors"])


def test_every_n_epochs_follows_keras_and_always_logs_the_last_epoch(tmp_path, tabular_data):
    x, y, _, _ = tabular_data
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"], every_n_epochs=3)
    _fit(models.mlp(n_features=30, n_classes=2), x, y, [cb], epochs=8)
    assert tb_xai.load(str(tmp_path)).steps("saliency") == [0, 3, 6, 7]


def test_a_callback_reused_over_fits_and_models_keeps_logging(tmp_path, tabular_data, caplog):
    x, y, _, _ = tabular_data
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"])
    model = models.mlp(n_features=30, n_classes=2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    model.fit(x, y, initial_epoch=2, epochs=4, verbose=0, callbacks=[cb])
    run = tb_xai.load(str(tmp_path))
    assert run.steps("saliency") == [0, 1, 2, 3]
    np.testing.assert_allclose(run.predictions()[-1], model.predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)
    # A fit that starts over at epoch 0 replaces those steps, and says so.
    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    assert "epoch 0 was already logged by an earlier fit(); its attributions are replaced" in caplog.text
    # So does a new callback writing where an earlier run wrote.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"])])
    assert "already holds summaries from an earlier run; steps logged again replace them" in caplog.text
    # Handed a different model (another input width), the callback validates against it afresh.
    other = models.mlp(n_features=12, n_classes=2)
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"probe input 'input' has shape \(4, 30\) but the model expects \(None, 12\)"):
        other.fit(x[:, :12], y, epochs=1, verbose=0, callbacks=[cb])


def test_never_called_sequential_subclassed_and_sigmoid_models(tmp_path, digits_data):
    x, y = digits_data
    binary = (y[:200] % 2).astype(np.float32)
    sequential = keras.Sequential([keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                                   keras.layers.Dense(1, activation="sigmoid")])
    cb = tb_xai.AttributionCallback(str(tmp_path / "seq"), x[:5], methods=["grad_cam", "saliency"])
    _fit(sequential, x[:200], binary, [cb], epochs=2, loss="binary_crossentropy")
    run = tb_xai.load(str(tmp_path / "seq"))
    assert run.attributions("grad_cam").shape == (2, 5, 8, 8)
    assert run.predictions().shape == (2, 5, 1)
    assert np.all(run.targets() == 0)

    subclassed = models.SubclassedCNN(n_classes=10)
    cb = tb_xai.AttributionCallback(str(tmp_path / "sub"), x[:5], labels=y[:5], target="label",
                                    methods=["grad_cam", "integrated_gradients"])
    _fit(subclassed, x[:200], y[:200], [cb], epochs=2)
    run = tb_xai.load(str(tmp_path / "sub"))
    assert run.attributions("grad_cam").shape == (2, 5, 8, 8)
    np.testing.assert_array_equal(run.targets()[0], y[:5])


def test_multi_input_multi_output_model_with_a_target_tuple(tmp_path):
    model = models.two_inputs_two_outputs()
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(64, 5)).astype(np.float32), "b": rng.normal(size=(64, 3)).astype(np.float32)}
    y = {"cls": rng.integers(0, 3, 64), "reg": rng.normal(size=(64, 1)).astype(np.float32)}
    model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    probe = {k: v[:4] for k, v in x.items()}
    cb = tb_xai.AttributionCallback(str(tmp_path), probe, methods=["integrated_gradients"], target=("cls", 2))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    run = tb_xai.load(str(tmp_path))
    assert sorted(run.inputs) == ["a", "b"]
    assert run.attributions("integrated_gradients", input="a").shape == (2, 4, 5)
    assert run.attributions("integrated_gradients", input="b").shape == (2, 4, 3)
    assert np.all(run.targets() == 2)
    with pytest.raises(ValueError, match=r"choose one with input="):
        run.attributions("integrated_gradients")


def test_large_probe_sets_are_batched(tmp_path, tabular_data):
    x, y, _, _ = tabular_data
    probe = np.repeat(x[:8], 250, axis=0)  # 2000 probes
    small = tb_xai.AttributionCallback(str(tmp_path / "small"), probe, methods=["integrated_gradients"],
                                       batch_size=256)
    large = tb_xai.AttributionCallback(str(tmp_path / "large"), probe, methods=["integrated_gradients"],
                                       batch_size=100_000)
    model = models.mlp(n_features=30, n_classes=2)
    _fit(model, x, y, [small, large], epochs=1)
    a = tb_xai.load(str(tmp_path / "small")).attributions("integrated_gradients")
    b = tb_xai.load(str(tmp_path / "large")).attributions("integrated_gradients")
    assert a.shape == (1, 2000, 30)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ bad input
def _error(tmp_path, model, x, y, **kwargs):
    kwargs.setdefault("methods", ["saliency"])
    probe = kwargs.pop("probe")
    with pytest.raises((ValueError, TypeError)) as info:
        cb = tb_xai.AttributionCallback(str(tmp_path), probe, **kwargs)
        _fit(model, x, y, [cb], epochs=1)
    return str(info.value)


@pytest.mark.parametrize("case,kwargs,expected", [
    ("unknown method", {"methods": ["shapley"]}, r"unknown method 'shapley'; known methods: \[.*'saliency'"),
    ("labels length", {"labels": np.zeros(3)}, r"labels has shape \(3,\) but the probe has 4 rows"),
    ("target range", {"target": 7}, r"target class 7 is out of range: the explained output has 2 unit"),
    ("target form", {"target": "largest"}, r"target must be 'predicted', 'label'.*received: 'largest'"),
    ("label without labels", {"target": "label"}, r"target='label' needs labels"),
    ("feature names", {"feature_names": ["a", "b"]}, r"feature_names has 2 names but the probe has 30 features"),
    ("every_n_epochs", {"every_n_epochs": 0}, r"every_n_epochs must be an integer >= 1; received: 0"),
    ("duplicate", {"methods": ["saliency", "saliency"]}, r"methods \['saliency'\] are given more than once"),
    ("grad_cam on tabular", {"methods": ["grad_cam"]}, r"grad_cam explains image, sequence or text inputs"),
])
def test_configuration_mistakes_fail_before_training_with_a_clear_message(tmp_path, tabular_data, case, kwargs,
                                                                             expected):
    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)
    import re

    assert re.search(expected, _error(tmp_path, model, x, y, probe=x[:4], **kwargs)), case
    assert not glob.glob(os.path.join(str(tmp_path), "xai", "*tfevents*"))


def test_probe_shape_and_dtype_mismatches_name_the_values(tmp_path, tabular_data, digits_data):
    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)
    message = _error(tmp_path, model, x, y, probe=np.zeros((8, 21), np.float32))
    assert "probe input 'input' has shape (8, 21) but the model expects (None, 30)" in message
    # Integers into an integer Input that feeds no Embedding (categories) have no gradient; token ids that feed
    # one are text (tests/test_text_*.py).
    ints = keras.Input((6,), dtype="int32")
    categorical = keras.Model(ints, keras.layers.Dense(2, activation="softmax")(keras.ops.cast(ints, "float32")))
    message = _error(tmp_path, categorical, np.arange(60).reshape(10, 6) % 12, y[:10],
                     probe=np.zeros((8, 6), np.int64))
    assert "probe input 'input' has dtype int32" in message
    images, labels = digits_data
    dense_only = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    message = _error(tmp_path, dense_only, images[:64], labels[:64], probe=images[:2], methods=["grad_cam"])
    assert "grad_cam needs a convolution layer, and the model has none" in message
    # A never-called Sequential learns its input shape from the first batch; the probe is checked right then.
    unbuilt = keras.Sequential([keras.layers.Dense(2, activation="softmax")])
    message = _error(tmp_path, unbuilt, x, y, probe=np.zeros((8, 21), np.float32))
    assert "probe input 'input' has shape (8, 21) but the model expects (None, 30)" in message


# ------------------------------------------------------------------------------------- run-time failure
class _Exploding(tb_xai.methods.Saliency):
    name = "exploding"

    def _attribute(self, inputs, target):
        raise MemoryError("out of memory while explaining")


def test_a_failing_method_is_recorded_and_training_goes_on(tmp_path, tabular_data, caplog):
    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=[_Exploding(), "saliency"])
    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        _fit(model, x, y, [cb], epochs=3)
    assert len(model.history.history["loss"]) == 3
    run = tb_xai.load(str(tmp_path))
    assert run.steps("saliency") == [0, 1, 2]
    assert run.failures("exploding") == [(s, "exploding", "MemoryError: out of memory while explaining")
                                         for s in range(3)]
    assert "exploding failed at step 0" in caplog.text


def test_a_failure_outside_the_methods_is_recorded_and_training_goes_on(tmp_path, tabular_data, caplog):
    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency", "integrated_gradients"])

    class BreakPredictions(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                def out_of_memory(*args, **kwargs):
                    raise MemoryError("out of memory predicting the probe")
                # The probe's predictions, alone or with saliency's gradients in the same call.
                cb._adapter.predict = cb._adapter.predict_with_gradients = out_of_memory

    with caplog.at_level(logging.WARNING, logger="tb_xai.callback"):
        _fit(model, x, y, [BreakPredictions(), cb], epochs=3)
    assert len(model.history.history["loss"]) == 3
    run = tb_xai.load(str(tmp_path))
    assert run.steps() == [0] and run.steps("saliency") == [0]
    failures = run.failures()
    assert [(step, method) for step, method, _ in failures] == [
        (1, "integrated_gradients"), (1, "saliency"), (2, "integrated_gradients"), (2, "saliency")]
    assert all("could not be logged: MemoryError: out of memory predicting the probe" in m for _, _, m in failures)
    assert "saliency failed at step 1" in caplog.text


@pytest.mark.parametrize("target", ["predicted", "label"])
def test_saliency_costs_no_model_call_beside_the_predictions(tmp_path, tabular_data, monkeypatch, target):
    """On TensorFlow a logged step of saliency makes one compiled model call: the probe's predictions and the
    gradients at the step's targets come out of it together, the very values of the two separate calls."""
    import tb_xai.backend.tensorflow as tf_backend

    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:8], labels=y[:8], methods=["saliency"], quality=False,
                                    target=target)
    calls, per_step = [], []
    original = tf_backend._call
    monkeypatch.setattr(tf_backend, "_call", lambda fn, *args: calls.append(fn) or original(fn, *args))
    log = cb._log

    def counted(step):
        before = len(calls)
        log(step)
        per_step.append(len(calls) - before)

    cb._log = counted
    _fit(model, x, y, [cb], epochs=3)
    assert per_step == [1, 1, 1]
    adapter, run = cb._adapter, tb_xai.load(str(tmp_path))
    assert adapter._remembered is None  # forgotten after each step: the weights change before the next
    probe, targets = adapter.probe.inputs, run.targets()[-1]
    np.testing.assert_array_equal(run.predictions()[-1], adapter.predict(probe))
    np.testing.assert_array_equal(run.attributions("saliency")[-1], np.abs(adapter.gradients(probe, targets)[1][0]))
    predictions, chosen, selected, grads = adapter.predict_with_gradients(probe, np.full(8, -1, np.int32))
    np.testing.assert_array_equal(predictions, adapter.predict(probe))
    np.testing.assert_array_equal(chosen, predictions.argmax(axis=1))
    expected_selected, expected_grads = adapter.gradients(probe, chosen)
    np.testing.assert_array_equal(selected, expected_selected)
    np.testing.assert_array_equal(grads[0], expected_grads[0])


@pytest.mark.parametrize("target", ["predicted", "label"])
@pytest.mark.parametrize("methods", [("saliency", "integrated_gradients"), ("integrated_gradients",)],
                         ids=["defaults", "integrated_gradients_alone"])
def test_integrated_gradients_first_pass_comes_with_the_predictions(tmp_path, tabular_data, monkeypatch, target,
                                                                     methods):
    """On TensorFlow, the call that computes the probe's predictions (and saliency's gradients, at the defaults)
    also computes integrated gradients' first pass: a logged step makes one compiled call beside the
    refinement's, and the attributions are those of integrated gradients computing its first pass itself."""
    import tb_xai.backend.tensorflow as tf_backend

    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:8], labels=y[:8], quality=False, target=target,
                                    methods=list(methods))
    calls, per_step, refined = [], [], []
    original = tf_backend._call
    monkeypatch.setattr(tf_backend, "_call", lambda fn, *args: calls.append(fn) or original(fn, *args))
    log = cb._log

    def counted(step):
        ig = cb.methods[-1]
        refine = ig._refine
        inside = []

        def counted_refine(*args):
            before = len(calls)
            try:
                return refine(*args)
            finally:
                inside.append(len(calls) - before)

        ig._refine = counted_refine
        before = len(calls)
        try:
            log(step)
        finally:
            del ig._refine
        per_step.append(len(calls) - before)
        refined.append(sum(inside))

    cb._log = counted
    _fit(model, x, y, [cb], epochs=3)
    assert [c - r for c, r in zip(per_step, refined)] == [1, 1, 1]  # the old code: 2 (the first pass's own)
    ig, run = cb.methods[-1], tb_xai.load(str(tmp_path))
    assert ig._primed is None  # forgotten after each step
    probe, targets = cb._adapter.probe.inputs, run.targets()[-1]
    np.testing.assert_allclose(run.attributions("integrated_gradients")[-1], ig.attribute(probe, targets)[0],
                               rtol=1e-5, atol=1e-7)
    assert ig.diagnostics()["probes_over_tolerance"] == 0


def test_nan_weights_are_recorded_as_failures_never_written(tmp_path, tabular_data):
    x, y, _, _ = tabular_data
    model = models.mlp(n_features=30, n_classes=2)

    class PoisonWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.layers[0].kernel
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    cb = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["integrated_gradients"])
    _fit(model, x, y, [PoisonWeights(), cb], epochs=3)
    run = tb_xai.load(str(tmp_path))
    assert run.steps("integrated_gradients") == [0]
    failures = run.failures("integrated_gradients")
    assert [f[0] for f in failures] == [1, 2]
    assert "NaN or inf" in failures[0][2]


def test_mirrored_strategy_over_two_cpu_devices_writes_once(tmp_path):
    """Attributions under tf.distribute match the same model evaluated outside it, written by the chief once."""
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tb_xai
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 6)).astype("float32"); y = (x[:, 0] > 0).astype("int64")
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                                      keras.layers.Dense(2, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy")
        cb = tb_xai.AttributionCallback({str(tmp_path)!r}, x[:5], methods=["integrated_gradients", "saliency"])
        model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb])
        run = tb_xai.load({str(tmp_path)!r})
        assert run.steps("saliency") == [0, 1], run.steps("saliency")
        # Recompute outside the strategy with the trained weights: same attributions.
        plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(2, activation="softmax")])
        plain.set_weights(model.get_weights())
        from tb_xai.backend import adapt
        from tb_xai.probe import as_probe_set
        from tb_xai.methods import IntegratedGradients
        probe = as_probe_set(x[:5]); adapter = adapt(plain, probe); ig = IntegratedGradients(); ig.setup(adapter, probe)
        (expected,) = ig.attribute([x[:5]], run.targets()[-1])
        np.testing.assert_allclose(run.attributions("integrated_gradients")[-1], expected, rtol=1e-4, atol=1e-6)
        print("OK", len(os.listdir(os.path.join({str(tmp_path)!r}, "xai"))))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(__file__))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "OK 1"  # one event file: written once


@pytest.mark.parametrize("task_type,task_id,jobs,expected", [
    ("chief", 0, {"chief": ["h:1"], "worker": ["h:2", "h:3"]}, True),
    ("worker", 0, {"chief": ["h:1"], "worker": ["h:2", "h:3"]}, False),
    ("worker", 0, {"worker": ["h:2", "h:3"]}, True),
    ("worker", 1, {"worker": ["h:2", "h:3"]}, False),
    ("evaluator", 0, {"worker": ["h:2"], "evaluator": ["h:4"]}, False),
])
def test_only_the_chief_task_writes(task_type, task_id, jobs, expected):
    import tensorflow as tf
    from tb_xai.backend.tensorflow import is_chief_task

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(jobs), task_type=task_type, task_id=task_id)
    assert is_chief_task(resolver) is expected
    assert is_chief_task(None) is True


def test_a_non_chief_worker_computes_in_step_and_writes_nothing(tmp_path, tabular_data, monkeypatch):
    # Every worker makes the chief's model calls (reads of synchronized variables are collective ops);
    # tests/test_distributed.py runs this with real workers.
    from tb_xai.backend import tensorflow as tf_backend

    x, y, _, _ = tabular_data
    monkeypatch.setattr(tf_backend.TensorFlowModel, "is_chief", lambda self: False)
    cb = tb_xai.AttributionCallback(str(tmp_path), x[:4], methods=["saliency"])
    _fit(models.mlp(n_features=30, n_classes=2), x, y, [cb], epochs=2)
    assert not os.path.exists(os.path.join(str(tmp_path), "xai"))
    assert set(cb.timings) == {"saliency"}


def test_a_graph_the_single_threaded_executor_refuses_runs_on_the_default_one(tabular_data):
    """The TensorFlow adapter runs its calls on the single-threaded executor; a model with control flow (lowered to
    Switch/Merge, which that executor refuses before running a kernel) runs on the default one, same values."""
    import tensorflow as tf

    import tb_xai.backend.tensorflow as tf_backend
    from tb_xai.backend import adapt
    from tb_xai.probe import as_probe_set

    class Branch(keras.layers.Layer):
        def call(self, x):
            return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: x - 1.0)

    x = tabular_data[0][:5]
    plain = models.mlp(n_features=30, n_classes=2)
    keras.utils.set_random_seed(0)
    branchy = keras.Sequential([keras.Input((30,)), Branch(), keras.layers.Dense(2, activation="softmax")])
    for model, refused in ((plain, False), (branchy, True)):
        adapter = adapt(model, as_probe_set(x, None, None, None))
        selected, (grads,) = adapter.gradients([x], np.ones(5, np.int32))
        xs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xs)
            expected = model(xs)[:, 1]
        np.testing.assert_allclose(selected, expected.numpy(), rtol=1e-6)
        np.testing.assert_allclose(grads, tape.gradient(expected, xs).numpy(), rtol=1e-5, atol=1e-7)
        name = adapter._calls["gradients"]._inference_function.name
        assert (name in tf_backend._DEFAULT_EXECUTOR) is refused
        assert (name in tf_backend._SINGLE_THREADED_RAN) is not refused
