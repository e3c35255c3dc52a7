"""Shuffled batches of one stage's images (uint8 tensor), with the whole sampler state for snapshots."""
from __future__ import annotations

import torch


class StageBatches:
    """epoch_aligned=True: a fresh seeded permutation per pass and a partial last batch (a shuffling
    DataLoader without drop_last, as upstream). False: full batches that run on into the next permutation
    (the kimg schedule). No flip: upstream has it commented out."""

    def __init__(self, images_uint8: torch.Tensor, batch_size: int, seed: int, epoch_aligned: bool = True):
        self.images, self.batch_size, self.epoch_aligned = images_uint8, batch_size, epoch_aligned
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(images_uint8), generator=self.generator)
        self.position = 0

    def _new_pass(self) -> None:
        self.order = torch.randperm(len(self.images), generator=self.generator)
        self.position = 0

    def next_indices(self) -> torch.Tensor:
        if self.position == len(self.order):
            self._new_pass()
        if self.epoch_aligned:
            take = self.order[self.position:self.position + self.batch_size]
            self.position += len(take)
            return take
        picked, needed = [], self.batch_size
        while needed > 0:
            if self.position == len(self.order):
                self._new_pass()
            take = self.order[self.position:self.position + needed]
            self.position += len(take)
            needed -= len(take)
            picked.append(take)
        return torch.cat(picked)

    def next(self, device) -> torch.Tensor:
        batch = self.images[self.next_indices()].to(device=device, dtype=torch.float32)
        return batch / 127.5 - 1.0  # ToTensor + Normalize(0.5, 0.5)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"].clone(), int(state["position"])
