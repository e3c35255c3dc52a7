"""vendor/common/lpips.py equals the reference `lpips` package (test extra) on the same weights; weight errors."""
import lpips
import pytest
import torch

from vendor.common.lpips import LPIPSWeightsError, default_lin_file, load_lpips


@pytest.fixture(scope="module")
def reference():
    """The package's model with its real v0.1 heads and a random VGG16 trunk (no download)."""
    torch.manual_seed(0)
    return lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)


@pytest.mark.parametrize("random_heads", [False, True])
def test_matches_reference_package(tmp_path, reference, random_heads):
    ref = reference
    trunk = {f"features.{k.split('.', 1)[1]}": v for k, v in ref.net.state_dict().items()}  # torchvision's keys
    torch.save(trunk, tmp_path / "vgg16.pth")
    if random_heads:
        with torch.no_grad():
            for lin in ref.lins:   # last use of the fixture: it may be changed
                lin.model[1].weight.uniform_(0, 0.1)
        torch.save(ref.state_dict(), tmp_path / "heads.pth")
        heads = tmp_path / "heads.pth"
    else:
        heads = default_lin_file()  # the real v0.1 heads, shipped inside the package
    ours = load_lpips(vgg=str(tmp_path / "vgg16.pth"), lin=str(heads))
    assert not ours.untrained
    x = (torch.rand(3, 3, 48, 48) * 2 - 1).requires_grad_()
    y = torch.rand(3, 3, 48, 48) * 2 - 1
    want, got = ref(x, y), ours(x, y)
    assert got.shape == want.shape == (3, 1, 1, 1)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    g_want, = torch.autograd.grad(want.sum(), x)
    g_got, = torch.autograd.grad(ours(x, y).sum(), x)
    assert torch.allclose(g_got, g_want, atol=1e-5, rtol=1e-4)
    assert torch.allclose(ours(x, y, normalize=True), ref(x, y, normalize=True), atol=1e-5, rtol=0)


def test_missing_or_wrong_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))   # no cached torchvision VGG16 here
    with pytest.raises(LPIPSWeightsError, match="--lpips_vgg.*--lpips_untrained"):
        load_lpips()
    with pytest.raises(LPIPSWeightsError, match="does not exist"):
        load_lpips(vgg=str(tmp_path / "nope.pth"), lin=default_lin_file())
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(LPIPSWeightsError, match="features.0.weight has shape"):
        load_lpips(vgg=str(tmp_path / "bad.pth"), lin=default_lin_file())
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(LPIPSWeightsError, match="weights_only"):
        load_lpips(vgg=str(tmp_path / "junk.pth"), lin=default_lin_file())
    with pytest.raises(LPIPSWeightsError, match="untrained"):
        load_lpips(width_div=4)


def test_untrained_is_labelled_and_non_negative():
    model = load_lpips(untrained=True, width_div=8)
    assert model.untrained
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert (model(x, y) >= 0).all() and torch.allclose(model(x, x), torch.zeros(2, 1, 1, 1))
    model.train()
    assert not model.training   # a fixed metric: dropout never turns on
