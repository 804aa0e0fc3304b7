"""KernelSHAP, LIME, expected gradients and occlusion: exactness, agreement with shap and lime, logging.

Agreement is calibrated by the libraries themselves: our estimate must correlate with the library's at least
as well as the library correlates with itself under another seed, minus 0.01.
"""

import itertools
import math
import tracemalloc

import keras
import numpy as np
import pytest

import tb_xai
from tb_xai.backend import adapt
from tb_xai.methods import Background, ExpectedGradients, KernelShap, Lime, Occlusion, Segmentation
from tb_xai.methods import surrogate
from tb_xai.probe import as_probe_set


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def assert_agrees(ours, library_1, library_2):
    mutual = corr(library_1, library_2)
    ours_vs_library = (corr(ours, library_1) + corr(ours, library_2)) / 2
    assert ours_vs_library >= mutual - 0.01, (ours_vs_library, mutual)


@pytest.fixture(scope="module")
def tabular():
    """A tiny trained MLP on 8 features, its probes, targets and a background."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    y = (x[:, 0] + 2 * x[:, 1] * x[:, 2] - x[:, 3] > 0).astype(np.int32)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    probes, background = x[:10], x[200:210]
    probe = as_probe_set(probes)
    adapter = adapt(model, probe)
    target = np.argmax(adapter.predict([probes]), axis=1)
    return model, adapter, probe, probes, target, background


def attribute(method, adapter, probe, x, target):
    method.setup(adapter, probe)
    return method.attribute([x], target)[0]


def exact_shapley(adapter, x, target, background):
    """Interventional Shapley values by enumerating every coalition."""
    d = x.shape[1]
    out = np.zeros(x.shape)
    for i in range(len(x)):
        value = {}
        for r in range(d + 1):
            for members in itertools.combinations(range(d), r):
                rows = background.copy()
                rows[:, list(members)] = x[i, list(members)]
                value[members] = adapter.predict([rows])[:, target[i]].mean()
        for j in range(d):
            for members, v in value.items():
                if j not in members:
                    s = len(members)
                    weight = math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
                    out[i, j] += weight * (value[tuple(sorted(members + (j,)))] - v)
    return out


def test_kernel_shap_is_exact_at_a_full_coalition_budget(tabular):
    _, adapter, probe, x, target, background = tabular
    ours = attribute(KernelShap(samples=2 ** 8, background=background), adapter, probe, x[:4], target[:4])
    exact = exact_shapley(adapter, x[:4], target[:4], background)
    assert np.abs(ours - exact).max() < 1e-5


def test_kernel_shap_is_efficient_on_every_probe(tabular):
    _, adapter, probe, x, target, background = tabular
    ours = attribute(KernelShap(samples=60, background=background), adapter, probe, x, target)
    f_x = adapter.predict([x])[np.arange(len(x)), target]
    f_background = adapter.predict([background])[:, target].mean(axis=0)
    np.testing.assert_allclose(ours.sum(axis=1), f_x - f_background, atol=1e-5)


def test_kernel_shap_agrees_with_shap_kernel_explainer(tabular):
    import shap

    _, adapter, probe, x, target, background = tabular
    ours = attribute(KernelShap(samples=100, background=background), adapter, probe, x, target)

    def library(seed):
        np.random.seed(seed)
        rows = []
        for i in range(len(x)):
            explainer = shap.KernelExplainer(lambda r, t=target[i]: adapter.predict([r])[:, t], background)
            rows.append(explainer.shap_values(x[i:i + 1], nsamples=100, l1_reg=False, silent=True)[0])
        return np.array(rows)

    assert_agrees(ours, library(1), library(2))


@pytest.mark.parametrize("around", [False, True], ids=["shared_samples", "sample_around_instance"])
def test_lime_agrees_with_lime_tabular_explainer(tabular, around):
    from lime.lime_tabular import LimeTabularExplainer

    _, adapter, probe, x, target, background = tabular
    ours = attribute(Lime(samples=1000, background=background, sample_around_instance=around), adapter, probe, x,
                     target)

    def library(seed):
        explainer = LimeTabularExplainer(background.astype(np.float64), discretize_continuous=False,
                                         sample_around_instance=around, random_state=seed)
        rows = []
        for i in range(len(x)):
            explanation = explainer.explain_instance(
                x[i].astype(np.float64), lambda r: adapter.predict([r.astype(np.float32)]), labels=(target[i],),
                num_features=x.shape[1], num_samples=1000,
            )
            row = np.zeros(x.shape[1])
            for feature, value in explanation.local_exp[target[i]]:
                row[feature] = value
            rows.append(row)
        return np.array(rows)

    assert_agrees(ours, library(1), library(2))


def test_expected_gradients_agrees_with_shap_gradient_explainer(tabular):
    import shap

    model, adapter, probe, x, target, background = tabular
    ours = attribute(ExpectedGradients(background=background, samples=200), adapter, probe, x, target)
    explainer = shap.GradientExplainer(model, background)
    picked = [np.asarray(explainer.shap_values(x, nsamples=200, rseed=seed))[np.arange(len(x)), :, target]
              for seed in (1, 2)]
    assert_agrees(ours, *picked)


@pytest.fixture(scope="module")
def grayscale():
    """A tiny CNN on 16x16 grayscale digits-like images (sklearn's 8x8 digits, upscaled)."""
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    digits = load_digits()
    images = np.kron(digits.images[:300] / 16.0, np.ones((2, 2)))[..., None].astype(np.float32)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, digits.target[:300], epochs=3, batch_size=32, verbose=0)
    x = images[-4:]
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    return model, adapter, probe, x, np.argmax(adapter.predict([x]), axis=1)


def test_lime_on_grayscale_images_agrees_with_lime_image_explainer(grayscale):
    from lime.lime_image import LimeImageExplainer

    _, adapter, probe, x, target = grayscale
    segmentation = Segmentation("grid", patch=4)
    ours = attribute(Lime(samples=500, segmentation=segmentation), adapter, probe, x, target)
    assert ours.shape == (4, 16, 16)

    def library(seed):
        maps = []
        for i in range(len(x)):
            segments = segmentation(x[i])
            explainer = LimeImageExplainer(random_state=seed)
            explanation = explainer.explain_instance(
                np.repeat(x[i], 3, axis=-1).astype(np.float64),
                lambda images: adapter.predict([images[..., :1].astype(np.float32)]),
                labels=(target[i],), top_labels=None, num_samples=500, batch_size=500,
                segmentation_fn=lambda image, s=segments: s,
            )
            values = np.zeros(segments.max() + 1)
            for feature, value in explanation.local_exp[target[i]]:
                values[feature] = value
            maps.append(values[segments])
        return np.array(maps)

    assert_agrees(ours, library(1), library(2))


def test_reference_engines_agree_with_the_batched_engines(tabular, grayscale):
    _, adapter, probe, x, target, background = tabular
    for cls, samples in ((KernelShap, 100), (Lime, 500)):
        batched = attribute(cls(samples=samples, background=background), adapter, probe, x[:4], target[:4])
        reference = attribute(cls(samples=samples, background=background, engine="reference"), adapter, probe,
                              x[:4], target[:4])
        assert reference.shape == batched.shape and corr(batched, reference) > 0.95
    _, adapter, probe, x, target = grayscale
    for cls in (KernelShap, Lime):
        segmentation = Segmentation("grid", patch=4)
        batched = attribute(cls(samples=300, segmentation=segmentation), adapter, probe, x[:2], target[:2])
        reference = attribute(cls(samples=300, segmentation=segmentation, engine="reference"), adapter, probe,
                              x[:2], target[:2])
        assert reference.shape == batched.shape == (2, 16, 16) and corr(batched, reference) > 0.9


def test_seeded_and_deterministic_per_probe_whatever_the_batching(tabular, grayscale, monkeypatch):
    _, adapter, probe, x, target, background = tabular
    _, image_adapter, image_probe, images, image_target = grayscale
    cases = [
        (lambda **kw: KernelShap(samples=50, background=background, **kw), adapter, probe, x, target),
        (lambda **kw: Lime(samples=300, background=background, **kw), adapter, probe, x, target),
        (lambda **kw: ExpectedGradients(background=background, samples=20, **kw), adapter, probe, x, target),
        (lambda **kw: Lime(samples=100, segmentation="grid", **kw), image_adapter, image_probe, images,
         image_target),
    ]
    for make, model, p, inputs, t in cases:
        first = attribute(make(seed=3), model, p, inputs, t)
        np.testing.assert_array_equal(first, attribute(make(seed=3), model, p, inputs, t))
        assert not np.allclose(first, attribute(make(seed=4), model, p, inputs, t))
        with monkeypatch.context() as patch:  # one probe per block and tiny model calls
            patch.setattr(surrogate, "_ELEMENTS_PER_BLOCK", 1)
            patch.setattr(model, "batch_size", 7)
            kw = {} if isinstance(make(), ExpectedGradients) else {"batch_size": 7}
            np.testing.assert_allclose(attribute(make(seed=3, **kw), model, p, inputs, t), first, atol=1e-5)


def test_occlusion_finds_the_pixels_a_linear_model_reads():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    weights = np.zeros((64, 2), dtype=np.float32)
    weights[:16, 1] = 1.0  # class 1 reads the top two rows
    model.layers[-1].set_weights([weights, np.zeros(2, dtype=np.float32)])
    x = np.ones((2, 8, 8, 1), dtype=np.float32)
    probe = as_probe_set(x)
    maps = attribute(Occlusion(window=2, stride=2), adapt(model, probe), probe, x, np.array([1, 1]))
    assert maps.shape == (2, 8, 8)
    np.testing.assert_allclose(maps[:, :2], 4.0)
    np.testing.assert_allclose(maps[:, 2:], 0.0)



def test_occlusion_of_a_large_image_holds_one_model_batch_at_a_time():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    x = np.random.default_rng(0).random((1, 96, 96, 3), dtype=np.float32)
    probe = as_probe_set(x)
    method = Occlusion(window=4, stride=2)
    method.setup(adapt(model, probe, batch_size=64), probe)
    method.attribute([x], np.array([1]))  # compiles the model's predict outside the measurement
    one_batch, all_at_once = 64 * x.nbytes, method.rows_per_probe() * x.nbytes  # 7 MB; 2209 copies, 244 MB
    tracemalloc.start()
    try:
        (maps,) = method.attribute([x], np.array([1]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert maps.shape == (1, 96, 96) and np.all(np.isfinite(maps))
    assert peak < 3 * one_batch < all_at_once / 10, (peak, one_batch)

def test_occlusion_by_hand_whatever_cuts_its_rows_into_model_calls():
    # A model call holds (window, probe) rows of several probes, cut anywhere: each drop must still pair the
    # probe's occluded image with its own held input and its own target.
    keras.utils.set_random_seed(0)
    image, vector = keras.Input((6, 6, 1)), keras.Input((3,))
    hidden = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Conv2D(3, 3)(image)), vector])
    model = keras.Model([image, vector], keras.layers.Dense(3)(keras.layers.Dense(8, activation="tanh")(hidden)))
    rng = np.random.default_rng(0)
    x = [rng.random((4, 6, 6, 1), dtype=np.float32), rng.random((4, 3), dtype=np.float32)]
    target = np.array([0, 2, 1, 2])
    probe = as_probe_set(x)
    rows, where = [[], []], []  # every occluded copy, by hand, and the map elements its drop goes to
    starts = (0, 2, 3)  # window 3, stride 2, and one flush with the far edge
    for i in range(4):
        for r, c in itertools.product(starts, starts):
            occluded = x[0][i].copy()
            occluded[r:r + 3, c:c + 3] = 0.5
            rows[0].append(occluded)
            rows[1].append(x[1][i])
            where.append((0, i, slice(r, r + 3), slice(c, c + 3)))
        for j in range(3):
            occluded = x[1][i].copy()
            occluded[j] = 0.5
            rows[0].append(x[0][i])
            rows[1].append(occluded)
            where.append((1, i, j))
    reference = adapt(model, probe)
    full = reference.predict(x)[np.arange(4), target]
    out = reference.predict([np.stack(r) for r in rows])
    expected, coverage = [np.zeros((4, 6, 6)), np.zeros((4, 3))], np.zeros((4, 6, 6))
    for row, (k, i, *element) in enumerate(where):
        expected[k][(i, *element)] += full[i] - out[row, target[i]]
        if k == 0:
            coverage[(i, *element)] += 1
    expected[0] /= coverage
    for batch_size in (1, 5, 7, 1024):  # 36 image rows and 12 vector rows, cut within windows and probes
        method = Occlusion(window=3, stride=2, fill=0.5)
        method.setup(adapt(model, probe, batch_size=batch_size), probe)
        maps = method.attribute(x, target)
        for got, want in zip(maps, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"batch size {batch_size}")


def test_backgrounds_are_stated_in_the_logged_config(tmp_path, tabular):
    model, _, _, x, _, _ = tabular
    kmeans = Background.kmeans(np.random.default_rng(0).standard_normal((200, 8)), k=5, seed=0)
    assert kmeans.data.shape == (5, 8) and np.isclose(kmeans.weights.sum(), 1.0)
    callback = tb_xai.AttributionCallback(
        str(tmp_path), x[:4], methods=[KernelShap(samples=40, background=kmeans),
                                       Lime(samples=100, name="lime_probe")])
    model.fit(x, np.zeros(len(x), dtype=np.int32), epochs=1, verbose=0, callbacks=[callback])
    run = tb_xai.load(str(tmp_path))
    assert run.config("kernel_shap")["background"] == "kmeans" and run.config("kernel_shap")["background_k"] == 5
    assert run.config("lime_probe")["background"] == "probe"


def test_callback_logs_every_new_method(tmp_path, tabular, grayscale):
    model, _, _, x, _, background = tabular
    callback = tb_xai.AttributionCallback(
        str(tmp_path / "tabular"), x[:4],
        methods=[KernelShap(samples=40, background=background), Lime(samples=100),
                 ExpectedGradients(samples=10)],
    )
    model.fit(x, np.zeros(len(x), dtype=np.int32), epochs=2, verbose=0, callbacks=[callback])
    run = tb_xai.load(str(tmp_path / "tabular"))
    for name in ("kernel_shap", "lime", "expected_gradients"):
        assert run.attributions(name).shape == (2, 4, 8), name
        assert np.abs(run.attributions(name)).sum() > 0
    assert not run.failures()

    cnn, _, _, images, _ = grayscale
    callback = tb_xai.AttributionCallback(
        str(tmp_path / "images"), images[:3],
        methods=[KernelShap(samples=40, segmentation="grid"), Lime(samples=100, segmentation="slic"),
                 Occlusion(window=4), ExpectedGradients(samples=10)],
    )
    cnn.fit(images, np.zeros(len(images), dtype=np.int32), epochs=2, verbose=0, callbacks=[callback])
    run = tb_xai.load(str(tmp_path / "images"))
    for name, shape in (("kernel_shap", (2, 3, 16, 16)), ("lime", (2, 3, 16, 16)), ("occlusion", (2, 3, 16, 16)),
                        ("expected_gradients", (2, 3, 16, 16, 1))):
        assert run.attributions(name).shape == shape, name
    assert run.config("lime")["segmentation"] == "slic"
    assert not run.failures()


def test_configuration_mistakes_name_the_bad_value(tabular):
    _, adapter, probe, x, target, background = tabular
    with pytest.raises(ValueError, match=r"background rows have shape \(3,\) but probe rows have shape \(8,\)"):
        KernelShap(background=np.zeros((4, 3))).setup(adapter, probe)
    with pytest.raises(ValueError, match="segment_mean"):
        KernelShap(background="segment_mean").setup(adapter, probe)
    with pytest.raises(ValueError, match="engine must be one of"):
        Lime(engine="fast")
    with pytest.raises(ValueError, match=r"fill='mean' .* tabular input 'input' needs a number"):
        Occlusion(fill="mean").setup(adapter, probe)



def test_the_surrogates_single_threaded_blas_restores_the_process_limit():
    """The fits run numpy's BLAS on one thread: nested holders keep the limit until the outermost leaves, a
    worker thread's holder neither sets nor restores it, and the process's own limit is back afterwards."""
    import threading

    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]

    def in_worker():
        seen = []

        def work():
            with surrogate.single_threaded_blas():
                np.ones((64, 64)) @ np.ones((64, 64))
            seen.append(blas_threads())

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(10)
        return seen[0]

    assert blas_threads(), "numpy's BLAS is not visible to threadpoolctl"
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        start = blas_threads()
        assert start == [2] * len(start)
        assert in_worker() == start  # alone on a worker thread it changes nothing
        with surrogate.single_threaded_blas():
            with surrogate.single_threaded_blas():
                assert blas_threads() == [1] * len(start)
            assert blas_threads() == [1] * len(start)
            assert in_worker() == [1] * len(start)  # workers run under the main thread's limit
            assert blas_threads() == [1] * len(start)
        assert blas_threads() == start
