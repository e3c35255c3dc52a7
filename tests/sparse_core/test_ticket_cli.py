"""GAN tickets from the command line: the ticket method (fixed mask + rewind) and bench/tickets.py's IMP rounds
through the patched SNGAN train.py."""
import json
import sys
from pathlib import Path

import pytest
import torch

import sparse_core as sc
from sparse_core import integration, tickets
from sc_nets import gan_step, make

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
        "--n_dis", "1", "--tick_steps", "1", "--sample_step", "0", "--eval_step", "0", "--device", "cpu",
        "--total_steps", "3", "--seed", "3"]


def test_ticket_flag_rewinds_to_saved_init_and_keeps_the_mask(tmp_path):
    G0, _ = make(0)
    init = {"G": {k: p.detach().clone() for k, p in G0.named_parameters()}}
    masks = {"G": {"conv.weight": (torch.rand_like(G0.conv.weight) > 0.4).float()}}
    path = tmp_path / "t.pt"
    tickets.write_ticket(str(path), init=init, masks=masks)
    G, D = make(5)                                    # other initial values: the ticket rewinds them
    import argparse
    p = argparse.ArgumentParser()
    integration.add_argparse_flags(p, interval=10)
    ctrl = integration.controller_from_flags(p.parse_args(["--sparse", "ticket", "--ticket", str(path)]), G, D)
    for k, v in G.named_parameters():
        want = init["G"][k] * masks["G"]["conv.weight"] if k == "conv.weight" else init["G"][k]
        assert torch.equal(v.detach(), want), k
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    for _ in range(2):
        gan_step(G, D, opt_G, opt_D, ctrl)
    assert torch.all(G.conv.weight[masks["G"]["conv.weight"] == 0] == 0)
    assert ctrl.sparsity("G") == pytest.approx(float((masks["G"]["conv.weight"] == 0).sum())
                                               / sum(s.param(G).numel() for s in ctrl.sites["G"]))
    with pytest.raises(sc.ConfigError, match="--ticket"):
        integration.controller_from_flags(p.parse_args(["--sparse", "ticket", "--ticket", str(tmp_path / "no")]),
                                          *make())


def test_bench_tickets_runs_two_rounds_on_sngan_digits(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    import tickets as driver
    out = tmp_path / "imp"
    assert driver.main(["--vendor", "sngan", "--out", str(out), "--targets", "0.2", "--", *TINY]) == 0
    result = json.loads((out / "tickets.json").read_text())
    rows = [json.loads(l) for r in (0, 1) for l in [(out / f"round{r}" / "stats.jsonl").read_text().splitlines()[-1]]]
    (row,) = result["tickets"]
    assert row["rounds"] == 1 and row["real_images_total"] == sum(r["progress/real_images"] for r in rows) > 0
    assert row["flops_total"] == pytest.approx(sum(r["flops/train_total"] for r in rows))
    assert rows[1]["flops/train_total"] < rows[0]["flops/train_total"] == rows[0]["flops/train_dense_equiv"]
    # round 1's mask: 20 % of each G weight tensor cut by |round-0 final weight| (independent count)
    t0 = tickets.read_ticket(str(out / "round0" / "ticket.pt"))
    t1 = tickets.read_ticket(str(out / "round1" / "ticket.pt"))
    for name, w in t0["final"]["G"].items():
        m = t1["masks"]["G"][name]
        k = round(0.2 * w.numel())
        assert int((m == 0).sum()) == k
        assert float(w.abs()[m == 0].max()) <= float(w.abs()[m == 1].min())
    # both rounds started from the same initial values (the rewind point)
    assert all(torch.equal(t0["init"]["G"][k], t1["init"]["G"][k]) for k in t0["init"]["G"])
    assert row["sparsity_G"] == pytest.approx(rows[1]["sparse/G/sparsity"], abs=1e-6)
    sparse_G = torch.load(out / "round1" / "G_sparse.pt", weights_only=True)["G"]
    zeros = sum(int((sparse_G[k] == 0).sum()) for k in t1["masks"]["G"])
    assert zeros >= sum(int((m == 0).sum()) for m in t1["masks"]["G"].values())
    assert "| 20% | 1 |" in (out / "tickets.md").read_text()
