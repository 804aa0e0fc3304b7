"""Perturbation methods on float sequences (probes, T, C): occlusion over time windows, KernelSHAP and LIME over
contiguous windows as features, on Conv1D and LSTM models, with the guarantees images and tabular inputs have."""

import tracemalloc

import keras
import numpy as np
import pytest

import tb_xai
from tb_xai.backend import adapt
from tb_xai.methods import KernelShap, Lime, Occlusion, Segmentation, surrogate
from tb_xai.methods.segmentation import segment_means
from tb_xai.probe import as_probe_set

STEPS, CHANNELS = 32, 3


def conv1d(steps=STEPS, channels=CHANNELS, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((steps, channels))
    h = keras.layers.Conv1D(8, 5, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def lstm(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((STEPS, CHANNELS)), keras.layers.LSTM(8), keras.layers.Dense(3)])


def reads_steps(first, last, seed=0):
    """A linear model on (32, 3) sequences whose class 1 reads only steps first..last-1."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((STEPS, CHANNELS)), keras.layers.Flatten(), keras.layers.Dense(2)])
    weights = np.zeros((STEPS, CHANNELS, 2), dtype=np.float32)
    weights[first:last, :, 1] = 1.0
    model.layers[-1].set_weights([weights.reshape(-1, 2), np.zeros(2, dtype=np.float32)])
    return model


def sequences(n=4, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, steps)
    waves = np.stack([np.sin(t + phase) for phase in (0.0, 1.0, 2.0)], axis=-1)
    return (waves[None] + 0.3 * rng.standard_normal((n, steps, CHANNELS))).astype(np.float32)


def methods(window=None):
    windows = Segmentation(window=window)
    return [Occlusion(window=4), KernelShap(samples=128, segmentation=windows), Lime(samples=300, segmentation=windows)]


_ADAPTERS = {}


def explain(method, model, x, target, batch_size=1024):
    """The method's map; one adapter (compiled functions) per model and batch size, as the callback keeps one
    for all its steps."""
    probe = as_probe_set(x)
    key = (id(model), batch_size)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = (model, adapt(model, probe, batch_size=batch_size))
    method.setup(_ADAPTERS[key][1], probe)
    (values,) = method.attribute([x], target)
    return values


@pytest.fixture(scope="module", params=["conv1d", "lstm"])
def model(request):
    return conv1d() if request.param == "conv1d" else lstm()


@pytest.mark.parametrize("index", range(3), ids=["occlusion", "kernel_shap", "lime"])
def test_a_map_over_time_steps_seeded_and_batching_invisible(model, index, monkeypatch):
    method = methods()[index]
    x = sequences()
    target = np.array([0, 1, 2, 1])
    first = explain(method, model, x, target)
    assert first.shape == (4, STEPS) and first.dtype == np.float32
    assert np.all(np.isfinite(first)) and np.abs(first).sum() > 0
    np.testing.assert_array_equal(first, explain(method, model, x, target))
    with monkeypatch.context() as patch:  # three-row model calls, one probe per block
        patch.setattr(surrogate, "_ELEMENTS_PER_CALL", 1)
        patch.setattr(surrogate, "_ELEMENTS_PER_BLOCK", 1)
        small = explain(methods()[index], model, x, target, batch_size=3)
    np.testing.assert_allclose(small, first, rtol=1e-4, atol=1e-5)
    alone = explain(method, model, x[1:2], target[1:2])
    np.testing.assert_allclose(alone[0], first[1], rtol=1e-4, atol=1e-5)
    if index:  # sampled: another seed, other draws
        other = type(method)(samples=method.samples, segmentation=method.segmentation, seed=1)
        assert not np.allclose(explain(other, model, x, target), first)


def test_surrogate_windows_are_contiguous_and_logged():
    method = KernelShap(samples=64)
    x = sequences(2, steps=37)
    probe = as_probe_set(x)
    method.setup(adapt(conv1d(steps=37), probe), probe)
    assert method.config()["segmentation"] == "window" and method.config()["segmentation_window"] == 3
    (values,) = method.attribute([x], np.array([0, 1]))
    # 13 windows of 3 steps (the last has 1): each window's steps share one value.
    for start in range(0, 37, 3):
        np.testing.assert_array_equal(values[:, start:start + 3], values[:, start:start + 1].repeat(
            len(range(start, min(start + 3, 37))), axis=1))


@pytest.mark.parametrize("index", range(3), ids=["occlusion", "kernel_shap", "lime"])
def test_the_steps_a_model_reads_get_the_attribution(index):
    """Class 1 of a linear model reads steps 8..15 only: the windows over them hold the attribution."""
    windows = Segmentation(window=4)  # windows aligned with the steps read; hidden steps take 0
    method = [Occlusion(window=4, stride=4), KernelShap(samples=254, segmentation=windows, background=0.0),
              Lime(samples=1000, segmentation=windows, background=0.0)][index]
    x = np.abs(sequences()) + 0.5  # positive inputs: hiding a read step lowers the output
    values = explain(method, reads_steps(8, 16), x, np.ones(4, dtype=np.int64))
    inside = np.abs(values[:, 8:16]).sum(axis=1)
    outside = np.abs(values).sum(axis=1) - inside
    if index < 2:  # occlusion and KernelSHAP are exact on a linear model: nothing outside
        np.testing.assert_allclose(outside, 0.0, atol=1e-4)
    assert np.all(outside < 0.05 * inside), (inside, outside)
    assert np.all(values[:, 8:16] > 0)


def test_kernel_shap_on_an_lstm_is_efficient_over_the_windows():
    model = lstm()
    x = sequences()
    target = np.array([0, 1, 2, 1])
    method = KernelShap(samples=2 ** 8, segmentation=Segmentation(window=4))  # 8 windows: every coalition
    values = explain(method, model, x, target)
    assert method.config()["background"] == "mean"  # the default for sequences: each channel's mean
    filled = np.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)
    adapter = adapt(model, as_probe_set(x))
    rows = np.arange(4)
    f_x, f_removed = adapter.predict([x])[rows, target], adapter.predict([filled])[rows, target]
    np.testing.assert_allclose(values.sum(axis=1) / 4, f_x - f_removed, atol=1e-5)


def test_sequence_backgrounds_and_reference_engines():
    model = conv1d()
    x = sequences(2)
    target = np.array([0, 1])
    windows = Segmentation(window=8)
    background = sequences(6, seed=3)
    batched = explain(KernelShap(samples=14, background=background, segmentation=windows), model, x, target)
    reference = explain(KernelShap(samples=14, background=background, segmentation=windows, engine="reference"),
                        model, x, target)
    np.testing.assert_allclose(batched, reference, atol=1e-4)  # 4 windows: all 14 coalitions, exact for both
    for fill in (0.0, "segment_mean"):
        filled = explain(Lime(samples=200, background=fill, segmentation=windows), model, x, target)
        assert filled.shape == (2, STEPS) and np.abs(filled).sum() > 0
    segments = windows.windows(STEPS)
    shap_window_means = explain(KernelShap(samples=14, background="segment_mean", segmentation=windows), model, x,
                                target)
    removed = np.stack([segment_means(row, segments) for row in x])
    adapter = adapt(model, as_probe_set(x))
    np.testing.assert_allclose(shap_window_means.sum(axis=1) / 8,
                               adapter.predict([x])[[0, 1], target] - adapter.predict([removed])[[0, 1], target],
                               atol=1e-5)
    with pytest.raises(ValueError, match="lime has no explainer for sequences"):
        explain(Lime(samples=50, engine="reference"), model, x, target)
    with pytest.raises(ValueError, match=r"window 40 is longer than the 32 steps of sequence input 'input'"):
        explain(Occlusion(window=40), model, x, target)
    with pytest.raises(ValueError, match=r"window must be None or an integer >= 1; received: 0"):
        Segmentation(window=0)


def test_kernel_shap_on_a_long_sequence_holds_bounded_host_memory():
    steps = 1024
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((steps, 8)), keras.layers.Conv1D(4, 4, strides=4, activation="relu"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).standard_normal((8, steps, 8)).astype(np.float32)
    method = KernelShap(samples=2046, background=0.0)  # 16 windows of 64 steps
    explain(method, model, x[:1], np.array([0]), batch_size=64)  # compiles outside the measurement
    one_call = 4 * surrogate._ELEMENTS_PER_CALL  # 8 MB of float32 input per model call
    peaks = []
    for n in (2, 8):
        tracemalloc.start()
        try:
            values = explain(method, model, x[:n], np.zeros(n, dtype=np.int64), batch_size=64)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert values.shape == (n, steps) and np.all(np.isfinite(values))
        peaks.append(peak)
    all_at_once = 8 * (2046 + 2) * x[0].nbytes  # every perturbed row of the 8 probes: 537 MB
    # Two calls' inputs and one probe's regressions (which run beside the next probe's calls, so the peak moves
    # with the threads' timing: 52-69 MB seen), whatever the probes: four times the probes do not double it.
    assert peaks[1] < 2 * peaks[0] and peaks[1] < 10 * one_call < all_at_once / 6, (peaks, one_call, all_at_once)


def test_callback_logs_sequence_maps(tmp_path):
    model = conv1d()
    x = sequences(6)
    y = np.array([0, 1, 2, 0, 1, 2])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:3], labels=y[:3], methods=methods(), target="label")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    run = tb_xai.load(str(tmp_path))
    assert not run.failures() and run.modality() == "sequence"
    for method in methods():
        assert run.attributions(method.name).shape == (2, 3, STEPS)
    assert run.config("kernel_shap")["segmentation_window"] == 2
