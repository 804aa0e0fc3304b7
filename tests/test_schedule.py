"""tb_xai.schedule: which epochs are logged, on given CPU costs (no clock, no model)."""

from __future__ import annotations

import pytest

from tb_xai.schedule import Schedule


def run_fit(schedule, epochs, epoch_cost, step_cost, first_epoch=0, known_length=True):
    """One fit of `epochs` epochs at the given costs; returns the logged epochs and the CPU charged to the budget."""
    schedule.start_fit()
    logged, charged = [], 0.0
    for epoch in range(first_epoch, first_epoch + epochs):
        schedule.epoch_ended(epoch_cost)
        last = epoch == first_epoch + epochs - 1
        left = first_epoch + epochs - epoch - 1 if known_length else 0
        if schedule.should_log(epoch, last and known_length, left) or (last and not known_length):
            if logged or schedule.price is not None:  # what step_logged charges: every step but the first
                charged += step_cost
            logged.append(epoch)
            schedule.step_logged(step_cost)
    return logged, charged


def test_without_a_budget_every_scheduled_epoch_and_the_last_are_logged():
    assert run_fit(Schedule(1, None), 6, 1.0, 5.0)[0] == [0, 1, 2, 3, 4, 5]
    assert run_fit(Schedule(3, None), 8, 1.0, 5.0)[0] == [0, 3, 6, 7]


@pytest.mark.parametrize("every_n, price, expected", [
    (1, 0.01, 1), (1, 0.05, 1), (1, 0.051, 2), (1, 0.19, 4), (1, 0.2, 4), (1, 0.21, 8), (3, 0.19, 6),
])
def test_the_stride_is_every_n_times_the_smallest_power_of_two_that_pays_for_a_step(every_n, price, expected):
    schedule = Schedule(every_n, 0.05)
    for _ in range(3):
        schedule.epoch_ended(1.0)
    schedule.step_logged(10.0)  # the first step (tracing) prices nothing
    assert schedule.price is None and schedule.stride() == every_n
    schedule.step_logged(price)
    assert schedule.price == price
    assert schedule.stride() == expected


def test_the_typical_epoch_is_the_median_of_the_latest_so_a_tracing_epoch_does_not_set_the_stride():
    schedule = Schedule(1, 0.05)
    for cost in (30.0, 1.0, 1.0):
        schedule.epoch_ended(cost)
    assert schedule.typical_epoch() == 1.0
    schedule.step_logged(0.0)
    schedule.step_logged(0.19)
    assert schedule.stride() == 4


@pytest.mark.parametrize("epochs", [10, 37, 100])
@pytest.mark.parametrize("step_cost", [0.02, 0.07, 0.19, 0.6, 3.0])
def test_a_fit_keeps_its_budget_and_logs_multiples_of_the_stride(epochs, step_cost):
    schedule = Schedule(1, 0.05)
    logged, charged = run_fit(schedule, epochs, 1.0, step_cost)
    assert logged[:2] == [0, 1] and logged[-1] == epochs - 1  # tracing, pricing, last
    # The budget holds over the fit, unless the pricing step and the last alone cost more.
    assert charged <= max(0.05 * epochs, 2 * step_cost) + 1e-9
    stride = schedule.stride()
    assert stride == {0.02: 1, 0.07: 2, 0.19: 4, 0.6: 16, 3.0: 64}[step_cost]
    assert all(epoch % stride == 0 for epoch in logged[2:-1])
    # Cheap steps are logged at every epoch the budget allows, not more sparsely than it needs.
    if step_cost <= 0.05:
        assert logged == list(range(epochs))


def test_a_costlier_run_logs_a_subset_of_a_cheaper_runs_epochs():
    cheap, _ = run_fit(Schedule(1, 0.05), 200, 1.0, 0.09)  # stride 2
    costly, _ = run_fit(Schedule(1, 0.05), 200, 1.0, 0.35)  # stride 8
    assert set(costly[2:-1]) <= set(cheap)
    assert len(costly) < len(cheap)
    # Two runs of one configuration log the same epochs.
    assert run_fit(Schedule(1, 0.05), 200, 1.0, 0.35)[0] == costly


def test_a_later_fit_is_charged_from_its_first_step_and_keeps_the_stride():
    schedule = Schedule(1, 0.05)
    first, _ = run_fit(schedule, 20, 1.0, 0.19)
    assert schedule.stride() == 4
    second, charged = run_fit(schedule, 20, 1.0, 0.19, first_epoch=20)
    assert second[0] == 20 and second[-1] == 39  # the first and last of each fit are always logged
    assert all(epoch % 4 == 0 for epoch in second[1:-1]) and len(second) > 2
    assert charged == pytest.approx(0.19 * len(second)) and charged <= 0.05 * 20


def test_with_an_unknown_length_the_credit_keeps_a_step_for_the_last_epoch():
    # EarlyStopping or an unknown `epochs`: no epochs are known to be left, so a step is logged only when the
    # credit holds its price and the last one's.
    schedule = Schedule(1, 0.05)
    logged, charged = run_fit(schedule, 40, 1.0, 0.19, known_length=False)
    assert logged[:2] == [0, 1] and logged[-1] == 39
    assert all(epoch % 4 == 0 for epoch in logged[2:-1])
    assert charged <= 0.05 * 40


def test_skipped_epochs_are_counted_until_the_next_logged_step():
    schedule = Schedule(1, 0.05)
    schedule.start_fit()
    schedule.epoch_ended(1.0)
    assert schedule.should_log(0, False, 19)  # a fit of 20 epochs
    schedule.step_logged(1.0)
    schedule.epoch_ended(1.0)
    assert schedule.should_log(1, False, 18)
    schedule.step_logged(0.19)  # stride 4 from here
    for epoch in (2, 3):
        schedule.epoch_ended(1.0)
        assert not schedule.should_log(epoch, False, 19 - epoch)
    assert schedule.skipped == [2, 3]
    schedule.epoch_ended(1.0)
    assert schedule.should_log(4, False, 15)
    schedule.step_logged(0.19)
    assert schedule.skipped == []
