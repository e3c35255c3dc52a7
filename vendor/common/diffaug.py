"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020).

Applied to real *and* fake images before every discriminator call. Every op is differentiable with
respect to the images (translation and cutout only move or zero pixels, so their gradient is the
same gather / mask) and draws its random parameters per sample, on the images' device, from
torch's global RNG (so seeding torch and saving its RNG state makes runs reproducible).

Each op is split into `sample_*` (draw parameters for a batch) and `apply_*` (deterministic given
the parameters), so tests and callers can inspect exactly what was done.
Images are NCHW in [-1, 1]; the ops do not clamp, as in the reference method.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the image size
CUTOUT_RATIO = 0.5  # the erased square is half the image size


# ------------------------------------------------------------------------------------------------
# color: brightness, saturation, contrast


def sample_color(x: torch.Tensor) -> dict:
    batch = x.shape[0]
    shape = (batch, 1, 1, 1)
    return {
        "brightness": torch.rand(shape, dtype=x.dtype, device=x.device) - 0.5,  # U(-0.5, 0.5)
        "saturation": torch.rand(shape, dtype=x.dtype, device=x.device) * 2.0,  # U(0, 2)
        "contrast": torch.rand(shape, dtype=x.dtype, device=x.device) + 0.5,  # U(0.5, 1.5)
    }


def apply_brightness(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    return x + amount


def apply_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # scale each pixel's distance from its own grey value (mean over channels)
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * factor + grey


def apply_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # scale every value's distance from the sample's overall mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def apply_color(x: torch.Tensor, params: dict) -> torch.Tensor:
    x = apply_brightness(x, params["brightness"])
    x = apply_saturation(x, params["saturation"])
    return apply_contrast(x, params["contrast"])


# ------------------------------------------------------------------------------------------------
# translation


def sample_translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> dict:
    """Integer shifts in [-s, s] per sample, s = round(ratio * size), for rows (y) and columns (x)."""
    batch, _, height, width = x.shape
    max_dy, max_dx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    return {
        "dy": torch.randint(-max_dy, max_dy + 1, (batch,), device=x.device),
        "dx": torch.randint(-max_dx, max_dx + 1, (batch,), device=x.device),
    }


def apply_translation(x: torch.Tensor, params: dict) -> torch.Tensor:
    """out[n, c, i, j] = x[n, c, i - dy[n], j - dx[n]], zero where that falls outside the image."""
    batch, channels, height, width = x.shape
    dy, dx = params["dy"].to(x.device).long(), params["dx"].to(x.device).long()
    pad_y = int(dy.abs().max().item()) if batch else 0
    pad_x = int(dx.abs().max().item()) if batch else 0
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y))  # zeros outside: a gather is then always valid
    rows = torch.arange(height, device=x.device).view(1, height) - dy.view(batch, 1) + pad_y
    cols = torch.arange(width, device=x.device).view(1, width) - dx.view(batch, 1) + pad_x
    # pick rows then columns with gathers (differentiable w.r.t. x: gradients scatter back)
    row_index = rows.view(batch, 1, height, 1).expand(batch, channels, height, padded.shape[3])
    picked_rows = torch.gather(padded, 2, row_index)
    col_index = cols.view(batch, 1, 1, width).expand(batch, channels, height, width)
    return torch.gather(picked_rows, 3, col_index)


# ------------------------------------------------------------------------------------------------
# cutout


def sample_cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> dict:
    """Per-sample square of side round(ratio * size): its centre (cy, cx) is uniform over the image
    (plus one extra position when the side is even), so the square may hang over the border."""
    batch, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    return {
        "size_y": size_y,
        "size_x": size_x,
        "cy": torch.randint(0, height + (1 - size_y % 2), (batch,), device=x.device),
        "cx": torch.randint(0, width + (1 - size_x % 2), (batch,), device=x.device),
    }


def cutout_mask(shape, params: dict, device=None, dtype=torch.float32) -> torch.Tensor:
    """[N, 1, H, W] mask: 0 inside rows [cy - size_y//2, cy - size_y//2 + size_y) (same for columns)."""
    batch, _, height, width = shape
    top = params["cy"].to(device).view(batch, 1, 1) - params["size_y"] // 2
    left = params["cx"].to(device).view(batch, 1, 1) - params["size_x"] // 2
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + params["size_y"]) \
        & (cols >= left) & (cols < left + params["size_x"])
    return (~inside).to(dtype).unsqueeze(1)


def apply_cutout(x: torch.Tensor, params: dict) -> torch.Tensor:
    return x * cutout_mask(x.shape, params, device=x.device, dtype=x.dtype)


# ------------------------------------------------------------------------------------------------
# policy


def _color(x):
    return apply_color(x, sample_color(x))


def _translation(x):
    return apply_translation(x, sample_translation(x))


def _cutout(x):
    return apply_cutout(x, sample_cutout(x))


AUGMENTATIONS = {"color": _color, "translation": _translation, "cutout": _cutout}


def parse_policy(policy: str) -> list[str]:
    """'color,translation' -> ['color', 'translation']; '' -> []; unknown names raise ValueError."""
    if policy is None:
        return []
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown DiffAugment policy {name!r} "
                             f"(known: {', '.join(AUGMENTATIONS)})")
    return names


def DiffAugment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """Augment a batch [N, C, H, W] with the comma-separated `policy`, in the order given."""
    names = parse_policy(policy)
    if names and x.ndim != 4:
        raise ValueError(f"DiffAugment expects NCHW images, got shape {tuple(x.shape)}")
    for name in names:
        x = AUGMENTATIONS[name](x)
    return x.contiguous() if names else x
