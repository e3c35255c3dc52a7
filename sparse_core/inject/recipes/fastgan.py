"""FastGAN (FastGAN-pytorch, few-shot 256/1024 px): our vendor/fastgan tree.

Hook points: the sparse_core import, the CLI (the argparse builder's `return`), G / D construction and their move to
the device, the EMA parameter list and the two optimizers, resume, D's real batch, the D loss and step, the G loss
and step, the EMA update, the images-shown counter, the per-tick stats row, the metric evaluation (the first of
`--metrics` drives RG-GAN), the snapshot dict, the final export (after the last weight check in `main`'s body).
"""
import re

from ..engine import (Hook, Recipe, Signature, assigns, call_stmts, has_class, has_function, import_hook,
                      imports_module, returns)
from ._hooks import aug_assign, first_arg_is, losses_and_steps, optimizer_of, PROGRESS_TEXT, progress_tick, \
    real_batch, snapshot_dict, stats_row

TRAIN = "train.py"

HOOKS = (
    import_hook(TRAIN, "import sparse_core.integration as sparse"),
    Hook("CLI definition", TRAIN, "`return p` at the end of build_argparser()",
         lambda src, caps: returns(src, "build_argparser"), "before",
         "sparse.add_argparse_flags(${returned}, interval=5000)  # 10% of upstream's 50k iterations per phase"),
    Hook("G constructed", TRAIN, "`<G> = Generator(...)` in main()",
         lambda src, caps: assigns(src, r"Generator", within="main", capture="G"), "none", ""),
    Hook("D constructed", TRAIN, "`<D> = Discriminator(...)` in main()",
         lambda src, caps: assigns(src, r"Discriminator", within="main", capture="D"), "none", ""),
    Hook("G/D on the device", TRAIN, "`<D>.to(...)` in main()",
         lambda src, caps: call_stmts(src, re.escape(caps["D"]) + r"\.to", within="main"), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=parser.error, run_length=args.iter)",
         skip_comments=True),
    Hook("EMA parameters of G", TRAIN, "`<G_ema> = op.copy_G_params(<G>)` in main()",
         lambda src, caps: assigns(src, r"(\w+\.)?copy_G_params", within="main", capture="G_ema",
                                   where=lambda s, t, v: first_arg_is(s, v, caps["G"])), "none", ""),
    Hook("G optimizer constructed", TRAIN, "`<opt_G> = torch.optim.*(<G>.parameters(), ...)` in main()",
         optimizer_of("G", "opt_G"), "none", ""),
    Hook("D optimizer constructed", TRAIN, "`<opt_D> = torch.optim.*(<D>.parameters(), ...)` in main()",
         optimizer_of("D", "opt_D"), "after",
         "ctrl.bind(G_ema=${G_ema}, opt_G=${opt_G}, opt_D=${opt_D})\n"
         "ctrl.measure_flops(\"G\", lambda: ${G}(fixed_noise[:2]), batch=2, train_samples=args.batch_size)\n"
         "x = torch.zeros(2, 3, args.im_size, args.im_size, device=device)  # D's work per iteration: real, fake, "
         "G step\n"
         "ctrl.measure_flops(\"D\", lambda: (${D}(x, \"real\", 0), ${D}(x, \"fake\"), ${D}(x, \"fake\")), batch=2,\n"
         "                   train_samples=args.batch_size)"),
    Hook("resume load", TRAIN, "`... = restore(...)` in main()",
         lambda src, caps: assigns(src, r"restore", within="main"), "after",
         "sparse.load_resume_state(ctrl, state.get(\"sparse\", {}))"),
    Hook("real batch", TRAIN, "`<real> = batches.next(...)` in a loop of main() (D's real batch, before augmentation)",
         real_batch(r"batches\.next"), "after", "ctrl.observe_real(${real})"),
    *losses_and_steps(TRAIN),
    Hook("EMA update", TRAIN, "`op.update_ema(...)` in main()",
         lambda src, caps: call_stmts(src, r"(\w+\.)?update_ema", within="main"), "after", "ctrl.after_ema()"),
    Hook("iteration end", TRAIN, "`nimg += <batch>` (real images shown to D) in main()", aug_assign("nimg"),
         "after", "ctrl.advance(${added})"),
    Hook("progress line", TRAIN, "`<line> = progress.tick(...)` in main()", progress_tick("main"), "after",
         PROGRESS_TEXT),
    stats_row(TRAIN),
    Hook("metric evaluation", TRAIN, "`<values> = compute_metrics(...)` in main()",
         lambda src, caps: assigns(src, r"compute_metrics", within="main", capture="metric"), "after",
         "ctrl.feed_metric(${metric}[args.metrics[0]], name=args.metrics[0])"),
    snapshot_dict(TRAIN, "build_snapshot"),
    Hook("final export", TRAIN, "the `<guard>.check_weights(...)` call directly in main()'s body (after the loop)",
         lambda src, caps: call_stmts(src, r"\w+\.check_weights", within="main", top=True), "after",
         "sparse.export_generators(ctrl, \"G_ema\", run_dir, {\"lpips_untrained\": args.lpips_untrained}, key=\"g\")",
         skip_comments=True),
)

RECIPES = [
    Recipe("fastgan", "sparse-gan vendor tree", (
        Signature(TRAIN, "imports vendor.common", lambda src: imports_module(src, "vendor.common")),
        Signature(TRAIN, "def main", has_function("main")),
        Signature("models.py", "class Generator", has_class("Generator")),
        Signature("models.py", "class SimpleDecoder (D's reconstruction decoders)", has_class("SimpleDecoder")),
        Signature("operation.py", "def copy_G_params", has_function("copy_G_params")),
    ), HOOKS),
]
