"""StyleGAN2-ADA (NVlabs stylegan2-ada-pytorch: train.py, training/training_loop.py, training/loss.py,
training/networks.py): our vendor/stylegan2_ada tree.

Hook points: in train.py the sparse_core import, the flags (a click decorator after `main`'s last one), the flags
popped before the training-loop kwargs are set up and passed on after, a throw-away controller after the resume
check (bad flags / a snapshot that does not fit fail at once) and its error handler; in training/loss.py the
regulariser hook of the loss object and the two main losses (G main, D gen half) that add it; in
training/networks.py the modulation (per-sample weights and demodulation coefficients from sparse_core.ops, which
sees masks); in training/training_loop.py the import, the `sparse_kwargs` parameter, the controller after G / D
are built, G_ema bound, the loss's regulariser, the optimizers, resume, the optimizer step of each phase, the
G_ema update, the images-shown counter, the snapshot dict, the metric evaluation, the stats row and the export.
"""
import re

import libcst as cst

from ..engine import (Hook, Match, Recipe, Signature, assigns, body_of, call_stmts, calls, enclosing, has_class,
                      has_function, import_hook, imports_module, single)
from ._hooks import aug_assign, PROGRESS_TEXT, progress_tick

TRAIN, LOOP, LOSS, NETS = "train.py", "training/training_loop.py", "training/loss.py", "training/networks.py"


def _last_decorator(src, caps):
    return [Match(f.decorators[-1]) for f in src.functions("main") if f.decorators]


def _try_handler(name):
    """The `except <name>` clause of the try block in main() that sets up the training-loop kwargs."""
    def find(src, caps):
        out = []
        for m in assigns(src, r"setup_training_loop_kwargs", within="main"):
            block = enclosing(src, m.node, cst.Try)
            out += [Match(h) for h in (block.handlers if block else ()) if h.type is not None
                    and src.code(h.type) == name]
        return out
    return find


def _constructed(kwargs, capture):
    """`<capture> = dnnlib.util.construct_class_by_name(**<kwargs>, ...)` in training_loop()."""
    def where(src, target, value):
        return any(a.star == "**" and src.code(a.value) == kwargs
                   for c in calls(src, value, r"dnnlib\.util\.construct_class_by_name") for a in c.args)
    return lambda src, caps: assigns(src, r"dnnlib\.util\.construct_class_by_name", within="training_loop",
                                     capture=capture, where=where)


def _next_statement(key):
    """The statement right after the one that assigns the captured name `key` (in the same block)."""
    def find(src, caps):
        out = []
        for stmt in src.statements("training_loop"):
            s = single(stmt)
            if isinstance(s, cst.Assign) and src.code(s.targets[0].target) == caps[key]:
                body = list(src.parent(stmt).body)
                k = body.index(stmt)
                if k + 1 < len(body) and calls(src, s.value, r"dnnlib\.util\.construct_class_by_name"):
                    out.append(Match(body[k + 1]))
        return out
    return find


def _assigned_from(value, capture):
    """`<capture> = <value>` (the value's source fully matching the regex) in training_loop()."""
    def find(src, caps):
        return [Match(stmt, {capture: src.code(s.targets[0].target)}) for stmt in src.statements("training_loop")
                for s in [single(stmt)] if isinstance(s, cst.Assign) and re.fullmatch(value, src.code(s.value))]
    return find


def _resume_block_end(src, caps):
    """The last statement of the `if` block in training_loop() that loads `<opt_G>`'s state (the resume)."""
    out = []
    for c in calls(src, src.module, re.escape(caps["opt_G"]) + r"\.load_state_dict"):
        block = enclosing(src, c, cst.If)
        if block is not None and isinstance(block.body, cst.IndentedBlock) and \
                enclosing(src, block, cst.FunctionDef).name.value == "training_loop":
            out.append(Match(block.body.body[-1]))
    return out


def _phase_step(src, caps):
    """`<phase>.opt.step()` in training_loop()."""
    out = []
    for m in call_stmts(src, r"\w+\.opt\.step", within="training_loop"):
        out.append(Match(m.node, {"phase": src.code(m.node.func.value.value)}))
    return out


def _ema_block(src, caps):
    """The `with` block in training_loop() whose loop zips `<G_ema>.parameters()` with `<G>.parameters()`."""
    out = []
    for loop in src.walk(kind=cst.For):
        if isinstance(loop.iter, cst.Call) and src.code(loop.iter) == \
                f"zip({caps['G_ema']}.parameters(), {caps['G']}.parameters())":
            out.append(Match(enclosing(src, loop, cst.With) or loop))
    return out


def _main_loss_mean(var):
    """`<var>.mean()` in the line `<var>.mean().mul(gain).backward()` (the loss that is backpropagated)."""
    def find(src, caps):
        out = []
        for stmt in src.statements("accumulate_gradients"):
            s = single(stmt)
            if isinstance(s, cst.Expr) and isinstance(s.value, cst.Call) and \
                    isinstance(s.value.func, cst.Attribute) and s.value.func.attr.value == "backward":
                out += [Match(c) for c in calls(src, s, re.escape(var) + r"\.mean")]
        return out
    return find


def _snapshot_dict(src, caps):
    """`<x> = dict(...)` where <x> is the first argument of a `save_snapshot(...)` call in training_loop()."""
    saved = {src.code(c.args[0].value) for c in calls(src, src.module, r"(\w+\.)*save_snapshot") if c.args}
    return [m for m in assigns(src, r"dict", within="training_loop", capture="snapshot")
            if m.captures["snapshot"] in saved and isinstance(single(m.node).value, cst.Call)
            and src.code(single(m.node).value.func) == "dict"]


def _init_end(cls):
    def find(src, caps):
        return [Match(f.body.body[-1]) for c in src.walk(kind=cst.ClassDef) if c.name.value == cls
                for f in c.body.body if isinstance(f, cst.FunctionDef) and f.name.value == "__init__"]
    return find


def _param(func, name):
    def find(src, caps):
        return [Match(p) for f in src.functions(func) for p in f.params.params if p.name.value == name]
    return find


def _modulation(src, caps):
    """In modulated_conv2d(): the statements from `w = None` to `if demodulate and fused_modconv: ...` (the
    per-sample weights and demodulation coefficients)."""
    body = body_of(src, "modulated_conv2d")
    starts = [k for k, s in enumerate(body) if single(s) is not None and src.code(single(s)) == "w = None"]
    ends = [k for k, s in enumerate(body) if isinstance(s, cst.If) and src.code(s.test) == "demodulate and fused_modconv"]
    if len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0]:
        return [Match(body[starts[0]], last=body[ends[0]])]
    return [Match(body[k]) for k in starts + ends] if len(starts) + len(ends) > 1 else []


HOOKS = (
    import_hook(TRAIN, "import sparse_core.integration as sparse"),
    Hook("CLI definition", TRAIN, "the last decorator of main()", _last_decorator, "after",
         "@sparse.click_options(interval=5000, exclude='torgb')  # official Re-GAN StyleGAN2: g = 5000 iterations"),
    Hook("flags taken out", TRAIN, "`... = setup_training_loop_kwargs(...)` in main()",
         lambda src, caps: assigns(src, r"setup_training_loop_kwargs", within="main"), "before",
         "sparse_kwargs = sparse.pop_flags(config_kwargs, on_error=ctx.fail)"),
    Hook("flags passed on", TRAIN, "`... = setup_training_loop_kwargs(...)` in main()",
         lambda src, caps: assigns(src, r"setup_training_loop_kwargs", within="main"), "after",
         "args.sparse_kwargs = sparse_kwargs\n"
         "run_desc += sparse.run_suffix(sparse_kwargs)  # the run folder names the method: 00001-<desc>-rggan"),
    Hook("flags checked", TRAIN, "`<resumed> = check_resume(...)` in main()",
         lambda src, caps: assigns(src, r"check_resume", within="main", capture="resumed"), "after",
         "try:  # the controller on throw-away networks: a bad --sparse-exclude pattern fails here, not after a tick\n"
         "    ctrl = sparse.controller_from_flags(sparse_kwargs, *(${resumed}[:2] if ${resumed} else "
         "build_networks(args)))\n"
         "except re.error as err:\n"
         "    ctx.fail(f'--sparse-exclude: {err}')\n"
         "if ${resumed} is not None and ${resumed}[2]['kind'] == 'snapshot':  # its sparse state must fit these flags\n"
         "    sparse.load_resume_state(ctrl, ${resumed}[2].get('sparse', {}))"),
    Hook("flag errors", TRAIN, "`except UserError` of the try block around setup_training_loop_kwargs() in main()",
         _try_handler("UserError"), "before",
         "except sparse.ConfigError as err:\n    ctx.fail(f'--resume: {err}')"),
    Hook("loss regulariser", LOSS, "the last statement of StyleGAN2Loss.__init__", _init_end("StyleGAN2Loss"),
         "after", "self.extra_loss_fn = lambda name: 0  # sparse_core's regulariser (RG-GAN), set by the training loop"),
    Hook("G loss", LOSS, "`loss_Gmain.mean()` in a `....backward()` line of accumulate_gradients()",
         _main_loss_mean("loss_Gmain"), "replace", "(${code} + self.extra_loss_fn('G'))"),
    Hook("D loss", LOSS, "`loss_Dgen.mean()` in a `....backward()` line of accumulate_gradients()",
         _main_loss_mean("loss_Dgen"), "replace", "(${code} + self.extra_loss_fn('D'))"),
    import_hook(NETS, "import sparse_core.ops as sparse_ops"),
    Hook("modulation", NETS, "in modulated_conv2d(), the statements from `w = None` to "
         "`if demodulate and fused_modconv: ...`", _modulation, "replace",
         "w, dcoefs = sparse_ops.modulation(weight, styles, demodulate=demodulate, fused=fused_modconv)"),
    import_hook(LOOP, "import sparse_core.integration as sparse"),
    Hook("flags parameter", LOOP, "the parameter `progress_fn` of training_loop()", _param("training_loop", "progress_fn"),
         "before", "sparse_kwargs={},               # Re-GAN / RG-GAN flags (sparse_core)."),
    Hook("G constructed", LOOP, "`<G> = dnnlib.util.construct_class_by_name(**G_kwargs, ...)` in training_loop()",
         _constructed("G_kwargs", "G"), "none", ""),
    Hook("D constructed", LOOP, "`<D> = dnnlib.util.construct_class_by_name(**D_kwargs, ...)` in training_loop()",
         _constructed("D_kwargs", "D"), "none", ""),
    Hook("G/D constructed", LOOP, "the statement right after `<D> = ...` in training_loop()", _next_statement("D"),
         "before",
         "ctrl = sparse.controller_from_flags(sparse_kwargs, ${G}, ${D}, run_length=total_kimg * 1000 // batch_size)"
         "  # before resume: Re-GAN-RI's init statistics"),
    Hook("G_ema constructed", LOOP, "`<G_ema> = copy.deepcopy(<G>)...` in training_loop()",
         lambda src, caps: assigns(src, r"copy\.deepcopy", within="training_loop", capture="G_ema"), "after",
         "ctrl.bind(G_ema=${G_ema})  # before the load below, which restores G_ema's own (EMA'd) thresholds / masks"),
    Hook("loss constructed", LOOP, "`<loss> = dnnlib.util.construct_class_by_name(..., **loss_kwargs)` in "
         "training_loop()", _constructed("loss_kwargs", "loss"), "after", "${loss}.extra_loss_fn = ctrl.regularizer"),
    Hook("G optimizer", LOOP, "`<opt_G> = phases[0].opt` in training_loop()",
         _assigned_from(r"phases\[0\]\.opt", "opt_G"), "none", ""),
    Hook("optimizers constructed", LOOP, "`<opt_D> = phases[-1].opt` in training_loop()",
         _assigned_from(r"phases\[-1\]\.opt", "opt_D"), "after",
         "ctrl.bind(opt_G=${opt_G}, opt_D=${opt_D})\n"
         "ctrl.measure_flops('G', lambda: ${G}(torch.randn([batch_gpu, ${G}.z_dim], device=device), "
         "torch.zeros([batch_gpu, ${G}.c_dim], device=device)),\n"
         "                   batch=batch_gpu)  # from here on every executed G / D pass is charged at its real batch\n"
         "ctrl.measure_flops('D', lambda: ${D}(torch.zeros([batch_gpu, ${G}.img_channels, ${G}.img_resolution, "
         "${G}.img_resolution], device=device), torch.zeros([batch_gpu, ${G}.c_dim], device=device)),\n"
         "                   batch=batch_gpu)"),
    Hook("resume load", LOOP, "the `if` block in training_loop() that loads `<opt_G>`'s state", _resume_block_end,
         "after", "sparse.load_resume_state(ctrl, resume_data.get('sparse', {}))"),
    Hook("optimizer step", LOOP, "`<phase>.opt.step()` in training_loop()", _phase_step, "replace",
         "ctrl.optimizer_step(${phase}.name[0], ${phase}.opt)  # 'G' or 'D'"),
    Hook("EMA update", LOOP, "the `with` block in training_loop() looping over "
         "`zip(<G_ema>.parameters(), <G>.parameters())`", _ema_block, "after", "ctrl.after_ema()"),
    Hook("iteration end", LOOP, "`cur_nimg += <batch>` in training_loop()",
         aug_assign("cur_nimg", within="training_loop"), "after", "ctrl.advance(${added})"),
    Hook("snapshot write", LOOP, "`<snapshot_data> = dict(...)` in training_loop(), the dict a `save_snapshot(...)` "
         "call there writes", _snapshot_dict, "after",
         "${snapshot}['sparse'] = ctrl.state_dict()"),
    Hook("metric evaluation", LOOP, "`stats_metrics.update(<result>['results'])` in training_loop()",
         lambda src, caps: call_stmts(src, r"stats_metrics\.update", within="training_loop"), "after",
         "if metric == metrics[0]:  # RG-GAN augmented regeneration follows the first metric\n"
         "    ctrl.feed_metric(result_dict['primary'], name=metric)"),
    Hook("progress line", LOOP, "`<line> = progress.tick(...)` in training_loop()", progress_tick("training_loop"),
         "after", PROGRESS_TEXT),
    Hook("stats row", LOOP, "`stats_writer.write(...)` in training_loop()",
         lambda src, caps: call_stmts(src, r"stats_writer\.write", within="training_loop"), "before",
         "fields.update(ctrl.stats())"),
    Hook("final export", LOOP, "the `check_finite_weights(...)` call directly in training_loop()'s body",
         lambda src, caps: call_stmts(src, r"check_finite_weights", within="training_loop", top=True), "after",
         "if rank == 0:  # Sparse_* and Dense_* G_ema, loadable by the unmodified generate.py / calc_metrics.py\n"
         "    sparse.export_generators(ctrl, '${G_ema}', run_dir, dict(G_kwargs=plain(G_kwargs), "
         "common_kwargs=plain(common_kwargs)), key='${G_ema}')"),
)

RECIPES = [
    Recipe("stylegan2_ada", "sparse-gan vendor tree", (
        Signature(TRAIN, "imports vendor.common", lambda src: imports_module(src, "vendor.common")),
        Signature(TRAIN, "def setup_training_loop_kwargs", has_function("setup_training_loop_kwargs")),
        Signature(LOOP, "def training_loop", has_function("training_loop")),
        Signature(LOSS, "class StyleGAN2Loss", has_class("StyleGAN2Loss")),
        Signature(NETS, "def modulated_conv2d", has_function("modulated_conv2d")),
        Signature("dnnlib/__init__.py", "exists"),
    ), HOOKS),
]
