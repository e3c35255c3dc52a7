"""ProGAN (the official Re-GAN ProGAN folder's progressive-growing loop): our vendor/progan tree.

Hook points: the sparse_core import, the CLI (the argparse builder's `return`, plus `--sparse-all-stages`), the
Re-GAN phase lengths in final-stage epochs (after the stage plan is built), G / D construction, the EMA copy,
resume, the per-stage optimizers and the stage start (method paused before the final resolution unless
`--sparse-all-stages`), D's real batch, the D loss and step, the G loss and step, the EMA update, the images-shown
counter, the per-tick stats row, the metric evaluation, the snapshot dict, the final export.
"""
import libcst as cst

from ..engine import (Hook, Match, Recipe, Signature, assigns, call_stmts, calls, enclosing, has_class,
                      has_function, import_hook, imports_module, returns, single)
from ._hooks import aug_assign, losses_and_steps, PROGRESS_TEXT, progress_tick, real_batch, snapshot_dict, stats_row, \
    vendor_metric

TRAIN = "train.py"


def _stage_count(src, caps):
    """`<last> = len(<plan>) - 1` in main()."""
    out = []
    for stmt in src.statements("main"):
        s = single(stmt)
        if isinstance(s, cst.Assign) and isinstance(s.value, cst.BinaryOperation) and \
                isinstance(s.value.operator, cst.Subtract) and src.code(s.value.right) == "1" and \
                calls(src, s.value.left, r"len") and src.code(s.value.left) == f"len({caps['plan']})":
            out.append(Match(stmt))
    return out


def _optimizers(src, caps):
    """`<opt_G>, <opt_D> = make_optimizers(<G>, <D>, ...)` in main()."""
    out = []
    for stmt in src.statements("main"):
        s = single(stmt)
        if isinstance(s, cst.Assign) and len(s.targets) == 1 and isinstance(s.targets[0].target, cst.Tuple) and \
                calls(src, s.value, r"make_optimizers"):
            names = [src.code(e.value) for e in s.targets[0].target.elements]
            if len(names) == 2:
                out.append(Match(stmt, {"opt_G": names[0], "opt_D": names[1]}))
    return out


def _optimizer_block(src, caps):
    """The `if` block in main() that (re)builds the optimizers."""
    return [Match(block) for m in _optimizers(src, caps)
            for block in [enclosing(src, m.node, cst.If)] if block is not None]


HOOKS = (
    import_hook(TRAIN, "import sparse_core.integration as sparse"),
    Hook("CLI definition", TRAIN, "`return p` at the end of build_argparser()",
         lambda src, caps: returns(src, "build_argparser"), "before",
         "sparse.add_argparse_flags(${returned}, interval=None)  # default: official --g 2, --warmup_epoch 1 "
         "(final-stage epochs)\n"
         "${returned}.add_argument(\"--sparse-all-stages\", action=\"store_true\", help=\"method from the first "
         "resolution (default: final)\")"),
    Hook("stage plan built", TRAIN, "`<plan> = build_plan(...)` in main()",
         lambda src, caps: assigns(src, r"build_plan", within="main", capture="plan"), "none", ""),
    Hook("phase lengths", TRAIN, "`<last> = len(<plan>) - 1` in main()", _stage_count, "after",
         "epoch = ${plan}[-1].per_epoch  # Re-GAN's phases in epochs of the final stage, as the official code "
         "counts them\n"
         "args.interval = 2 * epoch if args.interval is None else args.interval  # 0 is refused, not replaced\n"
         "args.warmup = epoch if args.warmup is None else args.warmup"),
    Hook("G constructed", TRAIN, "`<G> = Generator(...)` in main()",
         lambda src, caps: assigns(src, r"Generator", within="main", capture="G"), "none", ""),
    Hook("D constructed", TRAIN, "`<D> = Discriminator(...)` in main()",
         lambda src, caps: assigns(src, r"Discriminator", within="main", capture="D"), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=parser.error, run_length=sum(s.iters for s "
         "in (${plan} if args.sparse_all_stages else ${plan}[-1:])))", skip_comments=True),
    Hook("EMA copy of G", TRAIN, "`<G_ema> = copy.deepcopy(<G>)...` in main()",
         lambda src, caps: assigns(src, r"copy\.deepcopy", within="main", capture="G_ema"), "after",
         "ctrl.bind(G_ema=${G_ema})"),
    Hook("resume load", TRAIN, "`... = restore_networks(...)` in main()",
         lambda src, caps: assigns(src, r"restore_networks", within="main"), "after",
         "sparse.load_resume_state(ctrl, state.get(\"sparse\", {}))"),
    Hook("optimizers constructed", TRAIN, "`<opt_G>, <opt_D> = make_optimizers(...)` in main()", _optimizers,
         "after", "ctrl.bind(opt_G=${opt_G}, opt_D=${opt_D})", skip_comments=True),
    Hook("stage start", TRAIN, "the `if` block in main() that (re)builds the optimizers", _optimizer_block, "after",
         "ctrl.pause(not (args.sparse_all_stages or s == last))  # masks / thresholds of every stage exist from (a)\n"
         "ctrl.measure_flops(\"G\", lambda: ${G}(fixed_z[:2], 0.5, stage.step), batch=2, train_samples=stage.batch)\n"
         "ctrl.measure_flops(\"D\", lambda: ${D}(torch.zeros(2, 3, stage.res, stage.res, device=device), 0.5, "
         "stage.step),\n"
         "                   batch=2, train_samples=4 * stage.batch)  # real, fake, interpolates, G step"),
    Hook("real batch", TRAIN, "`<real> = batches.next(...)` in a loop of main() (D's real batch, before augmentation)",
         real_batch(r"batches\.next"), "after", "ctrl.observe_real(${real})"),
    *losses_and_steps(TRAIN),
    Hook("EMA update", TRAIN, "`update_ema(...)` in main()",
         lambda src, caps: call_stmts(src, r"update_ema", within="main"), "after", "ctrl.after_ema()"),
    Hook("iteration end", TRAIN, "`nimg += <batch>` (real images shown to D) in main()", aug_assign("nimg"),
         "after", "ctrl.advance(${added})"),
    Hook("progress line", TRAIN, "`<line> = progress.tick(...)` in main()", progress_tick("main"), "after",
         PROGRESS_TEXT),
    stats_row(TRAIN),
    vendor_metric(TRAIN),
    snapshot_dict(TRAIN, "build_snapshot"),
    Hook("final export", TRAIN, "the `save_snapshot(...)` call directly in main()'s body (after the loop)",
         lambda src, caps: call_stmts(src, r"save_snapshot", within="main", top=True), "after",
         "sparse.export_generators(ctrl, \"G\" if ${G_ema} is None else \"G_ema\", args.logdir,\n"
         "                         {\"z_dim\": args.z_dim, \"ch\": args.ch, \"max_res\": args.max_res})"),
)

RECIPES = [
    Recipe("progan", "sparse-gan vendor tree", (
        Signature(TRAIN, "imports vendor.common", lambda src: imports_module(src, "vendor.common")),
        Signature(TRAIN, "def main", has_function("main")),
        Signature(TRAIN, "def make_optimizers", has_function("make_optimizers")),
        Signature("models.py", "class Generator", has_class("Generator")),
        Signature("models.py", "class Discriminator", has_class("Discriminator")),
        Signature("schedule.py", "def build_plan", has_function("build_plan")),
    ), HOOKS),
]
