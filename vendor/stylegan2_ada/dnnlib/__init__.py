"""Small helpers shared by the StyleGAN2-ADA tree (same import names as upstream's dnnlib)."""
from .util import EasyDict, make_cache_dir_path  # noqa: F401
