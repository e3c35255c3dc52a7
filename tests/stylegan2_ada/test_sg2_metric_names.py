"""Every upstream StyleGAN2-ADA metric name is accepted; PPL (slerp, trimmed mean, the VGG16 LPIPS call)
against hand-computed values and a TorchScript stand-in for vgg16.pt (the real file is never fetched)."""
import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402

from metrics import metric_main  # noqa: E402
from metrics import perceptual_path_length as ppl  # noqa: E402

UPSTREAM = ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'is50k', 'fid50k', 'kid50k', 'pr50k3',
            'ppl_zfull', 'ppl_wfull', 'ppl_zend', 'ppl_wend']


class FakeVGG(torch.nn.Module):
    """vgg16.pt's calling convention; 'LPIPS features' = the image's mean over channels, scaled."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        return img.float().mean(1).flatten(1) * self.scale / 255.0


def test_every_upstream_name_is_valid():
    assert all(metric_main.is_valid_metric(m) for m in UPSTREAM)
    assert set(ppl.PPL_SPECS) == {'ppl_zfull', 'ppl_wfull', 'ppl_zend', 'ppl_wend', 'ppl2_wend'}
    assert ppl.PPL_SPECS['ppl2_wend'] == ('w', 'end', False) and ppl.PPL_SPECS['ppl_zfull'] == ('z', 'full', True)


def test_slerp_and_trimmed_mean_by_hand():
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    for t in (0.0, 0.25, 1.0):
        angle = t * np.pi / 2
        assert torch.allclose(ppl.slerp(a, b, torch.tensor([[t]])), torch.tensor([[np.cos(angle), np.sin(angle)]]).float(),
                              atol=1e-6)
    dist = np.arange(1, 201, dtype=np.float64)  # 1..200: percentiles 1 (lower) = 2, 99 (higher) = 199
    assert ppl.trimmed_mean(dist) == pytest.approx(np.mean(np.arange(2, 200)))


def test_ppl_through_calc_metric_with_a_torchscript_vgg16(tmp_path):
    train = sg2_helpers.load_script('train')
    _, args = train.setup_training_loop_kwargs(**sg2_helpers.TINY_KWARGS)
    import dnnlib
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**args.G_kwargs, c_dim=0, img_resolution=32, img_channels=3)
    values = {}
    for scale in (0.0, 1.0, 2.0):
        path = tmp_path / f'vgg16-{scale}.pt'
        torch.jit.script(FakeVGG(scale)).save(str(path))
        for name in ('ppl2_wend', 'ppl_zfull'):
            result = metric_main.calc_metric(name, G, args.training_set_kwargs, num_gen=8, detectors={'vgg16': str(path)})
            assert set(result['results']) == {name}
            values[name, scale] = result['primary']
            metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl='network-snapshot-000001.pt', kimg=1.5)
    for name in ('ppl2_wend', 'ppl_zfull'):
        assert values[name, 0.0] == 0                      # features that ignore the image: no path length
        assert values[name, 1.0] > 0
        # distances are squared feature differences: doubling the features quadruples PPL (same latents)
        assert values[name, 2.0] == pytest.approx(4 * values[name, 1.0], rel=1e-4)
    line = json.loads((tmp_path / 'metric-ppl2_wend.jsonl').read_text().splitlines()[-1])
    assert line['results'] == {'ppl2_wend': values['ppl2_wend', 2.0]} and line['kimg'] == 1.5


def test_ppl_needs_the_vgg16_detector_before_a_run(tmp_path):
    with pytest.raises(ValueError, match='--vgg'):
        metric_main.check_detectors(['ppl_wend'], {'vgg16': str(tmp_path / 'missing.pt')})
