"""Per-resolution training plan: batch size, iterations and the fade-in alpha of every iteration.

Two schedules:
* `epochs` (default, the official Re-GAN code): stage s trains `epochs[s]` passes over the data with batch
  `batch[s]` (the last batch of a pass is partial, as a DataLoader without drop_last gives). Upstream sets
  alpha = (batch_idx + epoch * L) / (N * L) with a 1-BASED epoch (L batches per pass, N passes), i.e.
  alpha = (i + L) / (N * L) for the stage's 0-based iteration i. So the fade starts at alpha = 1/N, not 0,
  lasts N - 1 passes, and the last pass has alpha >= 1 (no blending; alpha > 1 is not clamped upstream, the
  networks blend only for 0 <= alpha < 1). At 32x32 with 8 passes alpha rises from 0.125.
* `kimg` (Karras et al.): the first resolution trains `stable_kimg`; every later one fades in over
  `fade_kimg` (alpha = images shown in the stage / (fade_kimg * 1000), from 0, clamped at 1) and then trains
  `stable_kimg` more; full batches only.
"""
from __future__ import annotations

import dataclasses
import math

# Official Re-GAN batch sizes / epochs for 4..32 (the batches equal Karras' preset-v2-1gpu); beyond 32 the
# official code has no stages: batches from preset-v2-1gpu (minibatch_base 4 at 1024), 8 epochs like 32x32.
DEFAULT_BATCH = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4}
DEFAULT_EPOCHS = {4: 2, 8: 2, 16: 2, 32: 8, 64: 8, 128: 8, 256: 8, 512: 8, 1024: 8}


@dataclasses.dataclass(frozen=True)
class Stage:
    step: int          # 0 for 4x4, res = 4 * 2**step
    res: int
    batch: int
    iters: int         # optimizer steps in this stage
    per_epoch: int     # batches per pass over the data (epochs schedule; also reported for kimg)
    epochs: int = 0    # epochs schedule: passes
    fade_iters: int = 0  # kimg schedule: iterations with alpha < 1
    fade_images: int = 0  # kimg schedule: images over which alpha goes 0 -> 1
    mode: str = "epochs"

    def alpha(self, i: int) -> float:
        if self.mode == "epochs":
            return (i + self.per_epoch) / (self.epochs * self.per_epoch)
        if self.step == 0 or self.fade_images == 0:
            return 1.0
        return min(1.0, i * self.batch / self.fade_images)

    def epoch_aligned(self) -> bool:
        return self.mode == "epochs"


def build_plan(resolutions, num_images: int, mode: str = "epochs", batch=None, epochs=None,
               stable_kimg: float = 600.0, fade_kimg: float = 600.0) -> list[Stage]:
    """batch / epochs: one value per resolution (None = the defaults above)."""
    batch = [DEFAULT_BATCH[r] for r in resolutions] if batch is None else list(batch)
    epochs = [DEFAULT_EPOCHS[r] for r in resolutions] if epochs is None else list(epochs)
    if len(batch) != len(resolutions) or len(epochs) != len(resolutions):
        raise ValueError(f"need one batch size and one epoch count per resolution {list(resolutions)}")
    plan = []
    for step, (res, b, n) in enumerate(zip(resolutions, batch, epochs)):
        per_epoch = math.ceil(num_images / b)
        if mode == "epochs":
            plan.append(Stage(step, res, b, n * per_epoch, per_epoch, epochs=n))
        elif mode == "kimg":
            fade_images = 0 if step == 0 else int(round(fade_kimg * 1000))
            fade_iters = math.ceil(fade_images / b)
            stable = math.ceil(stable_kimg * 1000 / b)
            plan.append(Stage(step, res, b, fade_iters + stable, per_epoch, fade_iters=fade_iters,
                              fade_images=fade_images, mode="kimg"))
        else:
            raise ValueError(f"schedule must be 'epochs' or 'kimg', got {mode!r}")
    return plan


def describe(plan: list[Stage]) -> str:
    rows = []
    for s in plan:
        what = (f"{s.epochs} epochs x {s.per_epoch} batches" if s.mode == "epochs"
                else f"fade {s.fade_iters} + stable {s.iters - s.fade_iters} iterations")
        rows.append(f"  {s.res:>4}x{s.res:<4} batch {s.batch:>3}  {what}  = {s.iters} iterations")
    return "\n".join(rows)
