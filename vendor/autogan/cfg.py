"""Command-line flags: upstream's names (VITA-Group/AutoGAN cfg.py, training part), with the values of
upstream's `exps/autogan_cifar10_{a,b,c}.sh` as defaults, so `python train.py` is the paper's CIFAR-10 run
(cfg.py's own generic defaults, e.g. gf_dim 64 or n_critic 1, are what those scripts override)."""
from __future__ import annotations

import argparse

import torch

if __package__:
    from .models import DIS_MODELS, GEN_MODELS
else:  # imported by train.py run as a script: the sibling package is on sys.path
    from models import DIS_MODELS, GEN_MODELS


def str2bool(value: str) -> bool:
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {value!r}")


def build_argparser() -> argparse.ArgumentParser:
    from vendor.common.flags import ArgumentParser  # imported here: train.py makes vendor.common importable first

    p = ArgumentParser(description="AutoGAN (searched CIFAR-10 generator, SNGAN-style D, hinge loss)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # length, batches, optimisation (upstream)
    p.add_argument("--max_epoch", type=int, default=200,
                   help="used only without --max_iter: upstream then trains max_epoch * n_critic loader epochs")
    p.add_argument("--max_iter", type=int, default=50000,
                   help="G steps; the run lasts ceil(max_iter * n_critic / batches per epoch) loader epochs")
    p.add_argument("-gen_bs", "--gen_batch_size", type=int, default=128, help="images per G step")
    p.add_argument("-dis_bs", "--dis_batch_size", type=int, default=64, help="real (and fake) images per D step")
    p.add_argument("--g_lr", type=float, default=2e-4, help="Adam learning rate of G")
    p.add_argument("--d_lr", type=float, default=2e-4, help="Adam learning rate of D")
    p.add_argument("--lr_decay", action="store_true",
                   help="linear LR decay to 0 over max_iter G steps (upstream: no script passes it)")
    p.add_argument("--beta1", type=float, default=0.0, help="Adam beta1 of G and D")
    p.add_argument("--beta2", type=float, default=0.9, help="Adam beta2 of G and D")
    p.add_argument("--n_critic", type=int, default=5, help="a G step after every n_critic-th D step")
    p.add_argument("--latent_dim", type=int, default=128, help="latent size of G's input")
    p.add_argument("--img_size", type=int, default=32, help="image size (8 x --bottom_width)")
    p.add_argument("--channels", type=int, default=3,
                   help="image channels (3: colour; the grey digits are loaded as 3 equal channels)")
    p.add_argument("--bottom_width", type=int, default=4, help="4 for 32x32 (CIFAR-10), 6 for 48x48 (STL-10)")
    p.add_argument("--gf_dim", type=int, default=256, help="G's width")
    p.add_argument("--df_dim", type=int, default=128, help="D's width")
    p.add_argument("--gen_model", default="autogan_cifar10_a", choices=GEN_MODELS,
                   help="searched generator architecture")
    p.add_argument("--dis_model", default="autogan_cifar10_a", choices=DIS_MODELS,
                   help="discriminator (every upstream model file defines the same one)")
    p.add_argument("--d_spectral_norm", type=str2bool, default=True, help="spectral normalisation in D (true / false)")
    p.add_argument("--g_spectral_norm", type=str2bool, default=False, help="accepted; unused, as upstream")
    p.add_argument("--init_type", default="xavier_uniform", choices=["normal", "orth", "xavier_uniform"],
                   help="weight initialisation of G and D")
    p.add_argument("--random_seed", type=int, default=12345,
                   help="seed of the weights, the data order and the fixed sample latents")
    # data (upstream names; --data_path is where --dataset cifar10 is looked up)
    p.add_argument("--dataset", "--data", dest="dataset", default="cifar10",
                   help="'cifar10' (python batches under --data_path), 'digits', a CIFAR-10 batch folder or "
                        ".tar.gz, an image folder, or a StyleGAN2-ADA .zip")
    p.add_argument("--data_path", dest="data_root", default="./data", help="where --dataset cifar10 is looked up")
    # evaluation and checkpoints (upstream)
    p.add_argument("--val_freq", type=int, default=20, help="epochs between evaluations of the averaged G (0=off)")
    p.add_argument("--print_freq", type=int, default=100, help="D steps between stats ticks")
    p.add_argument("--eval_batch_size", type=int, default=100,
                   help="generated images per G call when evaluating metrics")
    p.add_argument("--num_eval_imgs", dest="num_images", type=int, default=50000, help="generated images per metric")
    p.add_argument("--load_path", default=None, help="run folder (its Model/checkpoint.pth) or a .pth to resume")
    p.add_argument("--exp_name", default=None, help="run name; the run folder defaults to logs/<exp_name>")
    # additions
    p.add_argument("--logdir", default=None, help="run folder (default logs/<exp_name or gen_model>)")
    p.add_argument("--data-ratio", "--data_ratio", dest="data_ratio", type=float, default=1.0,
                   help="train on this deterministic fraction (0, 1] of the dataset")
    p.add_argument("--diffaug", default="", help="DiffAugment policy before every D call ('' = off)")
    p.add_argument("--metric", default=None, help="vendor.common.metrics name (default fid; fid_digits on digits)")
    p.add_argument("--extra_metrics", default="", type=lambda v: [m for m in v.split(",") if m],
                   help="comma-separated metrics logged next to --metric, e.g. is,kid")
    p.add_argument("--detector", default=None, help="Inception/VGG detector path or URL for metrics")
    p.add_argument("--metric_cache", default=None, help="cache folder for detectors / statistics")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device: cpu, cuda or cuda:N")
    return p
