"""GAN evaluation metrics shared by every vendor tree.

Standard metrics (need the upstream TorchScript detectors, given by path or URL): `fid`, `kid`,
`is`, `pr`, and StyleGAN2-ADA's names in STYLEGAN2_METRICS (`fid50k_full`, `kid50k_full`,
`is50k`, `pr50k3_full`). Non-standard metrics for the built-in digits data: `fid_digits`,
`kid_digits` (features of a small, cached digits classifier; not comparable with published FIDs),
`confident_digits` (share of samples the classifier puts in one class with p >= 0.9); these three accept the
built-in digits only (`check_digits_reference`, which a training loop can call at start-up).
The caller writes results to `metric-<name>.jsonl`.
"""
from .compute import compute_metric
from .detectors import INCEPTION_URL, VGG16_URL, TorchScriptDetector, load_detector
from .digits_data import check_digits_reference
from .digits_detector import DigitsDetector, load_digits_detector, train_digits_classifier
from .errors import MetricError
from .formulas import (
    feature_mean_cov,
    fid_from_features,
    frechet_distance,
    inception_score,
    inception_score_from_logits,
    kernel_inception_distance,
    precision_recall,
)
from .registry import METRICS, STYLEGAN2_METRICS, MetricSpec, get_metric_spec, list_metrics

__all__ = [
    "compute_metric", "check_digits_reference", "load_detector", "TorchScriptDetector", "INCEPTION_URL", "VGG16_URL",
    "DigitsDetector", "load_digits_detector", "train_digits_classifier", "MetricError",
    "feature_mean_cov", "fid_from_features", "frechet_distance", "inception_score",
    "inception_score_from_logits", "kernel_inception_distance", "precision_recall",
    "METRICS", "STYLEGAN2_METRICS", "MetricSpec", "get_metric_spec", "list_metrics",
]
