"""Epoch-wise batches as upstream's DataLoader(shuffle=True) gives them: every epoch a fresh permutation,
batches of --dis_batch_size, the last one short (CIFAR-10: 781 × 64 + 1 × 16 = 782 steps), no flips.

The images live in memory as one uint8 tensor (vendor.common.datasets); the permutation comes from a
seeded generator whose state goes into every checkpoint, so a resumed run sees the same batches.
"""
from __future__ import annotations

import math

import torch


class EpochBatches:
    def __init__(self, images_uint8: torch.Tensor, batch_size: int, seed: int):
        self.images, self.batch_size = images_uint8, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def epoch(self, device):
        """One pass over the data in a new random order, as float batches in [-1, 1] (Normalize(0.5, 0.5))."""
        order = torch.randperm(len(self.images), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            batch = self.images[order[start:start + self.batch_size]]
            yield batch.to(device=device, dtype=torch.float32) / 127.5 - 1.0

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
