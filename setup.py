"""Installs sparse_core (the library) and vendor.common (data, DiffAugment and metrics shared by
the vendor training trees). The vendor trees themselves are run as scripts, as upstream runs them."""
from setuptools import find_packages, setup

setup(
    name="sparse-gan",
    version="0.1.0",
    description="Re-GAN and RG-GAN (prune / regrow / regenerate during GAN training) as a small library",
    python_requires=">=3.10",
    packages=find_packages(include=["sparse_core", "sparse_core.*", "vendor", "vendor.common", "vendor.common.*"]),
    package_data={"": ["*.cpp", "*.cu", "*.h", "*.cuh"]},
    install_requires=[
        "torch>=2.11,<2.15",
        "click",
        "numpy",
        "scipy",
        "pillow",
        "imageio",
        "psutil",
        "ninja",
        "scikit-learn",
        "matplotlib",
    ],
    # lpips: the reference the FastGAN perceptual loss is tested against (needs torchvision; 0.29.1 pairs with torch 2.14)
    extras_require={"test": ["pytest", "lpips==0.1.4", "torchvision==0.29.1"]},
    entry_points={"console_scripts": ["sparse-core=sparse_core.cli:main"]},
)
