"""The smoke test at default budgets: the session fixtures use smaller ones (conftest.FIXTURE_BUDGETS)."""

from __future__ import annotations

import keras
import numpy as np

import tb_xai
from conftest import methods_for
from tb_xai.methods import REGISTRY


def test_every_method_at_its_default_budget_on_tabular_and_image_runs(tmp_path, tabular_data, digits_data):
    x, y, _, _ = tabular_data
    images, labels = digits_data
    cases = [
        ("tabular", keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                                      keras.layers.Dense(2, activation="softmax")]), x, y),
        ("image", keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                    keras.layers.GlobalAveragePooling2D(),
                                    keras.layers.Dense(10, activation="softmax")]), images, labels),
    ]
    for modality, model, data, target in cases:
        names = methods_for(modality)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        cb = tb_xai.AttributionCallback(str(tmp_path / modality), data[:6], methods=names)
        model.fit(data[:256], target[:256], epochs=2, batch_size=64, verbose=0, callbacks=[cb])
        run = tb_xai.load(str(tmp_path / modality))
        assert run.failures() == []
        assert run.methods == sorted(names)
        for name in names:
            assert run.steps(name) == [0, 1]
            assert np.all(np.isfinite(run.attributions(name)))
            # The logged configuration is the default one (values resolved at setup, None before, aside).
            defaults = {k: v for k, v in REGISTRY[name]().config().items() if v is not None}
            assert {k: run.config(name).get(k) for k in defaults} == defaults, name
