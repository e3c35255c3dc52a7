"""compute_metric: one entry point for every vendor tree's evaluation.

Reference-set statistics (mean/covariance for FID, all features for KID and precision/recall) are
cached in `cache_dir` under a key hashing (dataset images, detector identity, metric computation),
so periodic evaluation during training only pays for the generated samples.
"""
import os
import re

import numpy as np
import torch

from . import formulas
from .cache import load_arrays, resolve_cache_dir, save_arrays, text_sha256
from .detectors import load_detector, resolve_detector_file
from .digits_data import check_digits_reference
from .digits_detector import confident_share, load_digits_detector
from .errors import MetricError
from .features import ReferenceImages, generator_features, image_array_features, make_feature_fn
from .registry import MetricSpec, get_metric_spec

_DETECTOR_NAMES = {"inception": "the Inception detector (inception-2015-12-05.pt)", "vgg16": "the VGG16 detector (vgg16.pt)"}

# Loaded detectors by (file, modification time, size, device): evaluation every few ticks must not
# re-read a 100 MB TorchScript file each time.
_loaded_detectors: dict[tuple, object] = {}


def _file_key(path) -> tuple:
    stat = os.stat(path)
    return str(os.path.abspath(path)), stat.st_mtime_ns, stat.st_size


def _get_detector(spec: MetricSpec, detector, cache_dir, device):
    if spec.space == "digits":  # compute_metric has refused a detector argument for these already
        loaded = load_digits_detector(cache_dir)
        key = ("digits",) + _file_key(loaded.path) + (str(device),)
        return _loaded_detectors.setdefault(key, loaded.to(device))
    if detector is None:
        raise MetricError(f"detector is required for this metric: pass the path or URL of {_DETECTOR_NAMES[spec.space]}")
    path = resolve_detector_file(detector, cache_dir)
    key = ("torchscript",) + _file_key(path) + (str(device),)
    if key not in _loaded_detectors:
        _loaded_detectors[key] = load_detector(path, cache_dir, device=device)
    return _loaded_detectors[key]


def _stats_cache_path(cache_dir, dataset, images: ReferenceImages, detector, spec: MetricSpec, mode: str):
    """Cache file for one (dataset content, detector, computation) triple; the name stays readable."""
    computation = f"{spec.kind}|{spec.space}|{mode}|max_real={spec.max_real}"
    key = text_sha256(f"{images.sha256()}|{detector.detector_id}|{computation}")[:20]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(dataset, "name", "dataset")))[:64] or "dataset"
    return resolve_cache_dir(cache_dir) / "metric-stats" / f"{name}-{detector.detector_id}-{spec.kind}-{mode}-{key}.npz"


def _reference_statistics(dataset, images: ReferenceImages, spec: MetricSpec, detector, feature_fn, mode: str,
                          batch, device, cache_dir):
    """mode 'mean_cov' -> {'mu', 'sigma'}; mode 'features' -> {'features'}; cached either way."""
    path = _stats_cache_path(cache_dir, dataset, images, detector, spec, mode)
    keys = ("mu", "sigma") if mode == "mean_cov" else ("features",)
    if path.is_file():
        return load_arrays(path, keys)
    features = image_array_features(images, batch, feature_fn, device)
    if mode == "mean_cov":
        mu, sigma = formulas.feature_mean_cov(features)
        stats = {"mu": mu, "sigma": sigma}
    else:
        # Detector outputs are float32 already; storing them as float32 halves the file at no loss.
        stats = {"features": features.astype(np.float32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_arrays(path, **stats)
    return stats


def _check_arguments(num_gen, batch):
    if num_gen is not None and (not isinstance(num_gen, int) or num_gen < 2):
        raise MetricError(f"num_gen must be an integer >= 2, got {num_gen!r}")
    if not isinstance(batch, int) or batch < 1:
        raise MetricError(f"batch must be a positive integer, got {batch!r}")


def compute_metric(name: str, G_sample, dataset, num_gen: int | None = None, batch: int = 64,
                   device: str | torch.device = "cpu", detector=None, cache_dir=None) -> dict:
    """Evaluate metric `name` for a generator.

    G_sample(n) -> float Tensor [n, C, H, W] in [-1, 1]; `dataset` provides `.images_uint8()`
    (and `.name` for readable cache file names); the digits metrics accept the built-in digits only
    (digits_data.py). `detector` is the path or URL of the upstream
    TorchScript file for the standard metrics (Inception for fid/kid/is, VGG16 for pr) and must be
    None for fid_digits / kid_digits. Returns {result_key: float} (see registry.py for the keys).
    """
    spec = get_metric_spec(name)
    _check_arguments(num_gen, batch)
    if spec.space == "digits":  # the digits classifier's numbers mean something on the built-in digits only
        if detector is not None:
            raise MetricError("detector must be None for the digits metrics: they use the built-in digits classifier")
        check_digits_reference(name, dataset)
    # The dataset is checked before any detector loads or generator runs: the cheap failure comes first.
    # The Inception score needs no reference set (upstream reads the dataset only for labels).
    images = None if spec.kind in ("is", "confident") else ReferenceImages(dataset, spec.max_real)
    if num_gen is None:
        num_gen = spec.num_gen if spec.num_gen is not None else len(images)
    detector_obj = _get_detector(spec, detector, cache_dir, device)
    feature_fn = make_feature_fn(spec.kind, spec.space, detector_obj)

    if spec.kind == "confident":  # digits classifier probabilities, no reference set
        probabilities = generator_features(G_sample, num_gen, batch, detector_obj.probabilities, device)
        return {spec.result_keys[0]: confident_share(torch.from_numpy(probabilities))}

    if spec.kind == "is":
        probabilities = generator_features(G_sample, num_gen, batch, feature_fn, device)
        values = formulas.inception_score(probabilities, spec.num_splits)
        return {key: float(value) for key, value in zip(spec.result_keys, values)}

    # Reference statistics are written only after G_sample has proved to work, so a failing call
    # leaves the cache as it was.
    generated = generator_features(G_sample, num_gen, batch, feature_fn, device)
    mode = "mean_cov" if spec.kind == "fid" else "features"
    reference = _reference_statistics(dataset, images, spec, detector_obj, feature_fn, mode, batch, device, cache_dir)
    if spec.kind == "fid":
        mu, sigma = formulas.feature_mean_cov(generated)
        values = (formulas.frechet_distance(mu, sigma, reference["mu"], reference["sigma"]),)
    elif spec.kind == "kid":
        values = (formulas.kernel_inception_distance(reference["features"], generated,
                                                     spec.num_subsets, spec.max_subset_size),)
    elif spec.kind == "pr":
        values = formulas.precision_recall(reference["features"], generated, spec.nhood_size, device=device)
    else:  # registry and this dispatch must agree; reaching here is a programming error
        raise MetricError(f"metric kind {spec.kind!r} has no implementation")
    return {key: float(value) for key, value in zip(spec.result_keys, values)}
