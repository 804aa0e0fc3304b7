"""The seed, sanity and noise-floor figures against hand computations on small arrays (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tb_xai import aggregate, findings as F, quality as Q


def test_seed_figures_by_hand():
    # Two probes, three features. Probe 0's two maps rank alike, probe 1's are reversed.
    first = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    second = np.array([[6.0, 4.0, 2.0], [3.0, 2.0, 1.0]])
    out = Q.seed_figures(first, second, k=1)
    assert out["seed_spearman"] == pytest.approx((1.0 + -1.0) / 2)
    # Importances a = (2, 2, 2), b = (4.5, 3, 1.5): b's top feature is 0, graded 2 by a; a's best is 2.
    assert out["seed_ndcg"] == pytest.approx(1.0)
    assert out["seed_noise"] == pytest.approx(math.sqrt(((2.5 ** 2) + 1 ** 2 + 0.5 ** 2) / 3 / 2))
    # Identical seeds: no noise at all.
    same = Q.seed_figures(first, first, k=2)
    assert same == {"seed_spearman": pytest.approx(1.0), "seed_ndcg": pytest.approx(1.0), "seed_noise": 0.0}
    # A constant map has no ranking: it does not count in the mean.
    constant = Q.seed_figures(np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]]), np.array([[1.0, 2.0, 3.0]] * 2), k=1)
    assert constant["seed_spearman"] == pytest.approx(-1.0)


def test_sanity_figures_by_hand():
    reference = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    maps = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 1.0, 3.0]])
    # Spearman per probe: 1, -1, 0.5; probe 1 is now explained for another class and does not count.
    out = Q.sanity_figures(reference, maps, np.array([True, False, True]))
    assert out == {"sanity_spearman": pytest.approx((1.0 + 0.5) / 2)}
    assert Q.sanity_figures(reference, maps, np.array([False, False, False])) == {}
    assert Q.sanity_figures(reference, maps[:2], np.array([True, True])) == {}  # another probe set
    assert Q.sanity_figures(np.ones((2, 3)), np.ones((2, 3)), np.array([True, True])) == {}  # saturated


def test_the_bootstrap_floor_of_two_probes_is_the_farther_single_probe():
    # Resampling 2 probes gives (a, a), (a, b) or (b, b), each pair of one kind a quarter of the time or more,
    # so the 5% quantile is the worse of the rankings of a alone and of b alone against the mean.
    a, b = np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, 4.0, 3.0])
    mean = (a + b) / 2
    floor = F.bootstrap_floor(np.stack([a, b]), k=2)
    assert floor["spearman_floor"] == pytest.approx(min(aggregate.spearman(mean, a), aggregate.spearman(mean, b)))
    assert floor["ndcg_floor"] == pytest.approx(min(F.ndcg_at_k(mean, a, 2), F.ndcg_at_k(mean, b, 2)))


def test_every_logged_figure_has_a_label_and_a_scalar_tag():
    figures = [f for names in Q.FIGURES.values() for f in names]
    assert sorted(Q.LABELS) == sorted(figures)
    labels = Q.figure_labels(5)
    assert labels["ndcg_reference"] == "nDCG@5 vs the reference step"
    assert all("{" not in label for label in labels.values())
    for figure in figures:
        assert Q.parse_scalar_tag(Q.scalar_tag("integrated_gradients", figure)) == ("integrated_gradients", figure)
