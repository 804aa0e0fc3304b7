"""background="probe" is keyed on the probes' values: permuting the probe set changes no explanation."""

import keras
import numpy as np
import pytest

from tb_xai.backend import adapt
from tb_xai.methods import Background, ExpectedGradients, KernelShap, Lime
from tb_xai.probe import as_probe_set


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3)])


def explain(method, model, x, target):
    probe = as_probe_set(x)
    method.setup(adapt(model, probe), probe)
    return method.attribute(probe.inputs, target)[0]


@pytest.mark.parametrize("make", [
    lambda: ExpectedGradients(samples=32),
    lambda: KernelShap(samples=40),
    lambda: Lime(samples=200),
], ids=["expected_gradients", "kernel_shap", "lime"])
@pytest.mark.parametrize("n", [20, 80], ids=["all_probes", "subsampled"])
def test_permuting_the_probes_changes_no_explanation(model, make, n):
    x = np.random.default_rng(0).standard_normal((n, 6)).astype(np.float32)
    target = np.arange(n) % 3
    order = np.random.default_rng(1).permutation(n)
    first = explain(make(), model, x, target)
    permuted = explain(make(), model, x[order], target[order])
    np.testing.assert_allclose(permuted, first[order], rtol=1e-5, atol=1e-6)


def test_the_chosen_rows_depend_on_the_seed_and_values_only():
    x = np.random.default_rng(0).standard_normal((80, 6)).astype(np.float32)
    bound = Background.from_probe(max_rows=50, seed=0).bind(as_probe_set(x), "m")
    again = Background.from_probe(max_rows=50, seed=0).bind(as_probe_set(x[::-1].copy()), "m")
    np.testing.assert_array_equal(bound.data[0], again.data[0])
    assert bound.data[0].shape == (50, 6) and bound.params["rows"] == 50
    other = Background.from_probe(max_rows=50, seed=1).bind(as_probe_set(x), "m")
    assert not np.array_equal(np.sort(other.data[0], axis=0), np.sort(bound.data[0], axis=0))
    # Every chosen row is a probe, none twice.
    assert len({row.tobytes() for row in bound.data[0]}) == 50
    assert {row.tobytes() for row in bound.data[0]} <= {row.tobytes() for row in x}
