"""TorchScript detector loading (path / URL / cache) and compute_metric for the standard metrics.

No real detector is downloaded: a tiny TorchScript module with upstream's calling convention is
saved into tmp_path; urlopen is replaced so that any network attempt fails.
"""
import io
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vendor.common.metrics import (
    STYLEGAN2_METRICS,
    MetricError,
    compute_metric,
    fid_from_features,
    inception_score,
    kernel_inception_distance,
    load_detector,
    precision_recall,
)
from vendor.common.metrics.features import generated_to_uint8


class _TinyInception(torch.nn.Module):
    """Upstream's convention: uint8 [N, 3, H, W]; return_features -> features, else softmax probs."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.proj_weight = torch.nn.Parameter(torch.randn(12, 3 * 2 * 2, generator=generator))
        self.head_weight = torch.nn.Parameter(torch.randn(5, 12, generator=generator))
        self.head_bias = torch.nn.Parameter(torch.randn(5, generator=generator) * 3.0)

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        if img.dtype != torch.uint8 or img.shape[1] != 3:
            raise ValueError("expected uint8 [N, 3, H, W]")
        x = F.adaptive_avg_pool2d(img.to(torch.float32) / 255.0, 2).flatten(1)
        features = torch.tanh(x @ self.proj_weight.t() * 2.0 - 1.0)
        if return_features:
            return features
        logits = features @ self.head_weight.t()
        if not no_output_bias:
            logits = logits + self.head_bias
        return torch.softmax(logits, dim=1)


class _Images:
    """Minimal stand-in for vendor.common.datasets.ImageDataset."""

    def __init__(self, images: np.ndarray, name: str = "tiny"):
        self._images, self.name, self.resolution = images, name, images.shape[-1]

    def __len__(self):
        return len(self._images)

    def images_uint8(self):
        return self._images


class _Bank:
    """G_sample that hands out a fixed bank of images in order, remembering the batch sizes asked."""

    def __init__(self, images: torch.Tensor):
        self.images, self.position, self.requests = images, 0, []

    def __call__(self, n):
        self.requests.append(n)
        out = self.images[self.position:self.position + n]
        self.position += n
        return out


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("detector") / "tiny-inception.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # TorchScript is upstream's detector format
        torch.jit.script(_TinyInception()).save(str(path))
    return path


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_urlopen = urllib.request.urlopen

    def offline_urlopen(url, *args, **kwargs):
        address = url if isinstance(url, str) else url.full_url
        if not address.startswith("file:"):
            raise urllib.error.URLError("network disabled in tests")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)


def _grey_images(seed, count, size=8):
    return np.random.default_rng(seed).integers(0, 256, (count, 1, size, size), dtype=np.uint8)


def _reference_features(module, images_uint8: np.ndarray, **kwargs) -> np.ndarray:
    x = torch.from_numpy(images_uint8)
    x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
    with torch.no_grad():
        return module(x, **kwargs).to(torch.float64).numpy()


def _generated(seed, count, size=8):
    return torch.rand(count, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2.4 - 1.2


# ---------------------------------------------------------------- conversion and loading

def test_generated_images_convert_like_upstream():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 0.999, 1.0, 2.0])
    expected = np.clip(x.numpy().astype(np.float64) * 127.5 + 128.0, 0, 255).astype(np.uint8)  # truncates
    assert generated_to_uint8(x).numpy().tolist() == expected.tolist()
    assert expected.tolist() == [0, 0, 64, 128, 191, 255, 255, 255]


def test_load_detector_by_path_runs_the_torchscript_module(detector_file):
    detector = load_detector(str(detector_file), cache_dir=None)
    images = torch.from_numpy(_grey_images(0, 4)).repeat(1, 3, 1, 1)
    expected = _TinyInception()(images, return_features=True)
    torch.testing.assert_close(detector(images, return_features=True), expected)
    assert detector.sha256 and detector.path == detector_file


def test_missing_local_detector_names_the_file(tmp_path):
    with pytest.raises(MetricError, match="nothere.pt"):
        load_detector(str(tmp_path / "nothere.pt"), cache_dir=tmp_path)


def test_non_torchscript_file_is_rejected_with_its_name(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(MetricError, match="garbage.pt"):
        load_detector(str(bad), cache_dir=tmp_path)


def test_url_not_in_cache_without_network_gives_one_clear_error(tmp_path):
    url = "https://example.invalid/metrics/inception-2015-12-05.pt"
    with pytest.raises(MetricError, match="could not be downloaded") as info:
        load_detector(url, cache_dir=tmp_path)
    assert url in str(info.value)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_url_is_downloaded_once_into_cache_and_reused(tmp_path, detector_file, monkeypatch):
    url = detector_file.resolve().as_uri()  # file:// exercises the download path without a network
    first = load_detector(url, cache_dir=tmp_path / "cache")
    assert first.path.parent == tmp_path / "cache" / "downloads"
    assert first.path.read_bytes() == detector_file.read_bytes()

    def must_not_download(*args, **kwargs):
        raise AssertionError("a cached URL must not be downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", must_not_download)
    second = load_detector(url, cache_dir=tmp_path / "cache")
    assert second.path == first.path and second.sha256 == first.sha256
    assert sorted(p.name for p in (tmp_path / "cache" / "downloads").iterdir()) == [first.path.name]


def test_interrupted_download_leaves_nothing_in_cache(tmp_path, monkeypatch):
    class BrokenStream(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise OSError("connection reset")
            return super().read(4)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: BrokenStream(b"partial-content"))
    with pytest.raises(MetricError, match="connection reset"):
        load_detector("https://example.invalid/vgg16.pt", cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------- compute_metric (standard metrics)

def test_fid_pipeline_matches_manual_features(tmp_path, detector_file):
    real = _grey_images(1, 40)
    fake = _generated(2, 37)
    bank = _Bank(fake)
    result = compute_metric("fid", bank, _Images(real), num_gen=37, batch=8,
                            detector=str(detector_file), cache_dir=tmp_path)
    module = _TinyInception()
    expected = fid_from_features(_reference_features(module, real, return_features=True),
                                 _reference_features(module, generated_to_uint8(fake).numpy(), return_features=True))
    assert set(result) == {"fid"}
    assert result["fid"] == pytest.approx(expected, rel=1e-6)
    assert bank.requests == [8, 8, 8, 8, 5]


def test_reference_statistics_are_cached_and_used(tmp_path, detector_file):
    real = _grey_images(3, 30)
    fake = _generated(4, 30)
    dataset = _Images(real)
    first = compute_metric("fid", _Bank(fake), dataset, num_gen=30, detector=str(detector_file), cache_dir=tmp_path)
    stats_files = list((tmp_path / "metric-stats").glob("*.npz"))
    assert len(stats_files) == 1

    # Shift the cached mean: the next result must follow the file, proving it is read, not recomputed.
    with np.load(stats_files[0]) as archive:
        mu, sigma = archive["mu"], archive["sigma"]
    np.savez(stats_files[0], mu=mu + 0.5, sigma=sigma)
    module = _TinyInception()
    gen_features = _reference_features(module, generated_to_uint8(fake).numpy(), return_features=True)
    gen_mu = gen_features.mean(axis=0)
    expected_shift = np.sum((gen_mu - mu - 0.5) ** 2) - np.sum((gen_mu - mu) ** 2)
    second = compute_metric("fid", _Bank(fake), dataset, num_gen=30, detector=str(detector_file), cache_dir=tmp_path)
    assert second["fid"] - first["fid"] == pytest.approx(expected_shift, rel=1e-6)

    # Different images -> a different key, a second file.
    compute_metric("fid", _Bank(fake), _Images(_grey_images(5, 30)), num_gen=30,
                   detector=str(detector_file), cache_dir=tmp_path)
    assert len(list((tmp_path / "metric-stats").glob("*.npz"))) == 2


def test_kid_is_and_pr_pipelines_match_manual_computation(tmp_path, detector_file):
    real = _grey_images(6, 36)
    fake = _generated(7, 30)
    module = _TinyInception()
    real_features = _reference_features(module, real, return_features=True)
    gen_uint8 = generated_to_uint8(fake).numpy()
    gen_features = _reference_features(module, gen_uint8, return_features=True)
    kwargs = dict(num_gen=30, batch=7, detector=str(detector_file), cache_dir=tmp_path)

    kid = compute_metric("kid", _Bank(fake), _Images(real), **kwargs)
    assert kid["kid"] == pytest.approx(kernel_inception_distance(real_features, gen_features), rel=1e-5)

    probs = _reference_features(module, gen_uint8, no_output_bias=True)
    is_mean, is_std = inception_score(probs, num_splits=10)
    result_is = compute_metric("is", _Bank(fake), _Images(real), **kwargs)
    assert result_is == pytest.approx({"is_mean": is_mean, "is_std": is_std}, rel=1e-6)

    precision, recall = precision_recall(real_features, gen_features, k=3)
    result_pr = compute_metric("pr", _Bank(fake), _Images(real), **kwargs)
    assert result_pr == pytest.approx({"precision": precision, "recall": recall})


def test_stylegan2_names_carry_upstream_sample_counts_and_keys(tmp_path, detector_file):
    # Upstream metric_main.py: fid50k_full (all reals, 50k gen), kid50k_full (1M reals max,
    # 100 subsets of 1000), is50k (10 splits), pr50k3_full (200k reals max, k = 3).
    # fid50k / kid50k / pr50k3: the same with at most 50k reals.
    assert {name: spec.num_gen for name, spec in STYLEGAN2_METRICS.items()} == dict.fromkeys(
        ["fid50k_full", "kid50k_full", "is50k", "pr50k3_full", "fid50k", "kid50k", "pr50k3"], 50000)
    assert STYLEGAN2_METRICS["fid50k_full"].max_real is None
    assert all(STYLEGAN2_METRICS[n].max_real == 50000 for n in ("fid50k", "kid50k", "pr50k3"))
    assert STYLEGAN2_METRICS["pr50k3"].nhood_size == 3 and STYLEGAN2_METRICS["kid50k"].num_subsets == 100
    kid = STYLEGAN2_METRICS["kid50k_full"]
    assert (kid.max_real, kid.num_subsets, kid.max_subset_size) == (1000000, 100, 1000)
    assert STYLEGAN2_METRICS["is50k"].num_splits == 10
    pr = STYLEGAN2_METRICS["pr50k3_full"]
    assert (pr.max_real, pr.nhood_size, pr.space) == (200000, 3, "vgg16")
    assert STYLEGAN2_METRICS["is50k"].result_keys == ("is50k_mean", "is50k_std")

    real, fake = _grey_images(8, 20), _generated(9, 20)
    kwargs = dict(num_gen=20, detector=str(detector_file), cache_dir=tmp_path)
    short = compute_metric("fid", _Bank(fake), _Images(real), **kwargs)
    upstream = compute_metric("fid50k_full", _Bank(fake), _Images(real), **kwargs)
    assert upstream == {"fid50k_full": short["fid"]}


def test_bad_requests_fail_with_one_clear_error(tmp_path, detector_file):
    dataset, bank = _Images(_grey_images(10, 10)), _Bank(_generated(11, 10))
    with pytest.raises(MetricError, match="unknown metric 'fidd'"):
        compute_metric("fidd", bank, dataset, cache_dir=tmp_path)
    with pytest.raises(MetricError, match="detector is required"):
        compute_metric("fid", bank, dataset, num_gen=10, cache_dir=tmp_path)
    with pytest.raises(MetricError, match="VGG16"):
        compute_metric("pr", bank, dataset, num_gen=10, cache_dir=tmp_path)
    with pytest.raises(MetricError, match="detector must be None"):
        compute_metric("fid_digits", bank, dataset, detector=str(detector_file), cache_dir=tmp_path)
    with pytest.raises(MetricError, match="G_sample"):
        compute_metric("fid", lambda n: torch.zeros(n, 8, 8), dataset, num_gen=10,
                       detector=str(detector_file), cache_dir=tmp_path)
    with pytest.raises(MetricError, match="images_uint8"):
        compute_metric("fid", bank, object(), num_gen=10, detector=str(detector_file), cache_dir=tmp_path)
    with pytest.raises(MetricError, match="num_gen"):
        compute_metric("fid", bank, dataset, num_gen=0, detector=str(detector_file), cache_dir=tmp_path)
    assert not (tmp_path / "metric-stats").exists()


class _LazyImages(_Images):
    """A dataset that reads item by item (like datasets.LazyImageDataset) and must never be decoded whole."""

    reads_lazily = True

    def __getitem__(self, index):
        self.reads += 1
        return self._images[index], 0

    def images_uint8(self):
        raise AssertionError("the metrics decoded the whole lazy dataset")


@pytest.mark.parametrize("name", ["fid", "kid"])
def test_lazy_dataset_is_read_in_chunks_with_the_same_result_and_cache_key(tmp_path, detector_file, name):
    real, fake = _grey_images(21, 30), _generated(22, 20)
    lazy = _LazyImages(real)
    lazy.reads = 0
    kwargs = dict(num_gen=20, batch=8, detector=str(detector_file))
    eager_value = compute_metric(name, _Bank(fake), _Images(real), cache_dir=tmp_path / "a", **kwargs)
    lazy_value = compute_metric(name, _Bank(fake), lazy, cache_dir=tmp_path / "b", **kwargs)
    assert lazy_value == pytest.approx(eager_value, rel=1e-12, abs=1e-12)
    assert lazy.reads >= len(real)  # every item was read through __getitem__
    # the chunked hash equals the whole-array hash: both runs wrote the same statistics file name
    from vendor.common.metrics.cache import array_sha256
    from vendor.common.metrics.features import ReferenceImages
    assert ReferenceImages(lazy, None).sha256() == array_sha256(real)
    assert sorted(p.name for p in (tmp_path / "a" / "metric-stats").iterdir()) == \
        sorted(p.name for p in (tmp_path / "b" / "metric-stats").iterdir())
