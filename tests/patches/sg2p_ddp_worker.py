"""Two-process (gloo) run of the PATCHED StyleGAN2-ADA training loop; each rank saves its masks / thresholds.

usage: python sg2p_ddp_worker.py PATCHED_TREE OUT_DIR METHOD"""
import argparse
import os
import sys

import torch


def worker(rank, tree, out_dir, method):
    torch.set_num_threads(1)
    sys.path.insert(0, tree)
    torch.distributed.init_process_group(backend='gloo', init_method=f'file://{out_dir}/.dist_init', rank=rank,
                                         world_size=2)
    import importlib.util
    import sparse_core.integration as sparse
    from torch_utils import training_stats
    from training import training_loop
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
    spec = importlib.util.spec_from_file_location('sg2p_train', os.path.join(tree, 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    _, args = train.setup_training_loop_kwargs(data='digits', device='cpu', cbase=256, cmax=32, map_layers=2, batch=4,
                                               mbstd_group=2, metrics=[], workers=0, grid=(2, 2), gpus=2,
                                               kimg=0.024, tick=0.004, snap=100, img_snap=0, aug='ada')
    p = argparse.ArgumentParser()
    sparse.add_argparse_flags(p, interval=2, exclude='torgb')
    args.sparse_kwargs = vars(p.parse_args(['--sparse', method, '--warmup', '1', '--prune-target', 'both',
                                            '--rg-lambda', '1e-2']))
    args.run_dir = out_dir
    result = training_loop.training_loop(rank=rank, **args)
    torch.save({name: {k: v.detach().clone() for k, v in result[name].state_dict().items()
                       if k.endswith(('_mask', '_threshold'))} for name in ('G', 'D', 'G_ema')},
               os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.destroy_process_group()


if __name__ == '__main__':
    tree, out, method = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    os.makedirs(out, exist_ok=True)
    torch.multiprocessing.spawn(worker, args=(tree, out, method), nprocs=2)
