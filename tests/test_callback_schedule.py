"""The callback's scheduling: no per-batch hook, and the max_overhead budget."""

from __future__ import annotations

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
    # tb_xai.load reads the same: the skipped epochs, and the callback's share at each logged step.
    cost = run.overhead()
    assert cost["steps"].tolist() == steps
    assert cost["skipped_epochs"].tolist() == [skipped[s] for s in steps]
    assert np.isfinite(cost["overhead"]).all() and (cost["overhead"] > 0).all()


class _Clock:
    """A process clock that only the test moves: each epoch, the setup and each logged step cost what it says."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _PricedSaliency(tb_xai.methods.Saliency):
    """Saliency whose setup and each attribution cost a set number of (fake) CPU seconds."""

    def __init__(self, clock, setup_cost, step_cost):
        super().__init__()
        self.clock, self.setup_cost, self.step_cost = clock, setup_cost, step_cost

    def setup(self, model, probe):
        super().setup(model, probe)
        self.clock.now += self.setup_cost

    def attribute(self, inputs, target):
        self.clock.now += self.step_cost
        return super().attribute(inputs, target)


@pytest.fixture(scope="module")
def tiny_model():
    return models.mlp(n_features=6, n_classes=3)


@pytest.mark.parametrize("setup_cost", [0.0, 3.0])
def test_max_overhead_charges_each_warm_step_and_spaces_them_on_a_stride(tmp_path, monkeypatch, tiny_model,
                                                                         setup_cost):
    from tb_xai import callback as callback_module

    clock = _Clock()
    monkeypatch.setattr(callback_module.time, "process_time", clock)
    probe = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    cb = tb_xai.AttributionCallback(str(tmp_path), probe, methods=[_PricedSaliency(clock, setup_cost, 1.0)],
                                    max_overhead=0.5, quality=False)
    cb.set_model(tiny_model)
    cb.set_params({"epochs": 10, "verbose": 0})
    steps = []
    real_log = cb._log
    monkeypatch.setattr(cb, "_log", lambda step: (steps.append(step), real_log(step)))
    cb.on_train_begin()
    for epoch in range(10):
        cb.on_epoch_begin(epoch)
        clock.now += 1.0  # the epoch's training
        cb.on_epoch_end(epoch, {})
    cb.on_train_end()
    # 1 s epochs, 1 s steps, max_overhead=0.5. Epoch 0 traces the methods and epoch 1 prices a warm step (1 s):
    # neither is skipped. A step then spans 2 epochs (stride 2), and 2, 4 and 6 are logged while the epochs left
    # pay for the last one's; 8 is not (the credit would not keep epoch 9's), and the last, 9, always is. The
    # setup is never charged, whatever it costs: the same epochs are logged.
    assert steps == [0, 1, 2, 4, 6, 9]
    assert sorted(cb._logged_steps) == steps
    assert cb.schedule.stride() == 2
    assert cb.schedule.credit == pytest.approx(0.0)  # 5 charged steps of 1 s, 10 epochs of 0.5 s of budget
    assert cb.overhead() == pytest.approx((setup_cost + 6.0) / 10)  # xai/overhead reports everything


def test_the_budget_is_the_default_and_none_logs_every_epoch(tmp_path, monkeypatch, tiny_model):
    assert tb_xai.AttributionCallback("unused", np.zeros((2, 6), np.float32)).max_overhead == 0.05
    for budget, logged in ((tb_xai.callback.DEFAULT_MAX_OVERHEAD, [0, 1, 4, 8, 12, 19]), (None, list(range(20)))):
        # 1 s epochs and 0.19 s steps: at 5%, a step spans 4 epochs (0.19 / 0.05 is over 2). Epoch 16 is skipped:
        # the credit would not keep the last epoch's step. 5 charged steps: 0.95 s of the fit's 1 s budget.
        cb, overhead = _priced_fit(tmp_path / str(budget), monkeypatch, tiny_model, step_cost=0.19, epochs=20,
                                   max_overhead=budget)
        assert sorted(overhead) == logged


def _priced_fit(tmp_path, monkeypatch, model, step_cost, setup_cost=0.5, epochs=5, **kwargs):
    """A 1 s-per-epoch fit on the test's clock, each logged step costing `step_cost`; returns the callback and
    the `xai/overhead` scalars by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tb_xai import callback as callback_module

    clock = _Clock()
    monkeypatch.setattr(callback_module.time, "process_time", clock)
    probe = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    cb = tb_xai.AttributionCallback(str(tmp_path), probe, methods=[_PricedSaliency(clock, setup_cost, step_cost)],
                                    quality=False, **kwargs)
    cb.set_model(model)
    cb.set_params({"epochs": epochs, "verbose": 0})
    cb.on_train_begin()
    for epoch in range(epochs):
        cb.on_epoch_begin(epoch)
        clock.now += 1.0
        cb.on_epoch_end(epoch, {})
    cb.on_train_end()
    events = EventAccumulator(str(tmp_path / "xai"), size_guidance={"tensors": 0}).Reload()
    return cb, {e.step: e.tensor_proto.float_val[0] for e in events.Tensors(callback_module.OVERHEAD_TAG)}


def test_each_logged_step_logs_the_callbacks_share_of_training_so_far(tmp_path, monkeypatch, tiny_model, caplog):
    cb, overhead = _priced_fit(tmp_path, monkeypatch, tiny_model, step_cost=0.25, max_overhead=None)
    # After epoch e: the 0.5 s setup and e + 1 steps of 0.25 s, over e + 1 seconds of training.
    assert sorted(overhead) == [0, 1, 2, 3, 4]
    for epoch, value in overhead.items():
        assert value == pytest.approx((0.5 + 0.25 * (epoch + 1)) / (epoch + 1))
    assert cb.overhead() == pytest.approx((0.5 + 5 * 0.25) / 5)
    cost = tb_xai.load(str(tmp_path)).overhead()
    assert cost["steps"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(cost["overhead"], [overhead[s] for s in range(5)], rtol=1e-6)
    assert np.isnan(cost["skipped_epochs"]).all()  # no budget: nothing skipped is logged
    # The steps alone over 10% after 3 of them (0.25): one warning that says how much and what to pass.
    warnings = [r.getMessage() for r in caplog.records if "added" in r.getMessage()]
    assert len(warnings) == 1
    assert "added 25% to this training's CPU time so far (3 logged steps of 250.0 ms" in warnings[0]
    assert "epochs of 1000.0 ms" in warnings[0]
    assert "max_overhead at its default (0.05)" in warnings[0] and "every_n_epochs=N" in warnings[0]


@pytest.mark.parametrize("step_cost, setup_cost, kwargs", [
    (0.09, 0.0, {"max_overhead": None}),  # under 10%
    (0.05, 3.0, {"max_overhead": None}),  # an expensive setup, paid once, is not what the advice would save
    (0.25, 0.5, {"max_overhead": 10.0}),  # a budget: no advice
])
def test_no_overhead_warning_under_the_threshold_or_with_a_budget(tmp_path, monkeypatch, tiny_model, caplog,
                                                                   step_cost, setup_cost, kwargs):
    cb, overhead = _priced_fit(tmp_path, monkeypatch, tiny_model, step_cost, setup_cost, **kwargs)
    assert sorted(overhead) == [0, 1, 2, 3, 4]
    assert overhead[4] == pytest.approx((setup_cost + 5 * step_cost) / 5)
    assert not [r for r in caplog.records if "added" in r.getMessage()]
