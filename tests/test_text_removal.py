"""Perturbation methods refuse a text model whose output is undefined once every token is removed."""

import keras
import numpy as np
import pytest

from tb_xai import methods as methods_lib, text
from tb_xai.backend import adapt
from tb_xai.probe import as_probe_set


@pytest.fixture(scope="module")
def masked_mean_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(12, 4, mask_zero=True),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    ids = np.array([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 10, 11]], dtype=np.int32)
    return model, ids


def _adapter(model, ids, **arguments):
    probe = as_probe_set(ids)
    adapter = adapt(model, probe)
    text.resolve(adapter, probe, text.TextArguments(**arguments))
    return adapter


@pytest.mark.parametrize("method", ["kernel_shap", "lime"])
def test_masking_every_token_of_a_masked_mean_is_refused_with_the_fix(masked_mean_model, method):
    model, ids = masked_mean_model
    adapter = _adapter(model, ids)  # mask id = padding id 0: an all-removed text is all masked
    assert np.isnan(adapter.predict([np.zeros_like(ids)])).all()
    with pytest.raises(ValueError, match=r"replaced by the mask id 0.*NaN or inf for 2 of 2 probes.*mask_id="):
        methods_lib.get(method).setup(adapter, adapter.probe)


@pytest.mark.parametrize("method", ["kernel_shap", "lime"])
def test_an_out_of_vocabulary_mask_id_explains_every_token(masked_mean_model, method):
    model, ids = masked_mean_model
    adapter = _adapter(model, ids, mask_id=1)
    explainer = methods_lib.REGISTRY[method](samples=64, seed=0)
    explainer.setup(adapter, adapter.probe)
    (values,) = explainer.attribute(adapter.probe.inputs, np.array([0, 1], dtype=np.int32))
    assert np.isfinite(values).all()
    assert (values[0, 3:] == 0).all() and np.count_nonzero(values[0, :3]) == 3 and np.count_nonzero(values[1]) == 6
