"""The callback's scheduling: no per-batch hook, and the max_overhead budget."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import models
import tb_xai
from keras.src import utils as keras_utils


def test_the_callback_has_no_batch_end_hook():
    # Keras hands batch-end hooks every batch's logs and turns off asynchronous dispatch for them.
    cb = tb_xai.AttributionCallback("unused", np.zeros((2, 6), np.float32))
    for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end"):
        assert keras_utils.is_default(getattr(cb, hook)), hook


@pytest.mark.parametrize("value", [0, -0.1, 11, float("nan"), True, "5%"])
def test_max_overhead_out_of_range_is_refused(value):
    with pytest.raises(ValueError, match=r"max_overhead must be None or a fraction of training time in \(0, 10\]"):
        tb_xai.AttributionCallback("unused", np.zeros((2, 6), np.float32), max_overhead=value)


def test_max_overhead_spaces_out_logged_epochs_keeping_the_first_and_last(tmp_path):
    model = models.mlp(n_features=6, n_classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    # Tiny epochs and 64 probes x 256 path points: explaining costs far more than 1% of training.
    method = tb_xai.methods.IntegratedGradients(steps=256, tolerance=None)
    cb = tb_xai.AttributionCallback(str(tmp_path), x, methods=[method], max_overhead=0.01)
    model.fit(x, y, epochs=12, batch_size=32, verbose=0, callbacks=[cb])
    run = tb_xai.load(str(tmp_path))
    steps = run.steps("integrated_gradients")
    assert steps[0] == 0 and steps[-1] == 11 and len(steps) < 12
    assert run.config("integrated_gradients")["max_overhead"] == 0.01
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "xai")).Reload()
    skipped = {e.step: int(e.tensor_proto.float_val[0]) for e in events.Tensors("xai/skipped_epochs")}
    assert sorted(skipped) == steps
    assert sum(skipped.values()) == 12 - len(steps)  # every epoch is either logged or counted as skipped
