"""Standard feature detectors (Inception-v3, VGG16) as upstream TorchScript files.

StyleGAN2-ADA's metrics use two TorchScript files, loaded with torch.jit.load:
  inception-2015-12-05.pt  https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt
  vgg16.pt                 https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt
Calling convention (upstream metrics/*.py): the input is a uint8 tensor [N, 3, H, W] in [0, 255]
(the networks resize internally; greyscale images are repeated to 3 channels by the caller), and
  inception(images, return_features=True) -> float [N, 2048]   pool features (FID, KID)
  inception(images, no_output_bias=True)  -> float [N, 1008]   softmax probabilities without the
                                                               output bias (Inception score)
  vgg16(images, return_features=True)     -> float [N, 4096]   fc features (precision / recall)

Security note: a TorchScript file carries code that runs when the model is called. That is the
upstream distribution format, so it is accepted here, but only from a path or URL the user names
explicitly (the `detector` argument); nothing is fetched implicitly and no URL is built in.
"""
import dataclasses
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import torch

from .cache import atomic_output, file_sha256, resolve_cache_dir, text_sha256
from .errors import MetricError

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
VGG16_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"

_URL_SCHEMES = ("http", "https", "file")
_DOWNLOAD_TIMEOUT_S = 60


@dataclasses.dataclass
class TorchScriptDetector:
    """A loaded detector plus the identity used to key cached reference statistics."""
    module: torch.jit.ScriptModule
    path: Path
    sha256: str

    @property
    def detector_id(self) -> str:
        return f"{self.path.stem}-{self.sha256[:16]}"

    def __call__(self, images: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.module(images, **kwargs)


def is_url(path_or_url: str) -> bool:
    return "://" in str(path_or_url)


def cached_download_path(url: str, cache_dir) -> Path:
    """Where a URL lands in the cache: keyed by the full URL, readable by its file name."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    return resolve_cache_dir(cache_dir) / "downloads" / f"{text_sha256(url)[:16]}_{name}"


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"Downloading detector {url} -> {target}", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, atomic_output(target) as stream:
            received, next_report = 0, 16 << 20
            for chunk in iter(lambda: response.read(1 << 20), b""):
                stream.write(chunk)
                received += len(chunk)
                if received >= next_report:
                    print(f"  {received >> 20} MiB", file=sys.stderr, flush=True)
                    next_report += 16 << 20
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise MetricError(
            f"detector URL {url!r} is not in the cache ({target}) and could not be downloaded: {error}. "
            f"Without network access, download it elsewhere and pass the local file path as `detector`."
        ) from error


def resolve_detector_file(path_or_url, cache_dir=None) -> Path:
    """A local path is used as is; a URL is downloaded once into `cache_dir` and reused after that."""
    if path_or_url is None or str(path_or_url) == "":
        raise MetricError("detector is required: give the path or URL of the TorchScript detector file")
    text = str(path_or_url)
    if not is_url(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise MetricError(f"detector file {text!r} does not exist")
        return path
    scheme = urllib.parse.urlparse(text).scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise MetricError(f"detector URL {text!r} has unsupported scheme {scheme!r} (use one of {_URL_SCHEMES})")
    target = cached_download_path(text, cache_dir)
    if not target.is_file():
        _download(text, target)
    return target


def load_detector(path_or_url, cache_dir=None, device="cpu") -> TorchScriptDetector:
    """Load an upstream-format TorchScript detector (see the module docstring for the calling convention)."""
    path = resolve_detector_file(path_or_url, cache_dir)
    try:
        with warnings.catch_warnings():
            # torch marks TorchScript as deprecated, but it is the format upstream's detectors ship in.
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.load.*")
            module = torch.jit.load(str(path), map_location=device)
    except Exception as error:  # torch.jit.load raises several unrelated types for a bad file
        raise MetricError(f"detector file {str(path)!r} is not a loadable TorchScript module: {error}") from error
    return TorchScriptDetector(module=module.eval(), path=path, sha256=file_sha256(path))
