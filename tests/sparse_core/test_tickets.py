"""GAN-tickets baseline: iterative magnitude pruning with rewinding (SPEC §2.4)."""
import pytest
import torch

import sparse_core as sc
from sparse_core import tickets
from sc_nets import gan_step, make


def test_rounds_for_paper_rows():
    assert tickets.rounds_for(0.2) == 1          # 20%
    assert tickets.rounds_for(0.46) == 3         # 1 - 0.8^3 = 48.8% is the first round at or past 46%
    assert tickets.rounds_for(0.36) == 2
    with pytest.raises(sc.ConfigError, match="target_sparsity"):
        tickets.rounds_for(1.0)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_twenty_percent_of_remaining_then_rewind(scope):
    G, D = make()
    cfg = sc.TicketConfig()
    init = tickets.snapshot(G, cfg)
    with torch.no_grad():                         # "training" moves the weights away from init
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    trained = {k: v.clone() for k, v in G.state_dict().items()}
    masks = tickets.prune_and_rewind(G, init, cfg, rate=0.2, scope=scope)
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((m == 0).sum()) for m in masks.values())
    assert abs(pruned - 0.2 * total) <= (len(masks) if scope == "layer" else 1)
    if scope == "global":   # one threshold: every pruned trained |w| <= every kept trained |w|
        lo = max(float(trained[k][m == 0].abs().max()) for k, m in masks.items() if (m == 0).any())
        hi = min(float(trained[k][m == 1].abs().min()) for k, m in masks.items())
        assert lo <= hi
    for k, m in masks.items():
        w = G.state_dict()[k]
        assert torch.equal(w[m == 1], init[k][m == 1])     # survivors rewound to their initial values
        assert torch.count_nonzero(w[m == 0]) == 0
    masks2 = tickets.prune_and_rewind(G, init, cfg, masks, rate=0.2, scope=scope)
    pruned2 = sum(int((m == 0).sum()) for m in masks2.values())
    assert abs(pruned2 - 0.36 * total) <= 2 * len(masks)
    assert all(torch.all(masks2[k][masks[k] == 0] == 0) for k in masks)  # pruned stays pruned


def test_ticket_training_keeps_the_mask():
    G, D = make()
    cfg = sc.TicketConfig()
    init = tickets.snapshot(G, cfg)
    masks = tickets.prune_and_rewind(G, init, cfg, rate=0.2)
    ctrl = sc.prepare(cfg, G=G, D=D, masks={"G": masks})
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    for _ in range(10):
        gan_step(G, D, opt_G, opt_D, ctrl)
    for s in ctrl.sites["G"]:
        m = masks[s.name]
        assert torch.count_nonzero(s.param(G)[m == 0]) == 0
    assert ctrl.stats()["sparse/phase"] == "ticket"
    assert ctrl.stats()["sparse/G/sparsity"] == pytest.approx(0.2, abs=0.01)
