"""--gen_model / --dis_model names → networks (an explicit table: no name from a flag or file is evaluated)."""
from .autogan_cifar10 import ARCHS, Discriminator, Generator, weights_init

GEN_MODELS = tuple(sorted(ARCHS))
DIS_MODELS = GEN_MODELS  # upstream: every autogan_cifar10_* file defines the same Discriminator

__all__ = ["ARCHS", "DIS_MODELS", "Discriminator", "GEN_MODELS", "Generator", "weights_init"]
