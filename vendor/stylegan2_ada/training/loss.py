"""StyleGAN2 losses: non-saturating logistic loss, R1 on reals, path-length regularisation, style
mixing; plus the two data-efficient variants the comparison tables use:

* APA (Jiang et al. 2021, "Deceive D"): with probability p each real image in the D step is
  replaced by a detached fake from the latest G step; R1 is taken on that mixed batch; p is adapted
  by the training loop with the ADA heuristic (from `Loss/signs/real`).
* DiffAugment (Zhao et al. 2020): `vendor.common.diffaug.DiffAugment` on reals and fakes before
  every D call.

Phases (upstream names): Gmain, Greg, Gboth, Dmain, Dreg, Dboth. `accumulate_gradients` only calls
.backward(); the training loop owns zeroing, all-reduce and the optimizer step.
"""
import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from vendor.common.diffaug import DiffAugment


class Loss:
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        raise NotImplementedError()


class AdaptivePseudoAugment(torch.nn.Module):
    """APA state: the probability `p` (a buffer, like AugmentPipe.p, so snapshots carry it) and the
    latest generated batch to draw pseudo-reals from."""

    def __init__(self):
        super().__init__()
        self.register_buffer('p', torch.zeros([]))
        self.fake = None  # detached fakes from the last Gmain/Gboth step (not state: refilled each step)

    def remember(self, gen_img):
        self.fake = gen_img.detach()

    def forward(self, real_img):
        if self.fake is None or float(self.p) <= 0:
            return real_img
        batch = real_img.shape[0]
        fake = self.fake
        if fake.shape[0] < batch:  # the G step may use a different round size; tile to fit
            fake = fake.repeat((batch + fake.shape[0] - 1) // fake.shape[0], 1, 1, 1)
        fake = fake[:batch].to(real_img.dtype)
        use_fake = (torch.rand([batch, 1, 1, 1], device=real_img.device) < self.p).to(real_img.dtype)
        return fake * use_fake + real_img * (1 - use_fake)


class StyleGAN2Loss(Loss):
    def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, style_mixing_prob=0.9,
                 r1_gamma=10, pl_batch_shrink=2, pl_decay=0.01, pl_weight=2, diffaug_policy='', apa=None):
        super().__init__()
        self.device = device
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.D = D
        self.augment_pipe = augment_pipe
        self.style_mixing_prob = style_mixing_prob
        self.r1_gamma = r1_gamma
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_weight = pl_weight
        self.diffaug_policy = diffaug_policy or ''
        self.apa = apa
        self.pl_mean = torch.zeros([], device=device)

    def run_G(self, z, c, sync=True):
        ws = self.G_mapping(z, c)
        if self.style_mixing_prob > 0:
            # Style mixing: from a random layer on, use the styles of a second latent.
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
            cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob,
                                 cutoff, torch.full_like(cutoff, ws.shape[1]))
            ws = ws.clone()
            ws[:, cutoff:] = self.G_mapping(torch.randn_like(z), c, skip_w_avg_update=True)[:, cutoff:]
        img = self.G_synthesis(ws)
        return img, ws

    def run_D(self, img, c, sync=True):
        if self.diffaug_policy:
            img = DiffAugment(img, policy=self.diffaug_policy)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync=True, gain=1):
        if phase not in ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'):
            raise ValueError(f'unknown loss phase {phase!r}')
        do_Gmain = phase in ('Gmain', 'Gboth')
        do_Dmain = phase in ('Dmain', 'Dboth')
        do_Gpl = phase in ('Greg', 'Gboth') and self.pl_weight != 0
        do_Dr1 = phase in ('Dreg', 'Dboth') and self.r1_gamma != 0

        # Gmain: G wants D to call its output real; softplus(-l) is the non-saturating form.
        if do_Gmain:
            gen_img, _ = self.run_G(gen_z, gen_c, sync=(sync and not do_Gpl))
            if self.apa is not None:
                self.apa.remember(gen_img)
            gen_logits = self.run_D(gen_img, gen_c, sync=False)
            training_stats.report('Loss/scores/fake', gen_logits)
            training_stats.report('Loss/signs/fake', gen_logits.sign())
            loss_Gmain = F.softplus(-gen_logits)
            training_stats.report('Loss/G/loss', loss_Gmain)
            loss_Gmain.mean().mul(gain).backward()

        # Greg: the path-length penalty only needs a fraction of the batch to estimate its mean.
        if do_Gpl:
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size], sync=sync)
            pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
            with conv2d_gradfix.no_weight_gradients():
                pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                                               create_graph=True, only_inputs=True)[0]
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.to(pl_lengths.dtype).lerp(pl_lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            training_stats.report('Loss/pl_penalty', pl_penalty)
            loss_Gpl = pl_penalty * self.pl_weight
            training_stats.report('Loss/G/reg', loss_Gpl)
            # `gen_img[:, 0, 0, 0] * 0` keeps every synthesis parameter in the graph (DDP/allreduce
            # expect the same parameter set on every rank).
            (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

        # Dmain, fake half: D is pushed to score fakes low.
        loss_Dgen = 0
        if do_Dmain:
            gen_img, _ = self.run_G(gen_z, gen_c, sync=False)
            gen_logits = self.run_D(gen_img, gen_c, sync=False)
            training_stats.report('Loss/scores/fake', gen_logits)
            training_stats.report('Loss/signs/fake', gen_logits.sign())
            loss_Dgen = F.softplus(gen_logits)
            loss_Dgen.mean().mul(gain).backward()

        # Dmain, real half (score reals high) and Dreg (R1 = gamma/2 * |dD/dx|^2) share one D pass.
        if do_Dmain or do_Dr1:
            if self.apa is not None:
                real_img = self.apa(real_img)
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real_img_tmp, real_c, sync=sync)
            training_stats.report('Loss/scores/real', real_logits)
            training_stats.report('Loss/signs/real', real_logits.sign())
            loss_Dreal = 0
            if do_Dmain:
                loss_Dreal = F.softplus(-real_logits)
                training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)
            loss_Dr1 = 0
            if do_Dr1:
                with conv2d_gradfix.no_weight_gradients():
                    r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                                                   create_graph=True, only_inputs=True)[0]
                r1_penalty = r1_grads.square().sum([1, 2, 3])
                loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                training_stats.report('Loss/r1_penalty', r1_penalty)
                training_stats.report('Loss/D/reg', loss_Dr1)
            (real_logits * 0 + loss_Dreal + loss_Dr1).mean().mul(gain).backward()
