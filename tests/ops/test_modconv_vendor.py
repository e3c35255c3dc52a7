"""The native modulated-conv weight pass serves the patched StyleGAN2-ADA synthesis layers (issue 8 item 6):
patches/stylegan2_ada.patch routes vendor modulated_conv2d's weight side (demodulation coefficients on the
training path, per-sample weights on the fused path) through sparse_core.ops.modulation. The patched function
must give the vendor's own results (values and gradients) to 1e-5, with the native kernel serving it."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from sparse_core import ops
from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "vendor" / "stylegan2_ada"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    tree = apply_to_copy(ROOT / "patches" / "stylegan2_ada.patch", VENDOR, tmp_path_factory.mktemp("work") / "sg2")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("torch_utils", "dnnlib")}
    sys.path.insert(0, str(VENDOR))           # torch_utils / dnnlib: the patch leaves them as they are
    try:
        vendor = _load(VENDOR / "training" / "networks.py", "sg2_vendor_networks")
        patched = _load(tree / "training" / "networks.py", "sg2_patched_networks")
        from torch_utils.ops import upfirdn2d
        yield vendor, patched, upfirdn2d.setup_filter([1, 3, 3, 1])
    finally:
        sys.path.remove(str(VENDOR))
        for k in [k for k in sys.modules if k.split(".")[0] in ("torch_utils", "dnnlib")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_patched_modulated_conv_equals_the_vendor_path(cpu_ext, networks, fused, demodulate, up):
    vendor, patched, resample_filter = networks
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 8, 8, 8, generator=g, requires_grad=True)
    weight = torch.randn(6, 8, 3, 3, generator=g, requires_grad=True)
    styles = (torch.rand(3, 8, generator=g) + 0.5).requires_grad_()
    noise = torch.randn(3, 1, 8 * up, 8 * up, generator=g)
    kwargs = dict(noise=noise, up=up, padding=1, resample_filter=resample_filter, demodulate=demodulate,
                  flip_weight=(up == 1), fused_modconv=fused)
    before = ops.backend_counts()["modulated_conv2d"]
    outs = []
    for fn in (vendor.modulated_conv2d, patched.modulated_conv2d):
        y = fn(x=x, weight=weight, styles=styles, **kwargs)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum(), (x, weight, styles))
        outs.append((y, *grads))
    after = ops.backend_counts()["modulated_conv2d"]
    for a, b in zip(*(map(torch.Tensor.detach, o) for o in outs)):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max())), float((a - b).abs().max())
    served = fused or demodulate   # a plain non-demodulated, non-fused conv has no weight-side pass to serve
    assert (after[0] - before[0], after[1] - before[1]) == ((1, 0) if served else (0, 0))
