"""sparse_core: sparse GAN training on any network as a small library: `ctrl = sc.prepare(config, G=G, D=D)`, then
the calls in README "sparse_core API"; the methods live in `sparse_core.methods`, one file each."""
from .config import ConfigError, SparseConfig
from .methods.none import NoneConfig
from .methods.regan import ReGANConfig
from .methods.rggan import RGGANConfig
from .methods.ticket import TicketConfig
from .methods.static import StaticConfig
from .methods.set_ import SETConfig
from .methods.rigl import RigLConfig
from .methods.stugan import STUGANConfig
from .methods.adapt import ADAPTConfig
from .controller import SparseController, prepare
from . import methods
from .methods import ticket as tickets   # the GAN-tickets helpers under their public name

__all__ = ["prepare", "SparseController", "ReGANConfig", "RGGANConfig", "TicketConfig", "NoneConfig",
           "StaticConfig", "SETConfig", "RigLConfig", "STUGANConfig", "ADAPTConfig",
           "SparseConfig", "ConfigError", "methods", "tickets"]
__version__ = "0.1.0"
