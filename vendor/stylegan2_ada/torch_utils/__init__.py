"""PyTorch helpers for the StyleGAN2-ADA tree (misc utilities, running stats, ops)."""
