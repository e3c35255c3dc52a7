"""Metric formulas against independent references: closed forms, hand-computed cases, explicit loops."""
import itertools
import math

import numpy as np
import pytest

from vendor.common.metrics import (
    MetricError,
    feature_mean_cov,
    fid_from_features,
    frechet_distance,
    inception_score,
    inception_score_from_logits,
    kernel_inception_distance,
    precision_recall,
)


def _random_spd(rng, dim):
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


# ---------------------------------------------------------------- FID

def test_fid_of_1d_gaussians_matches_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    value = frechet_distance(np.array([1.5]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert value == pytest.approx((1.5 + 0.5) ** 2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_fid_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    var1, var2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_fid_of_general_gaussians_matches_symmetric_square_root_form():
    # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2); the right side is computed with eigh only.
    rng = np.random.default_rng(2)
    dim = 8
    s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    w, v = np.linalg.eigh(s1)
    s1_half = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(s1_half @ s2 @ s1_half)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.sum(np.sqrt(inner))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(3).standard_normal((300, 16))
    assert abs(fid_from_features(features, features)) < 1e-8


def test_fid_grows_with_mean_shift():
    rng = np.random.default_rng(4)
    features = rng.standard_normal((400, 4))
    shifted = features + np.array([3.0, 0.0, 0.0, 0.0])
    # Same covariance, so only the mean term remains: exactly 9.
    assert fid_from_features(features, shifted) == pytest.approx(9.0, rel=1e-8)


def test_feature_mean_cov_is_population_covariance():
    features = np.random.default_rng(5).standard_normal((50, 3))
    mean, cov = feature_mean_cov(features)
    np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False, bias=True), rtol=1e-12)


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(MetricError, match="sigma2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(MetricError, match="feature widths"):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(MetricError, match="NaN"):
        fid_from_features(np.full((5, 3), np.nan), np.zeros((5, 3)))


# ---------------------------------------------------------------- KID

def _mmd2_unbiased_double_loop(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, written as explicit sums over pairs."""
    m, d = len(x), x.shape[1]

    def kernel(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    kxx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2.0 * kxy


def test_kid_on_whole_sets_matches_double_loop():
    # With m = |real| = |gen| every subset is a permutation of the whole set; MMD^2 is permutation
    # invariant, so every subset gives the double-loop value.
    rng = np.random.default_rng(6)
    real, gen = rng.standard_normal((25, 5)), rng.standard_normal((25, 5)) + 0.3
    expected = _mmd2_unbiased_double_loop(gen, real)
    assert kernel_inception_distance(real, gen, num_subsets=3, max_subset_size=1000) == pytest.approx(expected, rel=1e-10)


def test_kid_with_subsets_matches_double_loop_average():
    # Subsets are drawn from default_rng(seed): generated first, then real, for each subset.
    rng = np.random.default_rng(7)
    real, gen = rng.standard_normal((40, 4)), rng.standard_normal((30, 4)) * 1.5
    num_subsets, subset_size, seed = 4, 12, 11
    draw = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = gen[draw.choice(len(gen), subset_size, replace=False)]
        y = real[draw.choice(len(real), subset_size, replace=False)]
        values.append(_mmd2_unbiased_double_loop(x, y))
    result = kernel_inception_distance(real, gen, num_subsets=num_subsets, max_subset_size=subset_size, seed=seed)
    assert result == pytest.approx(np.mean(values), rel=1e-10)


def test_kid_is_near_zero_for_same_distribution_and_larger_for_different():
    rng = np.random.default_rng(8)
    real = rng.standard_normal((200, 8))
    same = rng.standard_normal((200, 8))
    other = rng.standard_normal((200, 8)) + 1.0
    same_value = kernel_inception_distance(real, same, num_subsets=10)
    other_value = kernel_inception_distance(real, other, num_subsets=10)
    assert abs(same_value) < 0.1 * other_value


def test_kid_rejects_bad_input():
    with pytest.raises(MetricError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(MetricError, match="feature widths"):
        kernel_inception_distance(np.zeros((4, 3)), np.zeros((4, 2)))


# ---------------------------------------------------------------- IS

def test_inception_score_of_uniform_predictions_is_one():
    probs = np.full((100, 10), 0.1)
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_balanced_predictions_is_num_classes():
    num_classes = 10
    labels = np.arange(200) % num_classes  # every split of 20 holds each class exactly twice
    probs = np.eye(num_classes)[labels]
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(num_classes, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_matches_explicit_loop():
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((53, 6)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    num_splits = 4
    scores = []
    for split in range(num_splits):
        rows = probs[split * 53 // num_splits:(split + 1) * 53 // num_splits]
        marginal = [sum(row[c] for row in rows) / len(rows) for c in range(6)]
        kl = [sum(row[c] * (math.log(row[c]) - math.log(marginal[c])) for c in range(6)) for row in rows]
        scores.append(math.exp(sum(kl) / len(kl)))
    expected_mean = sum(scores) / num_splits
    expected_std = math.sqrt(sum((s - expected_mean) ** 2 for s in scores) / num_splits)
    mean, std = inception_score(probs, num_splits=num_splits)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert std == pytest.approx(expected_std, rel=1e-9)
    mean_l, std_l = inception_score_from_logits(logits, num_splits=num_splits)
    assert (mean_l, std_l) == pytest.approx((expected_mean, expected_std), rel=1e-9)


def test_inception_score_rejects_non_probabilities():
    with pytest.raises(MetricError, match="probabilities"):
        inception_score(np.ones((20, 4)), num_splits=2)
    with pytest.raises(MetricError, match="num_splits"):
        inception_score(np.full((5, 2), 0.5), num_splits=10)


# ---------------------------------------------------------------- precision / recall

def _brute_force_pr(real, gen, k):
    def radii(points):
        return [sorted(math.dist(p, q) for q in points)[k] for p in points]  # index k skips self at 0

    def share_inside(probes, manifold):
        r = radii(manifold)
        inside = [any(math.dist(p, q) <= r[j] for j, q in enumerate(manifold)) for p in probes]
        return sum(inside) / len(probes)

    return share_inside(gen, real), share_inside(real, gen)


def test_precision_recall_hand_computed_case():
    # k = 1. Real 1-NN radii: (0,0)->2, (2,0)->2, (10,0)->3, (13,0)->3.
    # Generated: (1,0) inside; (4,0) at distance 2 from (2,0) (boundary, counts); (7,0) at 3 from
    # (10,0) (boundary); (20,0) and (5,5) outside -> precision 3/5.
    # Generated 1-NN radii: (1,0)->3, (4,0)->3, (7,0)->3, (20,0)->13, (5,5)->sqrt(26); every real
    # point falls in one of these balls -> recall 1.
    real = np.array([[0, 0], [2, 0], [10, 0], [13, 0]], dtype=float)
    gen = np.array([[1, 0], [4, 0], [7, 0], [20, 0], [5, 5]], dtype=float)
    precision, recall = precision_recall(real, gen, k=1)
    assert precision == pytest.approx(3 / 5)
    assert recall == pytest.approx(1.0)


def test_precision_recall_matches_brute_force_with_k3():
    rng = np.random.default_rng(10)
    real = rng.standard_normal((60, 3))
    gen = rng.standard_normal((45, 3)) * 1.7 + 0.8
    expected = _brute_force_pr(real.tolist(), gen.tolist(), k=3)
    assert precision_recall(real, gen, k=3, row_batch=16) == pytest.approx(expected, abs=1e-12)


def test_precision_recall_of_disjoint_clusters_is_zero_and_identical_sets_one():
    grid = np.array(list(itertools.product(range(5), range(5))), dtype=float)
    assert precision_recall(grid, grid + 100.0, k=3) == (0.0, 0.0)
    assert precision_recall(grid, grid.copy(), k=3) == (1.0, 1.0)


def test_precision_recall_needs_more_than_k_samples():
    with pytest.raises(MetricError, match="k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
