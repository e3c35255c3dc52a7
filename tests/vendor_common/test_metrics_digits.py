"""The non-standard digits detector (accuracy, determinism, cache) and fid_digits / kid_digits end to end.

The classifier is trained twice in this file (once by the shared fixture, once for determinism),
about 10 s each on one CPU thread.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from vendor.common.datasets import load_dataset
from vendor.common.metrics import MetricError, compute_metric, load_digits_detector
from vendor.common.metrics import digits_detector as digits_module


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("digits-cache")
    load_digits_detector(cache_dir, verbose=False)  # trains once; every test below reuses it
    return cache_dir


def _digits_uint8_32px():
    """sklearn digits as uint8 [N, 1, 32, 32], built here independently of the detector's own loader."""
    bunch = load_digits()
    small = torch.from_numpy(bunch.images).to(torch.float32)[:, None] / 16.0
    large = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    return (large.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), bunch.target


class _Images:
    def __init__(self, images, name="digits"):
        self._images, self.name, self.resolution = images, name, images.shape[-1]

    def __len__(self):
        return len(self._images)

    def images_uint8(self):
        return self._images


class _Cycle:
    """G_sample returning the given [-1, 1] images in order, wrapping around; counts images served."""

    def __init__(self, images):
        self.images, self.served = images, 0

    def __call__(self, n):
        index = torch.arange(self.served, self.served + n) % len(self.images)
        self.served += n
        return self.images[index]


def test_heldout_accuracy_is_at_least_95_percent(digits_cache):
    detector = load_digits_detector(digits_cache, verbose=False)
    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8))[:, None]
    train_idx, heldout_idx = digits_module.heldout_split(len(bunch.target))
    assert len(set(train_idx) & set(heldout_idx)) == 0
    assert len(heldout_idx) == round(0.2 * len(bunch.target))
    with torch.no_grad():
        logits = detector.model(digits_module.to_classifier_input(images[heldout_idx]))
    accuracy = (logits.argmax(1).numpy() == bunch.target[heldout_idx]).mean()
    assert accuracy >= 0.95


def test_training_is_deterministic_and_restores_torch_settings(digits_cache):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    model, _ = digits_module.train_digits_classifier(verbose=False)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    cached = torch.load(digits_module.classifier_cache_path(digits_cache), weights_only=True)["state_dict"]
    fresh = model.state_dict()
    assert cached.keys() == fresh.keys()
    for key in cached:
        assert torch.equal(cached[key], fresh[key]), key


def test_cached_classifier_is_reused_without_training(digits_cache, monkeypatch):
    path = digits_module.classifier_cache_path(digits_cache)
    before = path.stat().st_mtime_ns

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached classifier must not be retrained")

    monkeypatch.setattr(digits_module, "train_digits_classifier", must_not_train)
    first = load_digits_detector(digits_cache, verbose=False)
    second = load_digits_detector(digits_cache, verbose=False)
    assert first.detector_id == second.detector_id
    assert path.stat().st_mtime_ns == before


def test_corrupt_cached_classifier_is_reported_by_file_name(tmp_path):
    path = digits_module.classifier_cache_path(tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(MetricError, match=path.name):
        load_digits_detector(tmp_path, verbose=False)


def test_features_have_unit_rms_over_the_training_digits(digits_cache):
    detector = load_digits_detector(digits_cache, verbose=False)
    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8))[:, None]
    train_idx, _ = digits_module.heldout_split(len(bunch.target))
    features = detector(images[train_idx]).to(torch.float64)
    assert float(features.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-4)


def test_features_are_128d_and_colour_or_size_do_not_matter_for_grey_input(digits_cache):
    detector = load_digits_detector(digits_cache, verbose=False)
    grey = torch.from_numpy(_digits_uint8_32px()[0][:16])
    features = detector(grey)
    assert features.shape == (16, 128)
    torch.testing.assert_close(detector(grey.repeat(1, 3, 1, 1)), features, atol=1e-4, rtol=1e-4)
    with pytest.raises(MetricError, match="uint8"):
        detector(grey.float())


def test_fid_and_kid_digits_rank_real_digits_above_degraded_and_noise(digits_cache):
    # the digits as the data loader gives them: the digits metrics accept no other reference set
    images = load_dataset("digits", resolution=32, channels=1).images_uint8()
    # 300 reference and 300 held-back digits keep KID's 100 subsets cheap on two shared cores.
    dataset = _Images(images[0:600:2])
    held_back = torch.from_numpy(images[1:600:2]).to(torch.float32) / 127.5 - 1.0
    noise_gen = torch.Generator().manual_seed(0)
    degraded = (held_back + 0.8 * torch.randn(held_back.shape, generator=noise_gen)).clamp(-1, 1)
    noise = torch.rand(held_back.shape, generator=noise_gen) * 2 - 1

    scores = {}
    for metric in ("fid_digits", "kid_digits"):
        for label, bank in (("real", held_back), ("degraded", degraded), ("noise", noise)):
            sampler = _Cycle(bank)
            result = compute_metric(metric, sampler, dataset, batch=128, cache_dir=digits_cache)
            assert set(result) == {metric}
            assert sampler.served == len(dataset)  # num_gen defaults to the dataset size
            scores[metric, label] = result[metric]
    for metric in ("fid_digits", "kid_digits"):
        assert scores[metric, "real"] < scores[metric, "degraded"] < scores[metric, "noise"], scores
