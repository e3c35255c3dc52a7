"""AutoGAN (VITA-Group, the searched CIFAR-10 generator trained with SNGAN's loop): our vendor/autogan tree.

Hook points: the sparse_core import, the CLI (right after `main` builds its argparser), G / D construction and
initialisation, the two optimizers and LR schedulers, the averaged-G parameter list, resume, D's real batch, the D
loss and step, the G loss and step, the parameter-averaging block, the global step counter, the per-tick stats row,
the metric evaluation, the checkpoint dict, the final export (after the last weight check in `main`'s body).
"""
import libcst as cst

from ..engine import (Hook, Match, Recipe, Signature, assigns, call_stmts, calls, has_class, has_function,
                      import_hook, imports_module, single)
from ._hooks import batch_loop, first_arg_is, losses_and_steps, optimizer_of, PROGRESS_TEXT, progress_tick, \
    scheduler_of, snapshot_dict, stats_row, vendor_metric

TRAIN = "train.py"


def _averaging_block(src, caps):
    """The statement that moves the averaged parameters towards G: a `for ... in zip(<G>.parameters(),
    <G_ema>)` loop, or the `with` block that holds only that loop."""
    out = []
    for loop in src.walk(kind=cst.For):
        zips = [c for c in calls(src, loop.iter, r"zip") if c is loop.iter]
        if not zips or [src.code(a.value) for a in zips[0].args][1:] != [caps["G_ema"]] or \
                not calls(src, zips[0].args[0].value, caps["G"] + r"\.parameters"):
            continue
        parent = src.parent(src.parent(loop))       # IndentedBlock -> With
        out.append(Match(parent if isinstance(parent, cst.With) and len(parent.body.body) == 1 else loop))
    return out


def _step_counter(src, caps):
    """`<counters>["global_steps"] += 1` in main()."""
    out = []
    for stmt in src.statements("main"):
        s = single(stmt)
        if isinstance(s, cst.AugAssign) and isinstance(s.target, cst.Subscript) and \
                src.code(s.target.slice[0].slice.value) == '"global_steps"':
            out.append(Match(stmt))
    return out


HOOKS = (
    import_hook(TRAIN, "import sparse_core.integration as sparse"),
    Hook("CLI definition", TRAIN, "`<parser> = build_argparser()` in main()",
         lambda src, caps: assigns(src, r"build_argparser", within="main", capture="parser"), "after",
         "sparse.add_argparse_flags(${parser}, interval=3910, warmup=78200)  # official: 5 / 100 epochs of 782 D steps"),
    Hook("G constructed", TRAIN, "`<G> = Generator(...)` in main()",
         lambda src, caps: assigns(src, r"Generator", within="main", capture="G"), "none", ""),
    Hook("D constructed", TRAIN, "`<D> = Discriminator(...)` in main()",
         lambda src, caps: assigns(src, r"Discriminator", within="main", capture="D"), "none", ""),
    Hook("G/D initialised", TRAIN, "`weights_init(<D>, ...)` in main()",
         lambda src, caps: call_stmts(src, r"weights_init", within="main",
                                      where=lambda s, c: first_arg_is(s, c, caps["D"])), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=${parser}.error, "
         "run_length=max_epoch * len(batches))", skip_comments=True),
    Hook("G optimizer constructed", TRAIN, "`<opt_G> = torch.optim.*(<G>.parameters(), ...)` in main()",
         optimizer_of("G", "opt_G"), "none", ""),
    Hook("D optimizer constructed", TRAIN, "`<opt_D> = torch.optim.*(<D>.parameters(), ...)` in main()",
         optimizer_of("D", "opt_D"), "none", ""),
    Hook("G LR scheduler constructed", TRAIN, "`<sched_G> = torch.optim.lr_scheduler.*(<opt_G>, ...)` in main()",
         scheduler_of("opt_G", "sched_G"), "none", ""),
    Hook("D LR scheduler constructed", TRAIN, "`<sched_D> = torch.optim.lr_scheduler.*(<opt_D>, ...)` in main()",
         scheduler_of("opt_D", "sched_D"), "none", ""),
    Hook("averaged G constructed", TRAIN, "`<G_ema> = copy_params(<G>)` in main()",
         lambda src, caps: assigns(src, r"copy_params", within="main", capture="G_ema",
                                   where=lambda s, t, v: first_arg_is(s, v, caps["G"])), "after",
         "ctrl.bind(G_ema=${G_ema}, opt_G=${opt_G}, opt_D=${opt_D}, sched_G=[${sched_G}],\n"
         "          sched_D=[${sched_D}])\n"
         "ctrl.measure_flops(\"G\", lambda: ${G}(fixed_z[:2]), batch=2, forward_samples=args.dis_batch_size,\n"
         "                   train_samples=args.gen_batch_size / args.n_critic)\n"
         "ctrl.measure_flops(\"D\", lambda: ${D}(torch.zeros(2, args.channels, args.img_size, args.img_size, "
         "device=device)),\n"
         "                   batch=2, train_samples=2 * args.dis_batch_size + args.gen_batch_size / args.n_critic)"),
    Hook("resume load", TRAIN, "`... = restore_checkpoint(...)` in main()",
         lambda src, caps: assigns(src, r"restore_checkpoint", within="main"), "after",
         "sparse.load_resume_state(ctrl, state.get(\"sparse\", {}))"),
    Hook("real batch", TRAIN, "the first statement in `for <real> in batches.epoch(...)` in main() (D's real batch, "
         "before augmentation)", batch_loop(r"batches\.epoch"), "before", "ctrl.observe_real(${real})"),
    *losses_and_steps(TRAIN),
    Hook("EMA update", TRAIN, "the `for p, avg_p in zip(<G>.parameters(), <G_ema>)` averaging loop (or the `with` "
         "block holding only it)", _averaging_block, "after", "ctrl.after_ema()"),
    Hook("iteration end", TRAIN, "`<counters>[\"global_steps\"] += 1` in main()", _step_counter, "after",
         "ctrl.advance(len(real_imgs))  # one iteration = one D step (and the G step that may follow it)"),
    Hook("progress line", TRAIN, "`<line> = progress.tick(...)` in main()", progress_tick("main"), "after",
         PROGRESS_TEXT),
    stats_row(TRAIN),
    vendor_metric(TRAIN),
    snapshot_dict(TRAIN, "build_checkpoint", name="checkpoint"),
    Hook("final export", TRAIN, "the `<guard>.check_weights(...)` call directly in main()'s body (after the loop)",
         lambda src, caps: call_stmts(src, r"\w+\.check_weights", within="main", top=True), "after",
         "sparse.export_generators(ctrl, \"G_ema\", args.logdir, {\"gen_model\": args.gen_model}, "
         "key=\"avg_gen_state_dict\")"),
)

RECIPES = [
    Recipe("autogan", "sparse-gan vendor tree", (
        Signature(TRAIN, "imports vendor.common", lambda src: imports_module(src, "vendor.common")),
        Signature(TRAIN, "def main", has_function("main")),
        Signature(TRAIN, "calls copy_params (the averaged G)", lambda src: bool(calls(src, src.module, r"copy_params"))),
        Signature("cfg.py", "def build_argparser", has_function("build_argparser")),
        Signature("models/autogan_cifar10.py", "class Generator", has_class("Generator")),
    ), HOOKS),
]
