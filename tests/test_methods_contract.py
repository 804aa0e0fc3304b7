"""The contract every registered method keeps. Adding a method adds one entry to CONTRACT."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import models
from tb_xai import methods as methods_lib
from tb_xai.backend import adapt
from tb_xai.methods import surrogate
from tb_xai.probe import as_probe_set

CONTRACT = models.QUICK_METHODS


def test_every_registered_method_is_in_the_contract():
    assert sorted(CONTRACT) == sorted(methods_lib.REGISTRY)


def _setup(name, modality, batch_size=1024, n=5):
    if modality == "tabular":
        model, x = models.mlp(), models.random_inputs((6,), n)
    elif modality == "sequence":
        model, x = models.conv1d(), models.random_inputs((16, 2), n)
    else:
        model, x = models.cnn(), models.random_inputs((8, 8, 1), n)
    probe = as_probe_set(x)
    adapter = adapt(model, probe, batch_size=batch_size)
    method = methods_lib.REGISTRY[name](**CONTRACT[name])
    method.setup(adapter, probe)
    return method, adapter, x


def _cases():
    for name, cls in methods_lib.REGISTRY.items():
        for modality in ("tabular", "image", "sequence"):
            if modality in cls.modalities:
                yield name, modality


ADAPTER_CALLS = ("predict", "predict_blend", "gradients", "layer_gradients")


def _one_row_batches(name, modality, monkeypatch):
    """The method on an adapter of batch size 1, with every other batching knob at its smallest too, and a
    record of every adapter call: ``(call, rows the method asked for at once, batch size allowed)``, plus
    ``("model", rows)`` for each batch the adapter put through the model."""
    # The local surrogates size model calls by bytes (at least the adapter's batch size) and blocks of
    # probes by host memory; at one element each, they put one row per call and one probe per block.
    monkeypatch.setattr(surrogate, "_ELEMENTS_PER_CALL", 1)
    monkeypatch.setattr(surrogate, "_ELEMENTS_PER_BLOCK", 1)
    method, adapter, _ = _setup(name, modality, batch_size=1)
    calls = []
    for call in ADAPTER_CALLS:
        original = getattr(adapter, call)

        def recorded(*args, _call=call, _original=original, **kwargs):
            inputs = args[1] if _call == "layer_gradients" else args[0]
            allowed = kwargs.get("batch_size") or (args[1] if _call == "predict" and len(args) > 1 else None)
            rows = len(inputs) if _call == "predict_blend" else len(inputs[0])  # its masks, one per row
            calls.append((_call, rows, allowed or adapter.batch_size))
            return _original(*args, **kwargs)

        monkeypatch.setattr(adapter, call, recorded)
    # Each batch the adapter sends to its compiled model functions goes through the backend's batching helper.
    backend = sys.modules[type(adapter).__module__]
    assert hasattr(backend, "map_batches"), f"{backend.__name__} no longer batches through map_batches"
    batch_rows = backend.map_batches

    def model_batches(fn, arrays, size):
        def counted(*parts):
            calls.append(("model", len(parts[0]), size))
            return fn(*parts)

        return batch_rows(counted, arrays, size)

    monkeypatch.setattr(backend, "map_batches", model_batches)
    return method, calls


@pytest.mark.parametrize("name,modality", list(_cases()))
def test_shape_finiteness_determinism_and_batching(name, modality, monkeypatch):
    method, adapter, x = _setup(name, modality)
    target = np.array([0, 1, 2, 3, 0])[: len(x)] % adapter.n_outputs
    (first,) = method.attribute([x], target)
    assert first.shape == (len(x),) + method.attribution_shape(x.shape[1:])
    assert first.dtype == np.float32
    assert np.all(np.isfinite(first))
    assert np.abs(first).sum() > 0
    (again,) = method.attribute([x], target)
    np.testing.assert_array_equal(first, again)
    # The same probes through one-row model batches give the same answer: batching is invisible.
    small, calls = _one_row_batches(name, modality, monkeypatch)
    (batched,) = small.attribute([x], target)
    np.testing.assert_allclose(batched, first, rtol=1e-4, atol=1e-6)
    kinds = {call for call, _, _ in calls}
    assert "model" in kinds and kinds & set(ADAPTER_CALLS), calls  # the method went through the adapter
    assert {allowed for _, _, allowed in calls} == {1}, calls  # never asked for more than the adapter's batch
    assert {rows for call, rows, _ in calls if call == "model"} == {1}, calls  # one row per model call
    monkeypatch.undo()
    # Each row is explained independently: a row's attribution does not depend on its neighbours.
    (alone,) = method.attribute([x[2:3]], target[2:3])
    np.testing.assert_allclose(alone[0], first[2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,modality", list(_cases()))
def test_target_changes_the_explanation(name, modality):
    method, _, x = _setup(name, modality)
    (a,) = method.attribute([x], np.zeros(len(x), np.int32))
    (b,) = method.attribute([x], np.ones(len(x), np.int32))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", [n for n, c in methods_lib.REGISTRY.items() if c.requires_gradients])
def test_gradient_methods_reject_integer_inputs(name):
    tabular = "tabular" in methods_lib.REGISTRY[name].modalities
    model = models.mlp() if tabular else models.cnn()
    ids = np.arange(12).reshape(2, 6) if tabular else np.zeros((2, 8, 8, 1), np.int64)
    probe = as_probe_set(ids)
    method = methods_lib.REGISTRY[name](**CONTRACT[name])
    with pytest.raises(ValueError, match=r"dtype int64"):
        method.setup(adapt(model, probe), probe)


def test_unknown_method_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown method 'shapley'.*integrated_gradients"):
        methods_lib.get("shapley")
