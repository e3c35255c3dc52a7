"""SNGAN (the PyTorch GAN collection's ResNet SNGAN): our vendor/sngan tree.

Hook points, in the order the training script runs them: the sparse_core import, the CLI definition (the argparse
builder's `return`), G / D construction in `main`, the EMA copy, the two optimizers and their LR schedulers, resume,
D's real batch, the D loss and step, the G loss and step, the EMA update, the per-iteration line (LR schedulers
stepped), the per-tick stats row, the metric evaluation, the snapshot dict, the final export.
"""
import re

from ..engine import Hook, Recipe, Signature, assigns, call_stmts, calls, has_class, has_function, import_hook, \
    imports_module, lines_calling, returns
from ._hooks import losses_and_steps, optimizer_of, PROGRESS_TEXT, progress_tick, real_batch, scheduler_of, \
    snapshot_dict, stats_row, vendor_metric

TRAIN = "train.py"

HOOKS = (
    import_hook(TRAIN, "import sparse_core.integration as sparse"),
    Hook("CLI definition", TRAIN, "`return p` at the end of build_argparser()",
         lambda src, caps: returns(src, "build_argparser"), "before",
         "sparse.add_argparse_flags(${returned}, interval=15625)  # official: 100 CIFAR-10 epochs (n_dis 5, batch 64)"),
    Hook("G constructed", TRAIN, "`<G> = ResGenerator32(...)` in main()",
         lambda src, caps: assigns(src, r"ResGenerator32", within="main", capture="G"), "none", ""),
    Hook("D constructed", TRAIN, "`<D> = ResDiscriminator32(...)` in main()",
         lambda src, caps: assigns(src, r"ResDiscriminator32", within="main", capture="D"), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=parser.error, run_length=args.total_steps)",
         skip_comments=True),
    Hook("EMA copy of G", TRAIN, "`<G_ema> = copy.deepcopy(<G>)...` in main()",
         lambda src, caps: assigns(src, r"copy\.deepcopy", within="main", capture="G_ema",
                                   where=lambda s, t, v: bool(calls(s, v, r"copy\.deepcopy"))
                                   and s.code(calls(s, v, r"copy\.deepcopy")[0].args[0].value) == caps["G"]),
         "none", ""),
    Hook("G optimizer constructed", TRAIN, "`<opt_G> = torch.optim.*(<G>.parameters(), ...)` in main()",
         optimizer_of("G", "opt_G"), "none", ""),
    Hook("D optimizer constructed", TRAIN, "`<opt_D> = torch.optim.*(<D>.parameters(), ...)` in main()",
         optimizer_of("D", "opt_D"), "none", ""),
    Hook("G LR scheduler constructed", TRAIN, "`<sched_G> = torch.optim.lr_scheduler.*(<opt_G>, ...)` in main()",
         scheduler_of("opt_G", "sched_G"), "none", ""),
    Hook("optimizers constructed", TRAIN, "`<sched_D> = torch.optim.lr_scheduler.*(<opt_D>, ...)` in main()",
         scheduler_of("opt_D", "sched_D"), "after",
         "ctrl.bind(G_ema=${G_ema}, opt_G=${opt_G}, opt_D=${opt_D}, sched_G=[${sched_G}], sched_D=[${sched_D}])\n"
         "ctrl.measure_flops(\"G\", lambda: ${G}(fixed_z[:2]), batch=2)  # then each executed pass is charged\n"
         "ctrl.measure_flops(\"D\", lambda: ${D}(torch.zeros(2, dataset.num_channels, 32, 32, device=device)), "
         "batch=2)"),
    Hook("resume load", TRAIN, "`... = restore_snapshot(...)` in main()",
         lambda src, caps: assigns(src, r"restore_snapshot", within="main"), "after",
         "sparse.load_resume_state(ctrl, state.get(\"sparse\", {}))"),
    Hook("real batch", TRAIN, "`<real> = batches.next(...)` in a loop of main() (D's real batch, before augmentation)",
         real_batch(r"batches\.next"), "after", "ctrl.observe_real(${real})"),
    *losses_and_steps(TRAIN),
    Hook("EMA update", TRAIN, "`update_ema(...)` in main()",
         lambda src, caps: call_stmts(src, r"update_ema", within="main"), "after", "ctrl.after_ema()"),
    Hook("iteration end", TRAIN, "the line calling `<sched_D>.step()` in main()",
         lambda src, caps: lines_calling(src, re.escape(caps["sched_D"]) + r"\.step", within="main"), "after",
         "ctrl.advance(args.n_dis * args.batch_size)"),
    Hook("progress line", TRAIN, "`<line> = progress.tick(...)` in main()", progress_tick("main"), "after",
         PROGRESS_TEXT),
    stats_row(TRAIN),
    vendor_metric(TRAIN, "  # the metric's name gives its direction"),
    snapshot_dict(TRAIN, "build_snapshot"),
    Hook("final export", TRAIN, "the `save_snapshot(...)` call directly in main()'s body (after the loop)",
         lambda src, caps: call_stmts(src, r"save_snapshot", within="main", top=True), "after",
         "sparse.export_generators(ctrl, \"G_ema\" if ${G_ema} is not None else \"G\", args.logdir,\n"
         "                         {\"z_dim\": args.z_dim, \"ch\": args.ch, \"img_channels\": dataset.num_channels})"),
)

RECIPES = [
    Recipe("sngan", "sparse-gan vendor tree", (
        Signature(TRAIN, "imports vendor.common", lambda src: imports_module(src, "vendor.common")),
        Signature(TRAIN, "def build_argparser", has_function("build_argparser")),
        Signature(TRAIN, "def main", has_function("main")),
        Signature("models.py", "class ResGenerator32", has_class("ResGenerator32")),
        Signature("models.py", "class ResDiscriminator32", has_class("ResDiscriminator32")),
        Signature("losses.py", "exists"),
    ), HOOKS),
]
