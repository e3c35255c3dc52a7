"""Two gloo processes train the tiny nets with `stugan` and `adapt` on different data (no gradient averaging),
each saving its masks, D's target density and weights (tests/sparse_core/test_stugan_adapt.py compares them).

usage: python dst_ddp_worker.py OUT_DIR RANK (the test starts both ranks)"""
import os
import sys

import torch


def worker(rank, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(backend="gloo", init_method=f"file://{out_dir}/.dist_init", rank=rank,
                                         world_size=2)
    import sparse_core as sc
    from sc_nets import Z, make
    cfgs = {"stugan": sc.STUGANConfig(density_g=0.5, density_d=0.4, update_frequency=1, death_rate=0.5),
            # each rank's own bounds would move D's density the other way: rank 0's decision must win
            "adapt": sc.ADAPTConfig(density_g=0.5, density_d=0.3, br_interval=1, window=2, update_frequency=2,
                                    d_interval=2, d_max=0.6, br_low=(-2e6, 1e6)[rank], br_high=(-1e6, 2e6)[rank])}
    for method, cfg in cfgs.items():
        G, D = make(0)   # the same start on both ranks
        ctrl = sc.prepare(cfg, G=G, D=D)
        start = {k: v.clone() for k, v in ctrl.state_dict()["tensors"].items()}
        opt_G = torch.optim.Adam(G.parameters(), 1e-2, betas=(0.5, 0.99))
        opt_D = torch.optim.Adam(D.parameters(), 1e-2, betas=(0.5, 0.99))
        ctrl.bind(opt_G=opt_G, opt_D=opt_D)
        ctrl.check_run_length(6, warn=False)
        torch.manual_seed(100 + rank)   # each rank its own data
        for _ in range(6):
            real = torch.rand(4, 3, 8, 8) * (1 + rank) - 1
            if method == "adapt":
                ctrl.observe_real(real)
            with torch.no_grad():
                fake = G(torch.randn(4, Z))
            loss_D = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(fake)).mean()
            opt_D.zero_grad()
            loss_D.backward()
            ctrl.optimizer_step("D", opt_D)
            loss_G = -D(G(torch.randn(4, Z))).mean()
            opt_G.zero_grad()
            loss_G.backward()
            ctrl.optimizer_step("G", opt_G)
            ctrl.advance(4)
        state = ctrl.state_dict()
        torch.save({"masks": state["tensors"], "start": start,
                    "density_target": ctrl.stats().get("sparse/D/density_target"),
                    "weights": {k: v.detach().clone() for k, v in {**G.state_dict(), **D.state_dict()}.items()
                                if not k.endswith("_mask")}},
                   os.path.join(out_dir, f"{method}-rank{rank}.pt"))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    worker(int(sys.argv[2]), os.path.abspath(sys.argv[1]))
