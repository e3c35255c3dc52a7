"""vendor.common.diffaug: each op against hand-computed float64 results, per-sample randomness,
parameter ranges, and gradcheck of the full policy."""
import numpy as np
import pytest
import torch

from vendor.common.diffaug import (DiffAugment, apply_color, apply_cutout, apply_translation,
                                   parse_policy, sample_color, sample_cutout, sample_translation)


def test_empty_policy_is_identity():
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(DiffAugment(x, ""), x)
    assert torch.equal(DiffAugment(x, " , "), x)


def test_unknown_policy_names_it():
    with pytest.raises(ValueError, match="'zoom'"):
        DiffAugment(torch.zeros(1, 3, 8, 8), "color,zoom")
    assert parse_policy("color, cutout") == ["color", "cutout"]


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shapes_and_dtype_are_kept(policy):
    x = torch.rand(4, 3, 16, 12) * 2 - 1
    y = DiffAugment(x, policy)
    assert y.shape == x.shape and y.dtype == x.dtype


def test_color_matches_float64_hand_computation():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(2, 3, 4, 4))
    b, s, c = np.array([0.3, -0.2]), np.array([1.5, 0.25]), np.array([0.7, 1.2])
    expected = np.empty_like(x)
    for n in range(2):
        img = x[n] + b[n]
        grey = img.mean(axis=0, keepdims=True)
        img = (img - grey) * s[n] + grey
        mean = img.mean()
        expected[n] = (img - mean) * c[n] + mean
    params = {k: torch.tensor(v).view(2, 1, 1, 1)
              for k, v in (("brightness", b), ("saturation", s), ("contrast", c))}
    got = apply_color(torch.tensor(x), params)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_diffaugment_color_uses_sampled_parameters():
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64) * 2 - 1
    torch.manual_seed(11)
    params = sample_color(x)
    torch.manual_seed(11)
    y = DiffAugment(x, "color")
    xn = x.numpy()
    for n in range(5):
        img = xn[n] + params["brightness"][n].item()
        grey = img.mean(axis=0, keepdims=True)
        img = (img - grey) * params["saturation"][n].item() + grey
        img = (img - img.mean()) * params["contrast"][n].item() + img.mean()
        np.testing.assert_allclose(y[n].numpy(), img, atol=1e-12)


def test_color_parameter_ranges_and_per_sample():
    torch.manual_seed(0)
    params = sample_color(torch.zeros(4000, 3, 1, 1))
    b, s, c = params["brightness"], params["saturation"], params["contrast"]
    assert b.min() >= -0.5 and b.max() <= 0.5 and b.min() < -0.45 and b.max() > 0.45
    assert s.min() >= 0.0 and s.max() <= 2.0 and s.min() < 0.1 and s.max() > 1.9
    assert c.min() >= 0.5 and c.max() <= 1.5 and c.min() < 0.55 and c.max() > 1.45
    same = torch.rand(1, 3, 8, 8).repeat(6, 1, 1, 1)
    out = DiffAugment(same, "color")
    assert all(not torch.allclose(out[0], out[k]) for k in range(1, 6))


def test_translation_moves_a_one_hot_pixel_by_the_given_amount():
    x = torch.zeros(3, 2, 8, 8)
    x[:, :, 3, 4] = 1.0
    params = {"dy": torch.tensor([1, -2, 0]), "dx": torch.tensor([-1, 2, 5])}
    y = apply_translation(x, params)
    assert y[0, :, 4, 3].eq(1).all() and y[0].sum() == 2
    assert y[1, :, 1, 6].eq(1).all() and y[1].sum() == 2
    assert y[2].sum() == 0  # moved out of the image: zero padding, nothing wraps around


def test_translation_zero_pads_the_uncovered_border():
    x = torch.ones(1, 1, 4, 4)
    y = apply_translation(x, {"dy": torch.tensor([1]), "dx": torch.tensor([0])})
    assert y[0, 0, 0].eq(0).all() and y[0, 0, 1:].eq(1).all()


def test_diffaugment_translation_per_sample_within_one_eighth():
    n, size = 64, 32
    x = torch.zeros(n, 1, size, size)
    x[:, :, 16, 16] = 1.0
    torch.manual_seed(5)
    params = sample_translation(x)
    torch.manual_seed(5)
    y = DiffAugment(x, "translation")
    assert params["dy"].abs().max() <= 4 and params["dx"].abs().max() <= 4  # 32 / 8
    for k in range(n):
        row, col = 16 + int(params["dy"][k]), 16 + int(params["dx"][k])
        assert y[k, 0, row, col] == 1 and y[k].sum() == 1
    shifts = set(zip(params["dy"].tolist(), params["dx"].tolist()))
    assert len(shifts) > 10  # per-sample, not one shift for the batch


def test_cutout_hand_cases():
    x = torch.ones(3, 2, 8, 8)
    # side 4: rows/cols [c - 2, c + 2)
    params = {"size_y": 4, "size_x": 4, "cy": torch.tensor([4, 0, 8]), "cx": torch.tensor([4, 0, 1])}
    y = apply_cutout(x, params)
    expected = torch.ones(3, 8, 8)
    expected[0, 2:6, 2:6] = 0
    expected[1, 0:2, 0:2] = 0  # hangs over the top-left corner
    expected[2, 6:8, 0:3] = 0  # hangs over the bottom edge, left edge clipped at column 0
    assert torch.equal(y, expected.unsqueeze(1).expand(3, 2, 8, 8))


def test_diffaugment_cutout_half_size_square_per_sample():
    n, size = 200, 16
    torch.manual_seed(2)
    params = sample_cutout(torch.zeros(n, 3, size, size))
    assert params["size_y"] == params["size_x"] == 8
    assert params["cy"].min() >= 0 and params["cy"].max() <= size  # even side: size+1 centres
    torch.manual_seed(2)
    y = DiffAugment(torch.ones(n, 3, size, size), "cutout")
    for k in range(n):
        zeros = (y[k, 0] == 0).nonzero()
        top = int(params["cy"][k]) - 4
        left = int(params["cx"][k]) - 4
        rows = range(max(top, 0), min(top + 8, size))
        cols = range(max(left, 0), min(left + 8, size))
        assert len(zeros) == len(rows) * len(cols)
        assert torch.equal(y[k, 0], y[k, 2])  # same square in every channel
    # the whole 8x8 square is inside iff both centres fall in [4, 12]: probability (9/17)^2 = 0.28
    full = sum(int(((y[k, 0] == 0).sum()) == 64) for k in range(n))
    assert 0.18 * n < full < 0.38 * n


def test_gradcheck_full_policy_float64():
    x = (torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)

    def augment(inp):
        torch.manual_seed(123)  # the same random parameters on every call gradcheck makes
        return DiffAugment(inp, "color,translation,cutout")

    assert torch.autograd.gradcheck(augment, (x,), eps=1e-6, atol=1e-6)


def test_gradient_flows_only_through_kept_pixels():
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    params = {"size_y": 2, "size_x": 2, "cy": torch.tensor([1]), "cx": torch.tensor([1])}
    apply_cutout(x, params).sum().backward()
    expected = torch.ones(4, 4)
    expected[0:2, 0:2] = 0
    assert torch.equal(x.grad[0, 0], expected)
