"""LPIPS v0.1 (Zhang et al. 2018) with the VGG16 trunk: FastGAN's perceptual reconstruction loss.

This is the model of the PyPI `lpips` package (`lpips.LPIPS(net='vgg', version='0.1')`) and of the copy bundled
with FastGAN (`PerceptualLoss('net-lin', 'vgg')`): inputs in [-1, 1] are shifted/scaled per channel, passed
through VGG16 `features` (taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), each tap is unit-normalised over
channels, the squared difference goes through a 1x1 "lin" head, is averaged over space, and the five values
are summed: one distance per image pair, shape [N, 1, 1, 1]. tests/fastgan/test_lpips.py checks it against the
package within 1e-5 on the same weights.

Weights (never fetched implicitly):
- trunk: torchvision's ImageNet VGG16 state_dict (`vgg16-397923af.pth`, keys `features.N.*`; see VGG16_URL).
  Default: the file in torch hub's checkpoint cache, if it is there (that is where torchvision puts it).
- lin heads: LPIPS v0.1 `vgg.pth` (keys `linK.model.1.weight`; see LIN_URL). Default: the copy the `lpips`
  package ships, if the package is installed.
A path is used as is, a URL is downloaded once into the metrics cache (vendor.common.metrics). Files are read
with torch.load(weights_only=True). `untrained=True` builds a random trunk and random non-negative heads for
smoke runs only; `model.untrained` says so, and callers must label their outputs.
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import nn

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
# VGG16 `features` up to relu5_3: numbers are conv widths, 'M' max-pools (torchvision's indices are kept)
_VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2 ... relu5_3 in `features`
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPSWeightsError(ValueError):
    """LPIPS weights missing or not the expected file; the message says how to provide them."""


class _Lin(nn.Module):
    """A lin head: dropout (inactive in eval) then a 1x1 conv to one channel, no bias (key `model.1.weight`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, 1, 0, bias=False))

    def forward(self, x):
        return self.model(x)


def _normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (torch.sqrt(torch.sum(feat ** 2, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """The network; weights are loaded by `load_lpips`. `width_div` > 1 shrinks every VGG width (untrained
    smoke runs only: no such trunk exists pretrained)."""

    def __init__(self, width_div: int = 1):
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        layers, channels, taps_channels = [], 3, []
        for spec in _VGG16_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                width = max(1, spec // width_div)
                layers += [nn.Conv2d(channels, width, 3, 1, 1), nn.ReLU(inplace=True)]
                channels = width
            if len(layers) - 1 in _TAPS:
                taps_channels.append(channels)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(_Lin(c) for c in taps_channels)
        self.width_div = width_div
        self.untrained = True
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # a fixed metric: dropout stays off whatever the caller's mode

    def forward(self, in0: torch.Tensor, in1: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Distances [N, 1, 1, 1] between image batches in [-1, 1] (in [0, 1] with normalize=True)."""
        if normalize:
            in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        h0, h1 = (in0 - self.shift) / self.scale, (in1 - self.shift) / self.scale
        total, tap = 0, 0
        for index, layer in enumerate(self.features):
            h0, h1 = layer(h0), layer(h1)
            if index in _TAPS:
                diff = (_normalize(h0) - _normalize(h1)) ** 2
                total = total + self.lins[tap](diff).mean([2, 3], keepdim=True)
                tap += 1
        return total


def default_vgg_file() -> str | None:
    """torchvision's cached ImageNet VGG16 (where `torchvision.models.vgg16(weights=...)` stores it)."""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(VGG16_URL))
    return path if os.path.isfile(path) else None


def default_lin_file() -> str | None:
    """The v0.1 VGG heads shipped inside the `lpips` package, if it is installed (not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "v0.1", "vgg.pth")
    return path if os.path.isfile(path) else None


HOW_TO = (f"give the trunk with --lpips_vgg PATH|URL (torchvision's ImageNet VGG16, {VGG16_URL}) and the heads "
          f"with --lpips_lin PATH|URL (LPIPS v0.1 vgg.pth, {LIN_URL}, also shipped by `pip install lpips`), "
          f"or pass --lpips_untrained for a smoke run with a random backbone (not FastGAN's loss)")


def _read_state(path_or_url, cache_dir, what: str) -> dict:
    from .metrics.detectors import resolve_detector_file
    from .metrics.errors import MetricError

    try:
        path = resolve_detector_file(path_or_url, cache_dir)
    except MetricError as error:
        raise LPIPSWeightsError(f"LPIPS {what}: {error}; {HOW_TO}") from error
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, foreign or unsafe files raise several types
        raise LPIPSWeightsError(f"LPIPS {what}: {path} cannot be loaded with weights_only=True "
                                f"({type(error).__name__}: {error})") from error
    if not isinstance(state, dict):
        raise LPIPSWeightsError(f"LPIPS {what}: {path} holds {type(state).__name__}, not a state_dict")
    return state


def _copy(model_tensors: dict, state: dict, source_key, where: str) -> None:
    for key, target in model_tensors.items():
        name = source_key(key)
        if name not in state:
            raise LPIPSWeightsError(f"{where}: key {name!r} missing (not the expected file?)")
        if tuple(state[name].shape) != tuple(target.shape):
            raise LPIPSWeightsError(f"{where}: {name} has shape {tuple(state[name].shape)}, "
                                    f"expected {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(state[name])


def load_lpips(vgg=None, lin=None, cache_dir=None, untrained: bool = False, width_div: int = 1,
               device="cpu", seed: int = 0) -> LPIPS:
    """The LPIPS model with its weights; `vgg` / `lin` default to default_vgg_file() / default_lin_file()."""
    if width_div != 1 and not untrained:
        raise LPIPSWeightsError("LPIPS width_div > 1 exists only for untrained smoke runs")
    model = LPIPS(width_div)
    if untrained:
        generator = torch.Generator().manual_seed(seed)  # the same random metric in every run
        for p in model.parameters():
            with torch.no_grad():
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * (3.0 / p[0].numel()) ** 0.5)
        for lin in model.lins:
            lin.model[1].weight.data.abs_()  # distances stay non-negative, as with the trained heads
        return model.to(device)
    vgg = vgg or default_vgg_file()
    lin = lin or default_lin_file()
    if vgg is None or lin is None:
        missing = " and ".join(w for w, v in (("trunk", vgg), ("heads", lin)) if v is None)
        raise LPIPSWeightsError(f"LPIPS weights not found ({missing}): {HOW_TO}")
    vgg_state = _read_state(vgg, cache_dir, "trunk")
    lin_state = _read_state(lin, cache_dir, "heads")
    _copy(dict(model.features.named_parameters()), vgg_state, lambda k: f"features.{k}", f"LPIPS trunk {vgg}")
    _copy(dict(model.lins.named_parameters()), lin_state, lambda k: "lin" + k, f"LPIPS heads {lin}")
    model.untrained = False
    return model.to(device)
