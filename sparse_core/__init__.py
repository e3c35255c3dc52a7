"""sparse_core: Re-GAN and RG-GAN as a small library.

    import sparse_core as sc
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.3, interval=5000), G=G, D=D)
    ...  (see sparse_core.controller for the call order, README for the whole API)

Methods are strategies in `sparse_core.methods` (regan, rggan, ticket, none); a new one is one file.
The library never imports a vendor tree; the vendor trees never import it; patches/ connect the two.
"""
from .config import ConfigError, SparseConfig
from .methods.none import NoneConfig
from .methods.regan import ReGANConfig
from .methods.rggan import RGGANConfig
from .methods.ticket import TicketConfig
from .controller import SparseController, prepare
from . import methods, tickets

__all__ = ["prepare", "SparseController", "ReGANConfig", "RGGANConfig", "TicketConfig", "NoneConfig",
           "SparseConfig", "ConfigError", "methods", "tickets"]
__version__ = "0.1.0"
