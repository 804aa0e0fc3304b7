"""KernelSHAP and LIME compose their engine: no import cycle between the methods, the surrogate base and the
library engines, and engine="batched"/"reference" both work."""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import models
from tb_xai.backend import adapt
from tb_xai.methods import KernelShap, Lime, reference_engines, surrogate
from tb_xai.probe import as_probe_set

METHODS_DIR = os.path.dirname(surrogate.__file__)


def imported_modules(module: str) -> set:
    """Every tb_xai module `module` imports, at the top or inside functions."""
    tree = ast.parse(open(os.path.join(METHODS_DIR, module + ".py")).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("tb_xai")}


def test_no_import_cycle_between_the_surrogates_and_the_library_engines():
    engines = imported_modules("reference_engines")
    assert not engines & {"tb_xai.methods.surrogate", "tb_xai.methods.kernel_shap", "tb_xai.methods.lime_method"}
    assert "tb_xai.methods.reference_engines" not in imported_modules("surrogate")
    # The engines import first in a fresh interpreter (before any method module is loaded).
    subprocess.run([sys.executable, "-c", "import tb_xai.methods.reference_engines"], check=True,
                   env=dict(os.environ))


def test_each_method_holds_its_engine_object():
    assert isinstance(KernelShap()._engine, surrogate.BatchedEngine)
    assert isinstance(KernelShap(engine="reference")._engine, reference_engines.ShapKernelEngine)
    assert isinstance(Lime(engine="reference")._engine, reference_engines.LimeEngine)
    assert KernelShap(engine="reference").config()["engine"] == "reference"

    class Surrogate(surrogate.LocalSurrogate):  # a surrogate with no library counterpart
        name = "surrogate"

        def samples_per_probe(self, features):
            return 1

        def _explain_tabular(self, x, target, index):
            return np.zeros(x.shape, np.float32)

        def _explain_superpixels(self, x, segments, target, index):
            return np.zeros((len(x), 1), np.float32)

    with pytest.raises(ValueError, match="surrogate has no reference engine; use engine='batched'"):
        Surrogate(samples=1, engine="reference")


@pytest.mark.parametrize("cls,samples", [(KernelShap, 62), (Lime, 400)])
def test_both_engines_explain_the_same_model(cls, samples):
    model, x = models.mlp(), models.random_inputs((6,), 3)
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = np.array([0, 1, 2])
    out = {}
    for engine in ("batched", "reference"):
        method = cls(samples=samples, background=models.random_inputs((6,), 8, seed=1), engine=engine)
        method.setup(adapter, probe)
        (out[engine],) = method.attribute([x], target)
    assert out["batched"].shape == out["reference"].shape == (3, 6)
    assert np.corrcoef(out["batched"].ravel(), out["reference"].ravel())[0, 1] > 0.95


def test_predict_blend_refuses_masks_and_tables_that_do_not_fit_the_input():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    adapter = adapt(model, as_probe_set(x))
    keep = np.random.default_rng(1).random((3, 5, 4)) < 0.5
    blended = adapter.predict_blend(keep, x, x[::-1], batch_size=7)  # calls of one run (5 rows)
    np.testing.assert_allclose(blended, adapter.predict([np.where(keep, x[:, None], x[::-1, None]).reshape(15, 4)]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"keep must be \(runs, rows per run, 4\); received shape \(15, 4\)"):
        adapter.predict_blend(keep.reshape(15, 4), x, x)
    with pytest.raises(ValueError, match=r"removed must be \(3, 4\), one row per run; received shape \(2, 4\)"):
        adapter.predict_blend(keep, x, x[:2])
    two = keras.Model([a := keras.Input((4,)), b := keras.Input((4,))], keras.layers.Dense(2)(a + b))
    with pytest.raises(ValueError, match=r"single \(rows, features\) input"):
        adapt(two, as_probe_set([x, x])).predict_blend(keep, x, x)


def test_model_calls_are_bounded_by_host_bytes_and_by_the_widest_layer():
    import keras

    x = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    probe = as_probe_set(x)
    sizes = {}
    for width in (8, 4096):
        model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(width), keras.layers.Dense(2)])
        method = KernelShap(samples=62)
        method.setup(adapt(model, probe), probe)
        assert method.model.widest_activation == width
        sizes[width] = (method.rows_per_call(20), method.rows_per_call(20, blended=True))
    # About 8 MB of float32 rows, or of one-byte masks when the rows are blended inside the call.
    assert sizes[8] == (surrogate._ELEMENTS_PER_CALL // 20, 4 * surrogate._ELEMENTS_PER_CALL // 20)
    # A wide layer bounds the rows of a call whatever the input's size.
    assert sizes[4096] == (surrogate._ACTIVATIONS_PER_CALL // 4096,) * 2


def test_the_call_size_is_the_largest_within_a_margin_of_the_best_measured_rate():
    from tb_xai.batching import call_size_ladder, fastest_call_size

    assert call_size_ladder(419_430, 1024, 4) == [419_430, 262_144, 131_072, 65_536, 32_768]
    assert call_size_ladder(3_000, 1024, 4) == [3_000, 2_048, 1_024]
    assert call_size_ladder(1_024, 1024, 4) == [1_024]
    assert call_size_ladder(65_536, 1024, 2) == [65_536, 32_768, 16_384]
    rates = {4096: 2.0, 2048: 3.1, 1024: 3.3, 512: 3.4}
    assert fastest_call_size(rates, 4096) == 1024  # 3.3 is within 5% of 3.4; 3.1 is not
    assert fastest_call_size(rates, 4096, margin=0.1) == 2048
    assert fastest_call_size(rates, 1500) == 1024  # the sizes up to the bound only
    assert fastest_call_size(rates, 8192) == 8192  # nothing measured at the bound: the bound
    assert fastest_call_size({}, 4096) == 4096


def test_a_large_call_measures_the_models_predict_rates_once_and_its_answers_do_not_depend_on_the_size(monkeypatch):
    from tb_xai.batching import call_size_ladder

    # Calls of 2^16 // 20 = 3276 rows at most (blended), so that a test-sized call fills more than 8 of them.
    monkeypatch.setattr(surrogate, "_ELEMENTS_PER_CALL", 2 ** 14)
    model = models.mlp(n_features=20, n_classes=2, activation="relu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 20)).astype(np.float32)
    background = rng.normal(size=(50, 20)).astype(np.float32)
    probe = as_probe_set(x)
    adapter = adapt(model, probe)
    target = adapter.predict([x]).argmax(axis=1)
    measured = []
    original = adapter.predict_rates

    def predict_rates(inputs, largest):
        predict, calls = adapter.predict, []
        adapter.predict = lambda *a, **k: calls.append(k["batch_size"]) or predict(*a, **k)
        try:
            rates = original(inputs, largest)
        finally:
            adapter.predict = predict
        measured.append((largest, calls))
        return rates

    adapter.predict_rates = predict_rates
    method = KernelShap(samples=62, background=background)
    method.setup(adapter, probe)
    largest = method.largest_call(20, blended=True)
    assert largest == 2 ** 16 // 20 and 12 * 64 * 50 >= surrogate._MEASURED_CALLS * largest
    first = method.attribute([x], target)[0]
    second = method.attribute([x], target)[0]
    # Measured once, at every size of the ladder, then cached; the next call reuses it.
    ladder = call_size_ladder(largest, adapter.batch_size, 4)
    assert [m[0] for m in measured] == [largest, largest]
    assert sorted(set(measured[0][1])) == sorted(ladder) and measured[1][1] == []
    rates = method._rates
    assert sorted(rates) == sorted(ladder) and all(np.isfinite(r) and r > 0 for r in rates.values())
    size = method.rows_per_call(20, blended=True)
    best = max(rates.values())
    assert size in ladder and rates[size] >= 0.95 * best
    assert all(rates[s] < 0.95 * best for s in ladder if s > size)
    # The same attributions at the bound's size, unmeasured (rows are independent: the call size changes nothing).
    fixed = KernelShap(samples=62, background=background, batch_size=largest)
    fixed.setup(adapter, probe)
    np.testing.assert_array_equal(fixed.attribute([x], target)[0], first)
    np.testing.assert_array_equal(second, first)
    assert len(measured) == 2  # batch_size given: nothing measured
    # A call too small to fill 8 of the largest calls measures nothing and takes the bound.
    small = KernelShap(samples=62, background=background)
    small.setup(adapt(model, probe), probe)
    small.model.predict_rates = lambda *a: pytest.fail("a small call measured the predict rates")
    small.attribute([x[:2]], target[:2])
    assert small.rows_per_call(20, blended=True) == largest


def test_row_coalitions_write_whole_blocks_as_their_masks_gathered_one_by_one():
    # Designs of different lengths and feature counts; blocks that start and end inside a design's rows.
    from tb_xai.methods.coalitions import probe_generator, shapley_coalitions
    from tb_xai.methods.kernel_shap import _RowCoalitions

    rows = 5
    designs = [shapley_coalitions(k, samples, probe_generator(0, i), rows=rows)
               for i, (k, samples) in enumerate([(6, 40), (4, 14), (6, 20)])]
    s_max = max(len(d.weights) for d in designs)
    source = _RowCoalitions(designs, rows, s_max, 6)
    expected = np.zeros(source.shape, dtype=bool)
    for q in range(source.shape[0]):
        d, r = designs[q // rows], q % rows
        expected[q, :len(d.weights), :d.base.shape[1]] = d.base[:, d.relabel[r]]
    for start, stop in [(0, 15), (3, 12), (4, 6), (14, 15)]:
        out = np.ones((stop - start,) + source.shape[1:], dtype=bool)
        np.testing.assert_array_equal(source.block(slice(start, stop), out), expected[start:stop])
    # Where every sample exists (no padding), the base class's way (one gather per (pair, sample)) writes the
    # same masks.
    same = _RowCoalitions([designs[0], shapley_coalitions(6, 40, probe_generator(0, 7), rows=rows)], rows,
                          len(designs[0].weights), 6)
    for start, stop in [(0, 10), (2, 9)]:
        out, again = (np.ones((stop - start,) + same.shape[1:], dtype=bool) for _ in range(2))
        surrogate.CoalitionSource.block(same, slice(start, stop), again)
        np.testing.assert_array_equal(same.block(slice(start, stop), out), again)
        assert not again[:, -1].any() and again[:, :-1].any()  # the empty coalition last
