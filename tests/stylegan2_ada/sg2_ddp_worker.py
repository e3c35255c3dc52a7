"""Two-process CPU (gloo) run of the StyleGAN2-ADA training loop, started with
torch.multiprocessing.spawn; each rank saves its final networks so the test can compare them.

usage: python sg2_ddp_worker.py OUT_DIR"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402  (puts the vendor tree on sys.path)


def worker(rank, out_dir, init_file):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(backend='gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    from torch_utils import training_stats
    from training import training_loop
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
    train = sg2_helpers.load_script('train')
    kwargs = dict(sg2_helpers.TINY_KWARGS, gpus=2, kimg=0.008, tick=0.004, snap=100, img_snap=0, aug='ada')
    _, args = train.setup_training_loop_kwargs(**kwargs)
    args.run_dir = out_dir
    args.device = 'cpu'
    result = training_loop.training_loop(rank=rank, **args)
    # Parameters only: buffers such as the mapping's w_avg track each rank's own latents (as upstream).
    torch.save({name: {k: v.detach().clone() for k, v in result[name].named_parameters()}
                for name in ('G', 'D', 'G_ema')},
               os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.destroy_process_group()


if __name__ == '__main__':
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    torch.multiprocessing.spawn(worker, args=(out, os.path.join(out, '.dist_init')), nprocs=2)
