"""StyleGAN2-ADA training package (networks, loss, augmentation, dataset, training loop)."""
