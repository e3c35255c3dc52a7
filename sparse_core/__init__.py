"""sparse_core: Re-GAN and RG-GAN as a small library."""
