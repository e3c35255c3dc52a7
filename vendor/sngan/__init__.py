"""SNGAN (CIFAR-10 ResNet 32x32, hinge loss), the unmodified baseline: python vendor/sngan/train.py"""
