"""The GAN-tickets helpers (sparse_core/methods/ticket.py) under their public name, `sc.tickets`."""
from .config import ConfigError  # noqa: F401
from .methods.ticket import (TICKET_FORMAT, TICKET_VERSION, TicketConfig, next_ticket, prune_and_rewind,  # noqa: F401
                             prune_masks, read_ticket, rounds_for, snapshot, ticket_sparsity, write_ticket)
