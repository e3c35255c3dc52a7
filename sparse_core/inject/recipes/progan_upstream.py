"""ProGAN as the official Re-GAN code trains it (IntellicentAI-Lab/Re-GAN, folder ProGAN/, checked at 785135c,
the last commit): main.py (train() over one stage's loader, main() over the resolution stages with the
Re-GAN wrapper, argparse under __main__ setting module-level settings), model.py, utils.py, regan.py. Inject
into that folder. The hook lines are those of patches/progan.patch with upstream's names: the method trains the
final resolution only (the controller is paused at the lower ones), as Re-GAN does; the controller reaches
train() as a new last parameter `sparse_ctrl` (main() passes it).

Upstream's own behaviour stays: the CIFAR-10 loader at ../dataset, the stage / epoch schedule, print logging (the
controller's summary line is printed with upstream's every 50 batches). That folder has no metric, EMA generator,
checkpoint or resume code, so those hooks do not exist here (RG-GAN's metric-driven regeneration gets no metric
and keeps its mode); the Sparse_* / Dense_* generators are written to the working directory at the end. The
official `--regan` and a sparse_core `--sparse` method cannot run together (refused: two pruning schemes).
Note that upstream's main.py at 785135c does not import torch (a known upstream bug: NameError); 3bdc274 does.
"""
import re

import libcst as cst

from ..engine import Hook, Match, Recipe, Signature, assigns, call_stmts, has_class, has_function, import_hook
from ._hooks import step_of, uses_parameters
from ._upstream import call_last_arg, last_param_end, not_ours, plain_assigns, top_loops

MAIN = "main.py"


def _optimizer(net_key, capture):
    return lambda src, caps: assigns(src, r"(torch\.)?optim\.\w+", within="main", capture=capture,
                                     where=lambda s, t, v: uses_parameters(s, v, caps[net_key]))


def _parse_args(src, caps):
    """`args = <parser>.parse_args()`; captures the parser."""
    return [Match(m.node, {"parser": m.captures["value"].split(".parse_args")[0]})
            for m in plain_assigns(src, r"args", capture="value")
            if re.fullmatch(r"\w+\.parse_args\(\)", m.captures["value"])]


HOOKS = (
    import_hook(MAIN, "import sparse_core.integration as sparse\nimport sparse_core.inject.hooks as sparse_hooks"),
    Hook("CLI definition", MAIN, "`args = <parser>.parse_args()`", _parse_args, "before",
         "sparse_hooks.add_argparse_flags(${parser}, interval=1564, warmup=782)  # official --g 2, --warmup_epoch 1: "
         "CIFAR-10 epochs of 782 batches at 32x32"),
    Hook("G constructed", MAIN, "`<G> = ...Generator(...)...` in main()",
         lambda src, caps: assigns(src, r"Generator", within="main", capture="G", top=True), "none", ""),
    Hook("D constructed", MAIN, "`<D> = Discriminator(...)...` in main()",
         lambda src, caps: assigns(src, r"Discriminator", within="main", capture="D", top=True), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=sparse_hooks.exit_usage)\n"
         "if args.regan and ctrl.targets:\n"
         "    sparse_hooks.exit_usage(f'--regan and --sparse {ctrl.method}: two pruning schemes at once; choose one')"),
    Hook("G optimizer constructed", MAIN, "`<opt_G> = optim.*(<G>.parameters(), ...)` in main()",
         _optimizer("G", "opt_G"), "none", ""),
    Hook("optimizers constructed", MAIN, "`<opt_D> = optim.*(<D>.parameters(), ...)` in main()",
         _optimizer("D", "opt_D"), "after", "ctrl.bind(opt_G=${opt_G}, opt_D=${opt_D})"),
    Hook("stage start", MAIN, "`<loader>, <dataset> = get_loader(...)` in main() (once per resolution)",
         lambda src, caps: assigns(src, r"get_loader", within="main"), "after",
         "ctrl.pause(step != len(batch_size) - 1)  # the method trains the final resolution only, as Re-GAN does\n"
         "ctrl.measure_flops('G', lambda: ${G}(torch.zeros(2, args.z_dim, 1, 1, device=device), 0.5, step), batch=2)\n"
         "ctrl.measure_flops('D', lambda: ${D}(torch.zeros(2, 3, image_size, image_size, device=device), 0.5, step),"
         " batch=2)"),
    Hook("controller to train()", MAIN, "the last argument of the `train(...)` call in main()",
         lambda src, caps: call_last_arg(src, r"train", within="main"), "replace", "${code}, sparse_ctrl=ctrl"),
    Hook("final export", MAIN, "the stage `for` loop directly in main()'s body",
         lambda src, caps: top_loops(src, "main"), "after",
         "sparse.export_generators(ctrl, 'G', '.', {'z_dim': args.z_dim, 'in_channels': args.in_channels})"),
    Hook("train() parameters", MAIN, "the last parameter of def train(...) (no *args / **kwargs)",
         lambda src, caps: last_param_end(src, "train"), "replace", "${code}, sparse_ctrl"),
    Hook("real batch", MAIN, "`<real> = <real>.to(...)` in train() (D's real batch on the device)",
         lambda src, caps: assigns(src, r"\w+\.(to|cuda)", within="train", capture="real",
                                   where=lambda s, t, v: isinstance(t, cst.Name) and isinstance(v, cst.Call) and
                                   isinstance(v.func, cst.Attribute) and s.code(v.func.value) == s.code(t)),
         "after", "sparse_ctrl.observe_real(${real})"),
    Hook("D loss", MAIN, "`loss_critic = ...` in train()",
         lambda src, caps: assigns(src, r".*", target=r"loss_critic", within="train"), "after",
         "loss_critic = loss_critic + sparse_ctrl.regularizer('D')"),
    Hook("D optimizer step", MAIN, "`<opt_D>.step()` in train()", step_of("opt_D", "train"), "replace",
         "sparse_ctrl.optimizer_step('D', ${opt_D})"),
    Hook("G loss", MAIN, "`loss_gen = ...` in train()",
         lambda src, caps: assigns(src, r".*", target=r"loss_gen", within="train"), "after",
         "loss_gen = loss_gen + sparse_ctrl.regularizer('G')"),
    Hook("G optimizer step", MAIN, "`<opt_G>.step()` in train()", step_of("opt_G", "train"), "replace",
         "sparse_ctrl.optimizer_step('G', ${opt_G})"),
    Hook("batch size", MAIN, "`cur_batch_size = ...` in train()",
         lambda src, caps: plain_assigns(src, r"cur_batch_size", within="train"), "none", ""),
    Hook("iteration counter", MAIN, "the line `<opt_G>.step()` in train() (the last step of an iteration)",
         step_of("opt_G", "train"), "after", "sparse_ctrl.advance(cur_batch_size)"),
    Hook("stats row", MAIN, "the `print(...)` progress line in train()",
         lambda src, caps: call_stmts(src, r"print", within="train"), "after",
         "print(sparse_hooks.summary(sparse_ctrl.stats()))"),
)

RECIPES = [
    Recipe("progan", "Re-GAN ProGAN folder", (
        Signature(MAIN, "does not import our vendor packages", not_ours),
        Signature(MAIN, "def train", has_function("train")),
        Signature(MAIN, "def main", has_function("main")),
        Signature("model.py", "class Generator", has_class("Generator")),
        Signature("utils.py", "def gradient_penalty", has_function("gradient_penalty")),
        Signature("regan.py", "class Regan_training", has_class("Regan_training")),
    ), HOOKS),
]
