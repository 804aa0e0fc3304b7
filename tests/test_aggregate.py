"""tb_xai.aggregate: per-step importance, rank stability and method agreement on hand-checked arrays."""

import numpy as np
import pytest

from tb_xai import aggregate, metadata


def test_map_shape_drops_image_channels_only():
    assert aggregate.map_shape([28, 28, 3], metadata.IMAGE) == (28, 28)
    assert aggregate.map_shape([28, 28], metadata.IMAGE) == (28, 28)
    assert aggregate.map_shape([20], metadata.TABULAR) == (20,)
    assert aggregate.map_shape([10, 4], metadata.SEQUENCE) == (10, 4)


def test_to_maps_sums_channel_magnitudes_unless_signed():
    a = np.zeros((1, 2, 2, 2))
    a[0, 0, 0] = [1.0, -1.0]
    unsigned = aggregate.to_maps(a, (2, 2, 2), metadata.IMAGE, signed=False)
    signed = aggregate.to_maps(a, (2, 2, 2), metadata.IMAGE, signed=True)
    assert unsigned.shape == (1, 2, 2)
    assert unsigned[0, 0, 0] == 2.0  # opposite channels do not cancel
    assert signed[0, 0, 0] == 0.0


def test_to_maps_rejects_a_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        aggregate.to_maps(np.zeros((2, 4)), (3,), metadata.TABULAR, signed=False)


def test_feature_importance_means_magnitudes_or_signed_values():
    a = np.array([[[1.0, -2.0], [3.0, 2.0]], [[0.0, 4.0], [0.0, -4.0]]])  # 2 steps, 2 probes, 2 features
    unsigned, counts = aggregate.feature_importance(a)
    signed, _ = aggregate.feature_importance(a, signed=True)
    np.testing.assert_allclose(unsigned, [[2.0, 2.0], [0.0, 4.0]])
    np.testing.assert_allclose(signed, [[2.0, 0.0], [0.0, 0.0]])
    assert counts.tolist() == [2, 2]


def test_feature_importance_per_target_counts_only_matching_probes():
    a = np.array([[[1.0, 0.0], [0.0, 5.0], [3.0, 0.0]], [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]])
    targets = np.array([[0, 1, 0], [1, 1, 1]])
    importance, counts = aggregate.feature_importance(a, targets=targets, target=0)
    np.testing.assert_allclose(importance[0], [2.0, 0.0])
    assert np.isnan(importance[1]).all()  # no probe explained for class 0 at step 1
    assert counts.tolist() == [2, 0]


def test_feature_importance_of_images_is_a_per_step_map():
    a = np.ones((3, 4, 5, 6, 3))
    importance, counts = aggregate.feature_importance(a, modality=metadata.IMAGE)
    assert importance.shape == (3, 5, 6)
    np.testing.assert_allclose(importance, 3.0)
    assert counts.tolist() == [4, 4, 4]


def test_feature_importance_of_no_step_keeps_the_map_shape():
    importance, counts = aggregate.feature_importance(np.zeros((0, 4, 5, 6, 3)), modality=metadata.IMAGE)
    assert importance.shape == (0, 5, 6) and counts.shape == (0,)


def test_feature_importance_needs_targets_for_a_target():
    with pytest.raises(ValueError, match="target=1"):
        aggregate.feature_importance(np.zeros((1, 2, 3)), target=1)
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        aggregate.feature_importance(np.zeros((1, 2, 3)), targets=np.zeros((1, 3)), target=1)


def test_importance_order_uses_the_last_finite_step_by_magnitude():
    importance = np.array([[5.0, 0.0, 1.0], [0.1, -3.0, 2.0], [np.nan, np.nan, np.nan]])
    assert aggregate.importance_order(importance).tolist() == [1, 2, 0]


def test_rankdata_averages_ties():
    assert aggregate.rankdata(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]


def test_spearman_matches_known_values():
    assert aggregate.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert aggregate.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Pearson of the ranks [1, 2, 3, 4] and [2, 1, 4, 3]: 1 - 6 * 4 / (4 * 15)
    assert aggregate.spearman([1, 2, 3, 4], [0.2, 0.1, 0.4, 0.3]) == pytest.approx(0.6)
    assert np.isnan(aggregate.spearman([1, 1, 1], [1, 2, 3]))
    assert np.isnan(aggregate.spearman([1, np.nan, 3], [1, 2, 3]))


def test_top_k_overlap_counts_shared_indices():
    assert aggregate.top_k_overlap([5, 4, 3, 2, 1], [1, 4, 5, 2, 3], 2) == 0.5
    assert aggregate.top_k_overlap([5, 4, 3], [5, 4, 3], 10) == 1.0  # k clipped to the size
    with pytest.raises(ValueError, match="k=0"):
        aggregate.top_k([1, 2], 0)


def test_rank_stability_against_previous_and_last_step():
    importance = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    result = aggregate.rank_stability(importance, k=1)
    assert np.isnan(result["spearman_previous"][0]) and np.isnan(result["topk_previous"][0])
    np.testing.assert_allclose(result["spearman_previous"][1:], [-1.0, 1.0])
    np.testing.assert_allclose(result["topk_previous"][1:], [0.0, 1.0])
    np.testing.assert_allclose(result["spearman_last"], [-1.0, 1.0, 1.0])
    np.testing.assert_allclose(result["topk_last"], [0.0, 1.0, 1.0])
    assert result["k"] == 1


def test_rank_stability_marks_steps_without_probes_undefined():
    importance = np.array([[1.0, 2.0], [np.nan, np.nan], [1.0, 2.0]])
    result = aggregate.rank_stability(importance, k=5)
    assert result["k"] == 2
    assert np.isnan(result["spearman_previous"][1]) and np.isnan(result["spearman_previous"][2])
    assert result["spearman_last"][0] == pytest.approx(1.0)


def test_method_agreement_pairs_methods_on_common_steps():
    importances = {
        "saliency": (np.array([0, 1, 2]), np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])),
        "ig": (np.array([1, 2]), np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])),
    }
    (pair,) = aggregate.method_agreement(importances, k=1)
    assert pair["methods"] == ["ig", "saliency"]
    assert pair["steps"].tolist() == [1, 2]
    np.testing.assert_allclose(pair["spearman"], [1.0, -1.0])
    np.testing.assert_allclose(pair["topk"], [1.0, 0.0])


def test_method_agreement_rejects_misaligned_steps():
    with pytest.raises(ValueError, match="'ig'"):
        aggregate.method_agreement({"ig": (np.array([0, 1]), np.zeros((3, 2)))}, k=1)


def test_stack_steps_keeps_the_latest_shape_and_lists_the_steps_it_left_out():
    steps, values, dropped = aggregate.stack_steps({3: np.ones(4), 0: np.zeros(3), 1: np.zeros(4), 2: np.zeros(3)})
    assert steps.tolist() == [1, 3] and values.tolist() == [[0.0] * 4, [1.0] * 4] and dropped == [0, 2]
    steps, values, dropped = aggregate.stack_steps({})
    assert steps.dtype == np.int64 and steps.size == 0 and values.shape == (0,) and dropped == []


def test_align_targets_fills_missing_or_misshapen_steps_with_no_class():
    aligned = aggregate.align_targets(
        [0, 1, 2, 3], [0, 2, 3], [np.array([1, 0]), np.array([0, 1, 1]), np.array([1, 1])], probes=2
    )
    assert aligned.tolist() == [[1, 0], [-1, -1], [-1, -1], [1, 1]]  # step 1 not logged, step 2 for 3 probes
    assert aggregate.align_targets([0], [], [], probes=3).tolist() == [[-1, -1, -1]]


def test_agreement_by_shape_pairs_only_methods_whose_maps_have_one_shape():
    rng = np.random.default_rng(0)
    pixels = {m: (np.arange(3), rng.random((3, 4, 4))) for m in ("saliency", "ig")}
    cams = {m: (np.arange(3), rng.random((3, 2, 2))) for m in ("grad_cam", "cam")}
    pairs = aggregate.agreement_by_shape({**pixels, **cams}, k=2)
    assert [p["methods"] for p in pairs] == [["cam", "grad_cam"], ["ig", "saliency"]]
    expected = aggregate.method_agreement({m: (s, v.reshape(3, -1)) for m, (s, v) in pixels.items()}, k=2)
    np.testing.assert_array_equal(pairs[1]["spearman"], expected[0]["spearman"])
