"""AutoGAN (searched CIFAR-10 generators A, B, C; SNGAN-style D; hinge loss), the unmodified baseline:
python vendor/autogan/train.py"""
