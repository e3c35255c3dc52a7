"""The metric formulas, in float64, on feature arrays (no networks here).

Each function follows the definition used by StyleGAN2-ADA's metrics so that numbers are comparable
with published tables:
- FID: Heusel et al. 2017; population covariance (divide by N), real part of sqrtm(S1 S2).
- KID: Binkowski et al. 2018; unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3,
  averaged over random subsets of at most `max_subset_size` samples.
- IS: Salimans et al. 2016; exp(E_x KL(p(y|x) || p(y))) per split, mean and std over splits.
- Precision / recall: Kynkaanniemi et al. 2019; k-NN balls around each sample of one set,
  fraction of the other set's samples that fall in at least one ball (distance <= radius).
"""
import warnings

import numpy as np
import scipy.linalg
import scipy.special
import torch

from .errors import MetricError


def _as_feature_matrix(features, argument: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise MetricError(f"{argument} must be a non-empty 2-D array [num_samples, num_features], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise MetricError(f"{argument} contains NaN or infinite values")
    return array


def feature_mean_cov(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population covariance (divide by N, as upstream's FeatureStats) in float64."""
    array = _as_feature_matrix(features, "features")
    mean = array.mean(axis=0)
    centered = array - mean
    cov = centered.T @ centered / array.shape[0]
    return mean, cov


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), the Frechet distance of two Gaussians."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    dim = mu1.shape[0] if mu1.ndim == 1 else -1
    for name, value, shape in (("mu2", mu2, (dim,)), ("sigma1", sigma1, (dim, dim)), ("sigma2", sigma2, (dim, dim))):
        if dim < 1 or value.shape != shape:
            raise MetricError(f"frechet_distance: {name} has shape {value.shape}, expected {shape} to match mu1 {mu1.shape}")
    mean_term = float(np.sum(np.square(mu1 - mu2)))
    with warnings.catch_warnings():
        # Dead feature units make the product singular; sqrtm still returns the right root for a PSD
        # product (checked below for finiteness), so its "singular" warning is noise here.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(root)):
        # A singular product (fewer samples than dimensions) can break the Schur iteration; a tiny
        # diagonal offset keeps the result finite and changes it far below any reported precision.
        offset = np.eye(dim) * 1e-6
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2.0 * root)))


def fid_from_features(features1, features2) -> float:
    mu1, sigma1 = feature_mean_cov(features1)
    mu2, sigma2 = feature_mean_cov(features2)
    if mu1.shape != mu2.shape:
        raise MetricError(f"feature widths differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def _cubic_kernel(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    gram = a @ b.T
    gram /= dim
    gram += 1.0
    return gram * gram * gram  # ten times faster than ** 3, which goes through pow()


def kernel_inception_distance(real_features, gen_features, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, averaged over `num_subsets` random subsets.

    Both sets are subsampled without replacement to m = min(|real|, |gen|, max_subset_size);
    the subsets come from a seeded generator so a repeated call gives the same number.
    """
    real = _as_feature_matrix(real_features, "real_features")
    gen = _as_feature_matrix(gen_features, "gen_features")
    if real.shape[1] != gen.shape[1]:
        raise MetricError(f"feature widths differ: real {real.shape[1]} vs gen {gen.shape[1]}")
    if num_subsets < 1 or max_subset_size < 2:
        raise MetricError(f"num_subsets must be >= 1 and max_subset_size >= 2 (got {num_subsets}, {max_subset_size})")
    dim = real.shape[1]
    subset_size = min(real.shape[0], gen.shape[0], max_subset_size)
    if subset_size < 2:
        raise MetricError("KID needs at least 2 real and 2 generated samples")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], subset_size, replace=False)]
        y = real[rng.choice(real.shape[0], subset_size, replace=False)]
        within = _cubic_kernel(x, x, dim) + _cubic_kernel(y, y, dim)
        across = _cubic_kernel(x, y, dim)
        # Off-diagonal mean of the within-set kernels (unbiased), minus twice the cross mean.
        total += (within.sum() - np.trace(within)) / (subset_size - 1) - 2.0 * across.sum() / subset_size
    return float(total / num_subsets / subset_size)


def inception_score(probabilities, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) over splits of exp(mean_x KL(p(y|x) || p(y))); p(y) is the split's mean.

    `probabilities` are class probabilities [N, num_classes] (rows sum to 1). Terms with p = 0 count
    as 0 (the limit of p log p), so exactly one-hot predictions are allowed.
    """
    probs = _as_feature_matrix(probabilities, "probabilities")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise MetricError("probabilities must be non-negative with rows summing to 1 (use inception_score_from_logits for logits)")
    count = probs.shape[0]
    if not 1 <= num_splits <= count:
        raise MetricError(f"num_splits must be between 1 and the number of samples ({count}), got {num_splits}")
    scores = []
    for split in range(num_splits):
        part = probs[split * count // num_splits:(split + 1) * count // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl_per_sample = scipy.special.rel_entr(part, np.broadcast_to(marginal, part.shape)).sum(axis=1)
        scores.append(np.exp(kl_per_sample.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_from_logits(logits, num_splits: int = 10) -> tuple[float, float]:
    """Inception score from unnormalised logits (a float64 softmax first)."""
    logits = _as_feature_matrix(logits, "logits")
    return inception_score(scipy.special.softmax(logits, axis=1), num_splits)


def _pairwise_distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    # Expanded form |a|^2 + |b|^2 - 2ab runs as one matrix product; in float64 the rounding error is
    # far below the spacing of real feature distances (and exact for small integer coordinates).
    squared = (rows * rows).sum(1, keepdim=True) + (cols * cols).sum(1)[None, :] - 2.0 * rows @ cols.T
    return squared.clamp_min_(0.0).sqrt_()


def _kth_neighbour_radii(manifold: torch.Tensor, k: int, row_batch: int) -> torch.Tensor:
    radii = []
    for start in range(0, manifold.shape[0], row_batch):
        distances = _pairwise_distances(manifold[start:start + row_batch], manifold)
        # k + 1 because every point is its own nearest neighbour at distance 0.
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _fraction_inside(probes: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, row_batch: int) -> float:
    inside = 0
    for start in range(0, probes.shape[0], row_batch):
        distances = _pairwise_distances(probes[start:start + row_batch], manifold)
        inside += int((distances <= radii[None, :]).any(dim=1).sum())
    return inside / probes.shape[0]


def precision_recall(real_features, gen_features, k: int = 3, row_batch: int = 256,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """(precision, recall) with k-NN manifolds: precision = share of generated samples inside the real
    manifold, recall = share of real samples inside the generated manifold."""
    real = _as_feature_matrix(real_features, "real_features")
    gen = _as_feature_matrix(gen_features, "gen_features")
    if real.shape[1] != gen.shape[1]:
        raise MetricError(f"feature widths differ: real {real.shape[1]} vs gen {gen.shape[1]}")
    if k < 1 or min(real.shape[0], gen.shape[0]) <= k:
        raise MetricError(f"precision/recall with k={k} needs more than k samples in each set "
                          f"(real {real.shape[0]}, gen {gen.shape[0]})")
    real_t = torch.from_numpy(real).to(device)
    gen_t = torch.from_numpy(gen).to(device)
    results = []
    for manifold, probes in ((real_t, gen_t), (gen_t, real_t)):
        radii = _kth_neighbour_radii(manifold, k, row_batch)
        results.append(_fraction_inside(probes, manifold, radii, row_batch))
    return results[0], results[1]
