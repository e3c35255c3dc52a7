"""A small digits classifier used as a non-standard feature space (`fid_digits`, `kid_digits`).

No Inception weights can be fetched in this project's offline setting, so for the built-in digits
dataset a quality signal comes from a CNN trained once on scikit-learn's bundled digits (8x8,
resized to 32x32) and cached as a plain state_dict. Its penultimate layer (128-d, scaled to unit
RMS over the training digits) plays the role of Inception's pool features. Numbers in this space are NOT comparable with published FID/KID.

Training is deterministic: fixed seeds, a single thread and torch's deterministic algorithms, so two
trainings on the same machine produce bit-identical weights. It runs on a forked RNG: training the
classifier (first use, empty cache) leaves the caller's torch RNG exactly as loading it from the cache
does, so a run's numbers never depend on whether the cache was warm.

`confident_share` is the recognisability measure: the share of images the classifier assigns to one
class with probability >= 0.9 (all real digits ~0.94, blends of two different digits ~0.04, noise 0).
"""
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import atomic_output, file_sha256, resolve_cache_dir
from .errors import MetricError
from .. import checks
from ..safeload import load_checkpoint

# Bump when anything below changes the trained weights, so stale cache files are not reused.
RECIPE_VERSION = "v2"
INPUT_SIZE = 32
FEATURE_DIM = 128
NUM_CLASSES = 10
HELDOUT_FRACTION = 0.2
SEED = 0
EPOCHS = 24
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
MAX_SHIFT = 2  # pixels of random translation during training, so off-centre samples still embed sensibly
# Mixup on a share of each batch: the pixel blend lam*x_i + (1-lam)*x_j (lam ~ U(0, 1)) is trained towards the
# same blend of the two one-hot targets. Without it the classifier is over-confident off the data: measured,
# 35 % of 50/50 blends of two different digits and 36-39 % of a GAN's early blobs got p >= 0.9 for one class,
# as many as the GAN's later, readable samples, so `confident_share` could not see learning. With it (20 % of
# each batch, 24 epochs): all digits 0.94, blends 0.04, early blobs 0.08, readable-but-blurry samples 0.19-0.25,
# noise 0. A larger share (0.3-0.5) lowered real digits towards the 0.9 a test requires.
MIXUP_SHARE = 0.2


class DigitsClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)   # 32x32 -> pool -> 16x16
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)  # 16x16 -> pool -> 8x8
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)  # 8x8 -> pool -> 4x4
        self.fc_features = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.fc_logits = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        # Set after training so that features have unit RMS over the training digits: KID's kernel
        # (x.y/d + 1)^3 assumes O(1) feature values, as Inception's pool features have.
        self.register_buffer("feature_scale", torch.ones(()))

    def _penultimate(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return F.relu(self.fc_features(x.flatten(1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [N, 1, 32, 32] in [0, 1] -> scaled penultimate activations [N, 128]."""
        return self._penultimate(x) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_logits(self._penultimate(x))


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (any C, any size) -> float [N, 1, 32, 32] in [0, 1].

    Colour becomes luma (ITU-R 601 weights), other channel counts are averaged; resizing is bilinear
    with antialiasing so downscaled inputs are not aliased.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise MetricError("digits detector input must be a uint8 tensor [N, C, H, W]")
    x = images.to(torch.float32) / 255.0
    if x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    elif x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


def sklearn_digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as uint8 [N, 1, 8, 8] (0..16 scaled to 0..255) and labels."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, bunch.target.astype(np.int64)


def heldout_split(num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (train, held-out) index split from a seeded permutation."""
    order = np.random.default_rng(SEED).permutation(num_items)
    num_heldout = int(round(num_items * HELDOUT_FRACTION))
    return order[num_heldout:], order[:num_heldout]


@contextlib.contextmanager
def _deterministic_single_thread():
    """Single thread + deterministic kernels for the duration, restoring the caller's settings."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):  # torch.manual_seed below must not reach the caller's stream
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def _random_shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    padded = F.pad(batch, [MAX_SHIFT] * 4)
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (batch.shape[0], 2), generator=generator)
    return torch.stack([padded[i, :, dy:dy + INPUT_SIZE, dx:dx + INPUT_SIZE]
                        for i, (dy, dx) in enumerate(offsets.tolist())])


def _mixup(batch: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """Blend a MIXUP_SHARE of the batch with a shuffled partner, targets alike; the rest stays as it is."""
    n = batch.shape[0]
    lam = torch.rand(n, generator=generator)
    lam = torch.where(torch.rand(n, generator=generator) < MIXUP_SHARE, lam, torch.ones_like(lam))
    partner = torch.randperm(n, generator=generator)
    one_hot = F.one_hot(labels, NUM_CLASSES).to(batch.dtype)
    mixed = lam.view(-1, 1, 1, 1) * batch + (1 - lam.view(-1, 1, 1, 1)) * batch[partner]
    return mixed, lam.view(-1, 1) * one_hot + (1 - lam.view(-1, 1)) * one_hot[partner]


def classifier_accuracy(model: DigitsClassifier, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(inputs).argmax(dim=1) == labels).to(torch.float64).mean())


def train_digits_classifier(verbose: bool = True) -> tuple[DigitsClassifier, float]:
    """Train from scratch (deterministically); returns the model and its held-out accuracy."""
    images, labels = sklearn_digits_uint8()
    inputs = to_classifier_input(torch.from_numpy(images))
    targets = torch.from_numpy(labels)
    train_idx, heldout_idx = (torch.from_numpy(i) for i in heldout_split(len(labels)))
    start = time.time()
    with _deterministic_single_thread():
        torch.manual_seed(SEED)
        model = DigitsClassifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        generator = torch.Generator().manual_seed(SEED)
        for epoch in range(EPOCHS):
            model.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            for begin in range(0, len(order), BATCH_SIZE):
                batch = order[begin:begin + BATCH_SIZE]
                x, soft_targets = _mixup(_random_shift(inputs[batch], generator), targets[batch], generator)
                loss = -(soft_targets * F.log_softmax(model(x), dim=1)).sum(dim=1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if verbose:
                print(f"digits classifier: epoch {epoch + 1}/{EPOCHS} loss {loss.item():.4f} "
                      f"({time.time() - start:.1f}s)", file=sys.stderr, flush=True)
        model.eval()
        accuracy = classifier_accuracy(model, inputs[heldout_idx], targets[heldout_idx])
        with torch.no_grad():
            rms = model._penultimate(inputs[train_idx]).pow(2).mean().sqrt()
            model.feature_scale.copy_(1.0 / rms.clamp_min(1e-8))
    if verbose:
        print(f"digits classifier: held-out accuracy {accuracy:.4f}", file=sys.stderr, flush=True)
    return model, accuracy


def classifier_cache_path(cache_dir=None) -> Path:
    return resolve_cache_dir(cache_dir) / f"digits-classifier-{RECIPE_VERSION}.pt"


class DigitsDetector:
    """Feature extractor over the cached classifier: uint8 images in, 128-d features out."""

    def __init__(self, model: DigitsClassifier, path: Path):
        self.model = model.eval()
        self.path = path
        self.sha256 = file_sha256(path)

    @property
    def detector_id(self) -> str:
        return f"digits-classifier-{RECIPE_VERSION}-{self.sha256[:16]}"

    def to(self, device) -> "DigitsDetector":
        self.model.to(device)
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.features(to_classifier_input(images))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> class probabilities [N, 10]."""
        with torch.no_grad():
            return torch.softmax(self.model(to_classifier_input(images)), dim=1)


CONFIDENCE = 0.9


def confident_share(probabilities, threshold: float = CONFIDENCE) -> float:
    """Share of rows whose largest class probability is >= threshold."""
    probabilities = torch.as_tensor(probabilities)
    return float((probabilities.max(dim=1).values >= threshold).to(torch.float64).mean())


def _load_classifier(path: Path) -> DigitsClassifier:
    try:
        payload = load_checkpoint(path)  # the shared weights-only path (vendor/common/safeload.py)
        model = DigitsClassifier()
        checks.module_state(payload["state_dict"], model, "state_dict")  # shapes and finite values first
        model.load_state_dict(payload["state_dict"])
    except Exception as error:  # bad pickle, wrong keys or shapes all mean the same: unusable file
        raise MetricError(f"cached digits classifier {str(path)!r} is unreadable ({error}); delete it to retrain") from error
    return model


def load_digits_detector(cache_dir=None, verbose: bool = True) -> DigitsDetector:
    """The cached classifier if present, otherwise train once (~seconds on CPU) and cache it atomically."""
    path = classifier_cache_path(cache_dir)
    if not path.is_file():
        model, accuracy = train_digits_classifier(verbose=verbose)
        with atomic_output(path) as stream:
            torch.save({"state_dict": model.state_dict(), "heldout_accuracy": accuracy, "recipe": RECIPE_VERSION}, stream)
    return DigitsDetector(_load_classifier(path), path)
