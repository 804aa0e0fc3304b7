"""tb_xai.findings: every figure and finding against hand computations on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tb_xai import findings as F

LOG3 = math.log2(3)


def test_ndcg_at_k_by_hand():
    reference, reversed_ = np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0])
    assert F.ndcg_at_k(reference, reference, 3) == pytest.approx(1.0)
    assert F.ndcg_at_k(reference, reversed_, 1) == pytest.approx(1 / 3)
    # Top 2 of the reversed ranking: features 2 and 1, graded 1 and 2.
    assert F.ndcg_at_k(reference, reversed_, 2) == pytest.approx((1 + 2 / LOG3) / (3 + 2 / LOG3))
    assert F.ndcg_at_k(reference, reversed_, 10) == pytest.approx((1 + 2 / LOG3 + 3 / 2) / (3 + 2 / LOG3 + 1 / 2))
    # Relevance is a magnitude: a negative reference value grades like a positive one.
    assert F.ndcg_at_k(-reference, reference, 1) == pytest.approx(1.0)
    assert math.isnan(F.ndcg_at_k(np.zeros(3), reversed_, 2))
    assert math.isnan(F.ndcg_at_k(np.array([1.0, np.nan, 0.0]), reversed_, 2))
    with pytest.raises(ValueError, match="equal sizes; received 3 and 2"):
        F.ndcg_at_k(reference, np.ones(2), 2)
    with pytest.raises(ValueError, match="k must be an integer >= 1; received: 0"):
        F.ndcg_at_k(reference, reference, 0)


def test_paired_spearman_by_hand():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 2.0, np.nan]])
    b = np.array([[2.0, 4.0, 9.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    rho = F.paired_spearman(a, b)
    assert rho[:2].tolist() == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert math.isnan(rho[2]) and math.isnan(rho[3])  # a constant map, a non-finite value
    # Ties share their rank: ranks (1.5, 1.5, 3) against (1, 2, 3).
    assert F.paired_spearman(np.array([[1.0, 1.0, 2.0]]), np.array([[1.0, 2.0, 3.0]]))[0] == pytest.approx(
        np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])
    with pytest.raises(ValueError, match=r"two \[P, F\] arrays of one shape"):
        F.paired_spearman(np.ones((2, 3)), np.ones((3, 2)))


def test_concentration_by_hand():
    # Probe 0 spreads evenly over 2 features (entropy 1), probe 1 puts all on one (entropy 0); both total 2.
    out = F.concentration(np.array([[1.0, -1.0], [2.0, 0.0]]))
    assert out == {"total_attribution": pytest.approx(2.0), "entropy": pytest.approx(0.5)}
    # Three features, shares (1/2, 1/4, 1/4): H = 1.5 ln 2, over ln 3.
    assert F.concentration(np.array([[2.0, 1.0, 1.0]]))["entropy"] == pytest.approx(1.5 * math.log(2) / math.log(3))
    # A probe with no attribution has no distribution: it does not count in the entropy.
    assert F.concentration(np.array([[0.0, 0.0], [1.0, 1.0]]))["entropy"] == pytest.approx(1.0)


def test_bootstrap_floor_is_one_for_identical_probes_and_lower_for_spread_ones():
    same = np.tile([3.0, 2.0, 1.0, 0.5], (6, 1))
    assert F.bootstrap_floor(same, k=2) == {"ndcg_floor": pytest.approx(1.0), "spearman_floor": pytest.approx(1.0)}
    spread = np.random.default_rng(0).random((6, 8))
    floor = F.bootstrap_floor(spread, k=3)
    assert 0 < floor["ndcg_floor"] < 0.99 and floor["spearman_floor"] < 0.9
    assert F.bootstrap_floor(spread, k=3) == floor  # fixed seed: the callback and the reader agree
    assert all(math.isnan(v) for v in F.bootstrap_floor(spread[:1], k=3).values())


def _plain_bootstrap_floor(maps, k, samples=F.BOOTSTRAP_SAMPLES):
    """The floor as defined, one resample at a time: stable top k, ranks with ties averaged, 5% quantiles."""
    from tb_xai import aggregate
    importance = maps.mean(axis=0)
    counts = F._resample_counts(0, samples, len(maps))
    ndcg, spearman = [], []
    for row in counts @ maps / len(maps):
        ndcg.append(F.ndcg_at_k(importance, row, k))
        spearman.append(aggregate.spearman(importance, row))
    return [F._quantile(np.array(ndcg)), F._quantile(np.array(spearman))]


def _floor_cases():
    rng = np.random.default_rng(7)
    maps = np.abs(rng.normal(size=(12, 24, 9))) * rng.random(9)
    ties = maps.copy()
    ties[:, :, :3] = 0.0  # features never attributed: tied in every resample
    ties[4] = 1.0  # a constant step: every Spearman undefined
    ties[5, 3, 2] = np.nan  # a non-finite step: no floor
    wide = np.abs(rng.normal(size=(3, 6, 300)))  # over _SORT_FEATURES: the top k selected, not sorted
    wide[1, :, 100:] = 0.0
    counts = rng.integers(0, 3, size=(6, 10, 7)).astype(np.float64)  # many coincidental ties
    return {"distinct": maps, "ties": ties, "wide": wide, "counts": counts}


@pytest.mark.parametrize("case", ["distinct", "ties", "wide", "counts"])
@pytest.mark.parametrize("k", [1, 4, 500])
def test_bootstrap_floors_of_every_step_at_once_equal_each_step_alone_exactly(case, k):
    maps = _floor_cases()[case]
    alone = np.array([[F.bootstrap_floor(m, k)[name] for m in maps] for name in ("ndcg_floor", "spearman_floor")])
    together = F.bootstrap_floors(maps, k)
    np.testing.assert_array_equal(np.stack([together["ndcg_floor"], together["spearman_floor"]]), alone)
    # Blocks of steps (several matrix products and sorts) give the same values as one.
    small = dict(_FLOOR_BLOCK=F.BOOTSTRAP_SAMPLES * maps.shape[2] * 2, _RANK_BLOCK=1)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in small.items():
            patch.setattr(F, name, value)
        blocked = F.bootstrap_floors(maps, k)
    np.testing.assert_array_equal(np.stack([blocked["ndcg_floor"], blocked["spearman_floor"]]), alone)
    # Float32 maps (as logged) are converted inside: the same floors as from their float64 copy.
    if case in ("distinct", "counts"):
        single = F.bootstrap_floors(maps.astype(np.float32), k)
        again = F.bootstrap_floors(maps.astype(np.float32).astype(np.float64), k)
        for name in single:
            np.testing.assert_array_equal(single[name], again[name])
    # And they are the floors as defined, computed one resample at a time, to float rounding.
    plain = np.array([_plain_bootstrap_floor(m, k) if np.isfinite(m).all() else [np.nan, np.nan] for m in maps]).T
    np.testing.assert_allclose(alone, plain, rtol=0, atol=1e-12)


def test_bootstrap_floors_of_probe_subsets_equal_each_subset_alone_exactly():
    maps = _floor_cases()["ties"]
    subsets = [m[: 2 + i % 5] for i, m in enumerate(maps)] + [maps[0][:1]]  # 2-6 probes, then one (no floor)
    together = F.bootstrap_floors(subsets, 3)
    for i, m in enumerate(subsets):
        alone = F.bootstrap_floor(m, 3)
        np.testing.assert_array_equal([together["ndcg_floor"][i], together["spearman_floor"][i]],
                                      [alone["ndcg_floor"], alone["spearman_floor"]])
    assert np.isnan(together["ndcg_floor"][-1])


def test_figures_of_every_step_equal_step_figures_alone_exactly():
    maps = _floor_cases()["ties"]
    out = F.figures(list(range(len(maps))), maps, k=3, reference_step=2)
    importance = maps.mean(axis=1)
    for i, m in enumerate(maps):
        alone = F.step_figures(m, importance[i - 1] if i else None, importance[2], 3)
        np.testing.assert_array_equal([out[name][i] for name in alone], list(alone.values()))
    history = F.MethodHistory(np.arange(len(maps)), maps, [])
    np.testing.assert_array_equal(history.unit_ranks(), np.stack([F._unit_ranks(m) for m in maps]))


def test_figures_by_hand():
    # 3 steps, 2 probes, 3 features; importance = the mean over the 2 probes.
    maps = np.array([
        [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]],   # importance (3, 2, 1)
        [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]],   # unchanged
        [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],   # reversed
    ])
    out = F.figures([0, 5, 9], maps, k=1)
    assert out["steps"].tolist() == [0, 5, 9]
    assert math.isnan(out["ndcg_previous"][0]) and math.isnan(out["spearman_previous"][0])
    assert out["ndcg_previous"][1:].tolist() == [pytest.approx(1.0), pytest.approx(1 / 3)]
    assert out["spearman_previous"][1:].tolist() == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert out["ndcg_reference"].tolist() == [pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1 / 3)]
    assert out["total_attribution"].tolist() == [pytest.approx(6.0)] * 3
    h = -(0.5 * math.log(0.5) + 1 / 3 * math.log(1 / 3) + 1 / 6 * math.log(1 / 6)) / math.log(3)
    assert out["entropy"].tolist() == [pytest.approx(h)] * 3
    # Against the last step instead: its own row is 1, the others grade (3, 2, 1) by (1, 2, 3).
    assert F.figures([0, 5, 9], maps, k=1, reference_step=9)["ndcg_reference"].tolist() == [
        pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1.0)]
    assert F.as_json(out)["ndcg_previous"] == [None, pytest.approx(1.0), pytest.approx(1 / 3)]
    assert F.as_json(out)["steps"] == [0, 5, 9]
    with pytest.raises(ValueError, match=r"reference_step=4 is not a logged step; logged steps: \[0, 5, 9\]"):
        F.figures([0, 5, 9], maps, k=1, reference_step=4)
    with pytest.raises(ValueError, match=r"maps must be \[len\(steps\), probes, features\]"):
        F.figures([0, 5], maps)


def history(maps, steps=None, **logged):
    maps = np.asarray(maps, dtype=np.float64)
    steps = np.arange(len(maps)) if steps is None else np.asarray(steps)
    names = [f"f{i}" for i in range(maps.shape[2])]
    return F.MethodHistory(steps, maps, names, {k: (steps, np.asarray(v, float)) for k, v in logged.items()})


def test_seed_figures_logged_every_few_steps_hold_until_the_next():
    h = F.MethodHistory(np.arange(5), np.ones((5, 2, 3)), ["a", "b", "c"],
                        {"seed_noise": (np.array([1, 3]), np.array([0.5, 0.2]))})
    assert np.isnan(h.logged_at("seed_noise")[[0, 2, 4]]).all()
    assert h.logged_at("seed_noise", fill=True).tolist() == [0.5, 0.5, 0.5, 0.2, 0.2]
    assert np.isnan(h.logged_at("seed_ndcg", fill=True)).all()


def rising_feature_maps(jump: float, steps: int = 5, probes: int = 4, at: int = 2, seed: int = 0):
    """Feature 3 starts last and gains `jump` at step `at`; every probe has a little noise."""
    rng = np.random.default_rng(seed)
    base = np.array([4.0, 3.0, 2.0, 1.0])
    maps = np.tile(base, (steps, probes, 1)) + 0.01 * rng.random((steps, probes, 4))
    maps[at:, :, 3] += jump
    return maps


def test_a_feature_entering_the_top_k_and_staying_is_found_with_its_paired_noise():
    maps = rising_feature_maps(jump=4.0)
    found = F.topk_findings("ig", history(maps), F.Thresholds(k=1))
    # f0 drops out of the top 1 too, but its own importance did not move: not a finding of its own.
    assert [(f["step"], f["kind"], f["feature"]) for f in found] == [(2, "topk_enter", "f3")]
    enter = found[0]
    diff = maps[2, :, 3] - maps[1, :, 3]
    assert enter["value"] == pytest.approx(diff.mean())
    assert enter["noise"] == pytest.approx(F.Z * diff.std(ddof=1) / 2)  # Z standard errors over 4 probes
    assert enter["message"] == (f"step 2: f3 entered the top 1 of ig (+{diff.mean():.3g} mean |attribution|, "
                                f"noise {enter['noise']:.2g})")
    assert {"step", "kind", "method", "feature", "probe", "value", "noise", "message"} <= set(enter)


def test_a_top_k_change_within_the_noise_or_not_kept_is_not_found():
    # Feature 0 and 1 nearly tie and swap every step: the change is within the paired noise.
    rng = np.random.default_rng(1)
    maps = np.tile([2.0, 2.0, 1.0], (6, 8, 1)) + rng.normal(0, 0.5, (6, 8, 3))
    assert F.topk_findings("m", history(maps), F.Thresholds(k=1)) == []
    # A real jump that does not stay (back out after one step) is no entry; its leaving, which stays, is.
    maps = rising_feature_maps(jump=4.0, steps=6)
    maps[3:, :, 3] -= 4.0
    assert [(f["step"], f["kind"]) for f in F.topk_findings("m", history(maps), F.Thresholds(k=1, patience=2))] == [
        (3, "topk_leave")]
    # Between-seed noise the callback logged raises the bar.
    maps = rising_feature_maps(jump=4.0)
    assert F.topk_findings("m", history(maps, seed_noise=[5.0] * 5), F.Thresholds(k=1)) == []


def test_drift_is_found_from_the_step_it_starts_and_stays_below_the_threshold():
    steps = 6
    maps = np.tile(np.arange(10, 0, -1, dtype=float), (steps, 3, 1))
    maps[3:] = maps[3:, :, ::-1]  # the ranking reverses at step 3 and stays reversed
    found = F.drift_findings("m", history(maps), F.Thresholds(k=3), None)
    assert [(f["step"], f["kind"], f["reference_step"]) for f in found] == [(3, "drift", 0)]
    expected = (1 / 1 + 2 / LOG3 + 3 / 2) / (10 + 9 / LOG3 + 8 / 2)
    assert found[0]["value"] == pytest.approx(expected)
    assert found[0]["noise"] == pytest.approx(0.0)  # identical probes: no floor to speak of
    # A ranking the estimator's own seeds already disagree on that much is not drift.
    assert F.drift_findings("m", history(maps, seed_ndcg=[0.1] * steps), F.Thresholds(k=3), None) == []
    # A configurable threshold: nothing drifts below 0.1.
    assert F.drift_findings("m", history(maps), F.Thresholds(k=3, drift=0.1), None) == []
    # From the last step on, the early steps are what drifted, but drift is only reported after the reference.
    assert F.drift_findings("m", history(maps), F.Thresholds(k=3), 5) == []


def predictions_of(classes, n_classes=2):
    classes = np.asarray(classes)
    out = np.full(classes.shape + (n_classes,), 0.1)
    np.put_along_axis(out, classes[..., None], 0.9, axis=-1)
    return out


def test_prediction_flips_by_direction_and_only_when_kept():
    # Probes over 5 steps: 0 goes right at step 2 and stays; 1 goes wrong at step 3; 2 flips back and forth,
    # which is only found at the last step (nothing after it to contradict it).
    classes = np.array([[0, 1, 0], [0, 1, 1], [1, 1, 0], [1, 0, 1], [1, 0, 0]])
    labels = np.array([1, 1, 0])
    found = F.flip_findings([0, 1, 2, 3, 4], predictions_of(classes), labels, ["even", "odd"], patience=2)
    assert [(f["step"], f["probe"], f["direction"]) for f in found] == [
        (2, 0, "wrong_to_right"), (3, 1, "right_to_wrong"), (4, 2, "wrong_to_right")]
    assert found[0]["message"] == "step 2: probe 0's prediction flipped from 'even' to 'odd' (now right)"
    assert found[0]["value"] == pytest.approx(0.9) and found[0]["noise"] == 0.0
    # No labels: a flip is a change of class.
    assert [f["direction"] for f in F.flip_findings([0, 1, 2, 3, 4], predictions_of(classes), None, patience=2)] == [
        "changed", "changed", "changed"]
    # One sigmoid unit: class 1 above 0.5.
    sigmoid = np.array([[[0.2]], [[0.7]], [[0.8]]])
    assert [f["predicted_class"] for f in F.flip_findings([0, 1, 2], sigmoid, np.array([1]))] == [1]
    # One unit with values outside [0, 1] is a regression: nothing flips.
    assert F.flip_findings([0, 1, 2], np.array([[[-0.2]], [[0.7]], [[1.8]]]), None) == []


def test_a_probe_explanation_changing_while_its_prediction_stays_and_the_reverse():
    probes, steps = 2, 4
    maps = np.tile([4.0, 3.0, 2.0, 1.0], (steps, probes, 1))
    maps[2:, 0] = [1.0, 2.0, 3.0, 4.0]  # probe 0's map reverses at step 2; probe 1's never changes
    classes = np.array([[0, 0], [0, 0], [0, 1], [0, 1]])  # probe 1 flips at step 2
    found = F.probe_change_findings("m", history(maps), np.arange(steps), predictions_of(classes),
                                    F.Thresholds(patience=2))
    assert [(f["step"], f["kind"], f["probe"], f["value"]) for f in found] == [
        (2, "explanation_changed", 0, pytest.approx(-1.0)),
        (2, "prediction_flipped_explanation_stable", 1, pytest.approx(1.0))]
    # Two seeds of a sampling method disagree more than that already: not a change.
    assert [f["kind"] for f in F.probe_change_findings(
        "m", history(maps, seed_spearman=[-1.0] * steps), np.arange(steps), predictions_of(classes),
        F.Thresholds(patience=2))] == ["prediction_flipped_explanation_stable"]


def test_sanity_fails_when_maps_stay_close_to_the_untrained_models_to_the_last_step():
    maps = np.ones((5, 2, 3))
    failing = F.sanity_findings("gxi", history(maps, sanity_spearman=[1.0, 0.9, 0.5, 0.8, 0.9]), F.Thresholds(patience=2))
    assert [(f["step"], f["kind"], f["value"]) for f in failing] == [(3, "sanity_failed", pytest.approx(0.9))]
    assert F.sanity_findings("gxi", history(maps, sanity_spearman=[1.0, 0.9, 0.5, 0.6, 0.9]),
                             F.Thresholds(patience=2)) == []  # above for one step only
    assert F.sanity_findings("ig", history(maps, sanity_spearman=[1.0, 0.9, 0.8, 0.5, 0.2]), F.Thresholds()) == []
    assert F.sanity_findings("ig", history(maps), F.Thresholds()) == []  # not logged: nothing to say


def test_two_methods_stop_agreeing():
    steps = 5
    a = np.tile(np.arange(6, 0, -1, dtype=float), (steps, 3, 1))
    b = a.copy()
    b[2:] = b[2:, :, ::-1]  # b reverses its ranking at step 2
    found = F.agreement_findings({"a": history(a), "b": history(b)}, F.Thresholds())
    assert [(f["step"], f["kind"], f["methods"], f["value"]) for f in found] == [
        (2, "methods_disagree", ["a", "b"], pytest.approx(-1.0))]


def test_findings_are_ordered_by_step_and_validated():
    maps = rising_feature_maps(jump=4.0)
    classes = np.zeros((5, 4), dtype=int)
    classes[1:, 2] = 1
    out = F.findings({"ig": history(maps)}, np.arange(5), predictions_of(classes), np.ones(4, int),
                     thresholds=F.Thresholds(k=1))
    assert [(f["step"], f["kind"], f["probe"]) for f in out] == [
        (1, "prediction_flip", 2), (1, "prediction_flipped_explanation_stable", 2), (2, "drift", None),
        (2, "topk_enter", None)] + [(2, "explanation_changed", p) for p in range(4)]
    assert [f["step"] for f in out] == sorted(f["step"] for f in out)
    with pytest.raises(ValueError, match=r"reference_step=7 is not a logged step of 'ig'; logged steps: \[0, 1, 2"):
        F.findings({"ig": history(maps)}, reference_step=7)
    with pytest.raises(ValueError, match="drift threshold must be a number in \\[-1, 1\\]; received: 2"):
        F.Thresholds(drift=2)
    with pytest.raises(ValueError, match="patience must be an integer >= 1; received: 0"):
        F.Thresholds(patience=0)


def test_rank_stability_of_every_step_at_once_equals_each_pair_alone_exactly():
    from tb_xai import aggregate
    rng = np.random.default_rng(3)
    importance = np.concatenate([rng.random((6, 7)), rng.integers(0, 3, (6, 7)).astype(float), np.ones((1, 7))])
    importance[4, 2] = np.nan  # no figures at this step, nor at the next one's comparison with it
    out = aggregate.rank_stability(importance, 3)
    last = importance[-1]
    expected = {
        "spearman_last": [aggregate.spearman(row, last) for row in importance],
        "topk_last": [aggregate.top_k_overlap(row, last, 3) for row in importance],
        "spearman_previous": [np.nan] + [aggregate.spearman(a, b) for a, b in zip(importance, importance[1:])],
        "topk_previous": [np.nan] + [aggregate.top_k_overlap(a, b, 3) for a, b in zip(importance, importance[1:])],
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(out[name], values, err_msg=name)


def test_the_floor_quantile_is_numpys_linear_quantile_exactly():
    """`_low_quantile` (two order statistics) gives np.quantile's values bit for bit: ties, NaN, inf, one sample."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        samples, steps = int(rng.integers(1, 260)), int(rng.integers(1, 4))
        both = rng.random((2, samples, steps))
        if trial % 3 == 0:
            both = np.round(both * 4) / 4
        if trial % 7 == 0:
            both[0, rng.integers(0, samples), 0] = np.nan
        if trial % 11 == 0:
            both[1, :, -1] = np.inf
        np.testing.assert_array_equal(F._low_quantile(both), np.quantile(both, F.FLOOR_QUANTILE, axis=1))


def test_step_figures_with_floors_computed_together_equal_each_step_alone():
    """The callback computes the floors of a step's methods in one `bootstrap_floors` call and hands them to
    `step_figures`: the same figures as `step_figures` computing its own."""
    rng = np.random.default_rng(4)
    maps = np.abs(rng.normal(size=(2, 12, 9)))
    maps[1, :, :3] = 0.5  # tied values
    together = F.bootstrap_floors(maps, 5)
    previous, reference = maps[0].mean(axis=0)[::-1].copy(), maps[1].mean(axis=0)
    for i in range(2):
        floors = {name: float(values[i]) for name, values in together.items()}
        given = F.step_figures(maps[i], previous, reference, 5, floors=floors)
        alone = F.step_figures(maps[i], previous, reference, 5)
        assert list(given) == list(alone) and given == alone
