"""Installs sparse_core (the library, with the native extension's C++/CUDA sources, which live in the top-level
cuda/ folder of the checkout and are mapped into the package as sparse_core/ops/csrc/ at build time, compiled on
first use from the installed copy).

vendor.common (data, DiffAugment and metrics shared by the vendor training trees) is a development-checkout
package: the documented editable install (`pip install -e .`) maps it, so vendor trees and patched copies
anywhere on disk import `vendor.common`; a regular `pip install .` / wheel ships only sparse_core and puts no
generic top-level name such as `vendor` into site-packages. The vendor trees themselves are run as scripts,
as upstream runs them.
"""
import sys

from setuptools import find_packages, setup

# setuptools runs this file with the command as argv: `editable_wheel` (PEP 660, what `pip install -e .` uses)
# or the legacy `develop`.
EDITABLE = any(cmd in sys.argv[1:] for cmd in ("editable_wheel", "develop"))
PACKAGES = ["sparse_core", "sparse_core.*"] + (["vendor", "vendor.common", "vendor.common.*"] if EDITABLE else [])
# The native sources: top-level cuda/ in the checkout, `sparse_core/ops/csrc/` inside an installed package (the
# loader looks there first, then at the checkout's cuda/). A data-only package mapped onto the folder.
NATIVE_PACKAGE, NATIVE_DIR = "sparse_core.ops.csrc", "cuda"

setup(
    name="sparse-gan",
    version="0.1.0",
    description="Re-GAN and RG-GAN (prune / regrow / regenerate during GAN training) as a small library",
    python_requires=">=3.10",
    packages=find_packages(include=PACKAGES) + [NATIVE_PACKAGE],
    package_dir={NATIVE_PACKAGE: NATIVE_DIR},
    package_data={NATIVE_PACKAGE: ["*.cpp", "*.cu", "*.h", "README.md"]},
    include_package_data=False,
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
        # libcst: `sparse-core inject` edits a user's checkout by syntax tree, keeping formatting and comments
        "libcst",
    ],
    # pytest-xdist: the suite runs on both cores (scripts/test.sh -n 2).
    # lpips: the reference the FastGAN perceptual loss is tested against (needs torchvision; 0.29.1 pairs with torch 2.14)
    # absl-py: the flag library of the PyTorch GAN collection's sngan.py (`sparse-core inject`'s absl flags are tested)
    # tensorboard: optional; when installed the vendor trees also write TensorBoard events (the tests read them back)
    extras_require={"test": ["pytest", "pytest-xdist", "lpips==0.1.4", "torchvision==0.29.1", "absl-py",
                             "tensorboard>=2.16"],
                    "tensorboard": ["tensorboard>=2.16"]},
    entry_points={"console_scripts": ["sparse-core=sparse_core.cli:main"]},
)
