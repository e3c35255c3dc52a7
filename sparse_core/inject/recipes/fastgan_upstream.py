"""FastGAN as its authors publish it (odegeasslbc/FastGAN-pytorch; the repository now holds only a README, so
the code was checked at 1a848e5, its last merged state, Feb 2024, as kept in forks): train.py (train_d, train(args),
argparse under __main__, the EMA parameter list, models/%d.pth and models/all_%d.pth) with models.py and
operation.py. The hook lines are those of patches/fastgan.patch with upstream's names.

Upstream's own behaviour stays: the CUDA device and `use_gpu=True` LPIPS, nn.DataParallel (with --sparse only
one visible GPU: the hook refuses more), the 'module.'-prefixed checkpoints, and print logging (the controller's
summary line is printed with upstream's loss line). Upstream's train.py evaluates no metric, so nothing is fed to
RG-GAN's metric-driven regeneration (it keeps its current mode; eval.py / benchmarking/ are separate scripts).
train_d backpropagates D's losses itself, so D's method term is backpropagated on its own next to it
(sparse_core.inject.hooks.backward_regularizer; nothing runs while the term is a constant).
"""
import re

import libcst as cst

from ..engine import Hook, Match, Recipe, Signature, assigns, call_stmts, has_function, import_hook
from ._hooks import first_arg_is, step_of, uses_parameters
from ._upstream import dict_arg_last, for_loops, not_ours, plain_assigns, top_loops

TRAIN = "train.py"


def _parse_args(src, caps):
    """`args = <parser>.parse_args()` (the __main__ block); captures the parser."""
    return [Match(m.node, {"parser": m.captures["value"].split(".parse_args")[0]})
            for m in plain_assigns(src, r"args", capture="value") if re.fullmatch(r"\w+\.parse_args\(\)",
                                                                                  m.captures["value"])]


def _net(cls, capture):
    return lambda src, caps: assigns(src, cls, within="train", capture=capture, top=True)


def _resume_ema(src, caps):
    """`<G_ema> = <ckpt>['g_ema']` in train()."""
    return [Match(m.node) for m in plain_assigns(src, re.escape(caps["G_ema"]), within="train", capture="value")
            if re.fullmatch(re.escape(caps["ckpt"]) + r"\[(['\"])g_ema\1\]", m.captures["value"])]


HOOKS = (
    import_hook(TRAIN, "import sparse_core.integration as sparse\nimport sparse_core.inject.hooks as sparse_hooks"),
    Hook("CLI definition", TRAIN, "`args = <parser>.parse_args()`", _parse_args, "before",
         "sparse_hooks.add_argparse_flags(${parser}, interval=5000)  # 10% of upstream's 50k iterations per phase"),
    Hook("G constructed", TRAIN, "`<G> = Generator(...)` in train()", _net(r"Generator", "G"), "none", ""),
    Hook("D constructed", TRAIN, "`<D> = Discriminator(...)` in train()", _net(r"Discriminator", "D"), "none", ""),
    Hook("networks on the device", TRAIN, "the line `<D>.to(device)` in train()",
         lambda src, caps: call_stmts(src, re.escape(caps["D"]) + r"\.to", within="train"), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=sparse_hooks.exit_usage,\n"
         "                                    run_length=args.iter)\n"
         "sparse_hooks.one_device_only(ctrl)  # upstream wraps both nets in nn.DataParallel"),
    Hook("EMA of G", TRAIN, "`<G_ema> = copy_G_params(<G>)` directly in train()'s body",
         lambda src, caps: assigns(src, r"copy_G_params", within="train", capture="G_ema", top=True), "none", ""),
    Hook("fixed latents", TRAIN, "`fixed_noise = ...` directly in train()'s body",
         lambda src, caps: plain_assigns(src, r"fixed_noise", within="train", top=True), "none", ""),
    Hook("G optimizer constructed", TRAIN, "`<opt_G> = optim.*(<G>.parameters(), ...)` in train()",
         lambda src, caps: assigns(src, r"(torch\.)?optim\.\w+", within="train", capture="opt_G",
                                   where=lambda s, t, v: uses_parameters(s, v, caps["G"])), "none", ""),
    Hook("optimizers constructed", TRAIN, "`<opt_D> = optim.*(<D>.parameters(), ...)` in train()",
         lambda src, caps: assigns(src, r"(torch\.)?optim\.\w+", within="train", capture="opt_D",
                                   where=lambda s, t, v: uses_parameters(s, v, caps["D"])), "after",
         "ctrl.bind(G_ema=${G_ema}, opt_G=${opt_G}, opt_D=${opt_D})\n"
         "ctrl.measure_flops('G', lambda: ${G}(fixed_noise[:2]), batch=2)  # then each executed pass is charged\n"
         "ctrl.measure_flops('D', lambda: ${D}(torch.zeros(2, 3, args.im_size, args.im_size, device=device), 'fake'),"
         " batch=2)"),
    Hook("resume load", TRAIN, "`<ckpt> = torch.load(...)` in train()",
         lambda src, caps: assigns(src, r"torch\.load", within="train", capture="ckpt"), "after",
         "sparse_hooks.load_resume_state(ctrl, ${ckpt}.get('sparse', {}), args.ckpt)  # before the weights: other "
         "settings are refused by name"),
    Hook("resumed EMA", TRAIN, "`<G_ema> = <ckpt>['g_ema']` in train()", _resume_ema, "after",
         "ctrl.bind(G_ema=${G_ema})  # the loaded EMA list replaces the fresh one"),
    Hook("real batch", TRAIN, "`<real> = DiffAugment(<real>, ...)` in train() (D's real batch, before augmentation)",
         lambda src, caps: assigns(src, r"DiffAugment", within="train", capture="real",
                                   where=lambda s, t, v: isinstance(v, cst.Call) and first_arg_is(s, v, s.code(t))),
         "before", "ctrl.observe_real(${real})"),
    Hook("D loss", TRAIN, "the line `train_d(<D>, ..., label=\"fake\")` in train() (train_d backpropagates)",
         lambda src, caps: call_stmts(src, r"train_d", within="train"), "after",
         "sparse_hooks.backward_regularizer(ctrl, 'D')  # the method's D term, backpropagated like train_d's losses"),
    Hook("D optimizer step", TRAIN, "`<opt_D>.step()` in train()", step_of("opt_D", "train"), "replace",
         "ctrl.optimizer_step('D', ${opt_D})"),
    Hook("G loss", TRAIN, "`err_g = ...` in train()",
         lambda src, caps: assigns(src, r".*", target=r"err_g", within="train", edit="value"), "replace",
         "${operand} + ctrl.regularizer('G')"),
    Hook("G optimizer step", TRAIN, "`<opt_G>.step()` in train()", step_of("opt_G", "train"), "replace",
         "ctrl.optimizer_step('G', ${opt_G})"),
    Hook("EMA update", TRAIN, "the `for ... in zip(<G>.parameters(), <G_ema>)` update in train()",
         lambda src, caps: for_loops(src, "train", re.escape(caps["G_ema"])), "after", "ctrl.after_ema()"),
    Hook("iteration end", TRAIN, "`current_batch_size = ...` in train(); the step goes after the EMA update",
         lambda src, caps: [Match(m.node, {"batch": "current_batch_size"})
                            for m in plain_assigns(src, r"current_batch_size", within="train")], "none", ""),
    Hook("iteration counter", TRAIN, "the EMA update loop in train() (the last step of an iteration)",
         lambda src, caps: for_loops(src, "train", re.escape(caps["G_ema"])), "after", "ctrl.advance(${batch})"),
    Hook("stats row", TRAIN, "the `print(...)` loss line in train()",
         lambda src, caps: call_stmts(src, r"print", within="train"), "after",
         "print(sparse_hooks.summary(ctrl.stats()))"),
    Hook("snapshot write", TRAIN, "the dict literal with 'g_ema' passed to `torch.save({...}, ...)` in train()",
         lambda src, caps: dict_arg_last(src, r"torch\.save", within="train", has_key="g_ema"), "replace",
         "${code},\n'sparse': ctrl.state_dict()"),
    Hook("final export", TRAIN, "the training `for` loop directly in train()'s body",
         lambda src, caps: top_loops(src, "train"), "after",
         "sparse.export_generators(ctrl, 'G_ema', saved_model_folder, {'im_size': args.im_size}, key='g')"),
)

RECIPES = [
    Recipe("fastgan", "FastGAN-pytorch", (
        Signature(TRAIN, "does not import our vendor packages", not_ours),
        Signature(TRAIN, "def train_d", has_function("train_d")),
        Signature(TRAIN, "def train", has_function("train")),
        Signature(TRAIN, "calls lpips.PerceptualLoss", lambda src: bool(
            [m for m in assigns(src, r"lpips\.PerceptualLoss")])),
        Signature("models.py", "exists"),
        Signature("operation.py", "exists"),
    ), HOOKS),
]
