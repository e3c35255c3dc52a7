"""The GAN-tickets helpers under their public name (`sc.tickets`); they live with the method in
sparse_core/methods/ticket.py."""
from .methods.ticket import (TICKET_FORMAT, TICKET_VERSION, next_ticket, prune_and_rewind, prune_masks,  # noqa: F401
                             read_ticket, rounds_for, snapshot, ticket_sparsity, write_ticket)
