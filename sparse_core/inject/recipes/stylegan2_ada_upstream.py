"""StyleGAN2-ADA as NVlabs publishes it (NVlabs/stylegan2-ada-pytorch, checked at d72cc7d, the last commit):
train.py (click CLI, setup_training_loop_kwargs, subprocess_fn), training/training_loop.py (training_loop())
and training/loss.py (StyleGAN2Loss). The hook lines are those of patches/stylegan2_ada.patch, with upstream's
names: the phases' optimizers (phases[0] is G's, phases[-1] D's), the pickled snapshot dict, metric_main's
result dicts, the tick line (`ctrl.progress()` joins its `fields` list), the stats.jsonl row, `run_desc` (the run
folder names the method).

Upstream's own behaviour stays: CUDA-only custom ops and the CUDA device, pickle snapshots (a sparse run's
modules carry the method's thresholds / masks and hooks, so loading its pickles needs sparse_core installed),
resuming from a pickle restarts the kimg counter (the controller continues its own schedule from the state in the
pickle; a plain upstream pickle needs --sparse-from-dense). One GPU only with --sparse: the train.py hook refuses
--gpus > 1 (rank 0 alone reads the resume pickle, so the ranks' schedules could differ).
"""
import re

import libcst as cst

from ..engine import Hook, Match, Recipe, Signature, assigns, call_stmts, calls, has_class, has_function, \
    import_hook
from ._upstream import aug_assigns, backward_of, enclosing_with, for_loops, last_decorator, last_param, not_ours

TRAIN, LOOP, LOSS = "train.py", "training/training_loop.py", "training/loss.py"
IMPORT = "import sparse_core.integration as sparse"


def _kwargs_of(name):
    """where= for assigns(): the constructor call takes `**<name>`."""
    def test(src, target, value):
        return any(a.star == "**" and src.code(a.value) == name for c in calls(src, value, r".*") for a in c.args)
    return test


def _setup_call(src, caps):
    """`<desc>, <args> = setup_training_loop_kwargs(**<kwargs>)` in main(); captures desc, args and kwargs."""
    out = []
    for m in assigns(src, r"setup_training_loop_kwargs", within="main"):
        stmt = m.node
        target = stmt.body[0].targets[0].target
        call = calls(src, stmt, r"setup_training_loop_kwargs")[0]
        star = [a for a in call.args if a.star == "**"]
        if isinstance(target, cst.Tuple) and len(target.elements) == 2 and len(star) == 1:
            out.append(Match(stmt, {"desc": src.code(target.elements[0].value), "args": src.code(target.elements[1].value),
                                    "kwargs": src.code(star[0].value)}))
    return out


def _tick_print(src, caps):
    """`print(' '.join(<fields>))`: the tick line, built as a list of `key value` strings; captures fields."""
    out = []
    for m in call_stmts(src, r"print", within="training_loop"):
        call = m.node
        if len(call.args) == 1 and isinstance(call.args[0].value, cst.Call):
            inner = call.args[0].value
            if src.code(inner.func) in ("' '.join", '" ".join') and len(inner.args) == 1 \
                    and isinstance(inner.args[0].value, cst.Name):
                out.append(Match(m.node, {"fields": src.code(inner.args[0].value)}))
    return out


def _resume_loop(src, caps):
    """The `for ...: misc.copy_params_and_buffers(<resume>[name], ...)` loop that loads the resume pickle."""
    out = []
    for m in for_loops(src, "training_loop", r"G_ema"):
        copies = calls(src, m.node.body, r"misc\.copy_params_and_buffers")
        if copies and copies[0].args and isinstance(copies[0].args[0].value, cst.Subscript):
            out.append(Match(m.node, {"resume": src.code(copies[0].args[0].value.value)}))
    return out


def _ema_update(src, caps):
    """The `for p_ema, p in zip(<G_ema>.parameters(), ...)` update (with its enclosing `with` block)."""
    return [Match(enclosing_with(src, m.node)) for m in for_loops(src, "training_loop", re.escape(caps["G_ema"])
                                                                   + r"\.parameters")
            if calls(src, m.node.iter, r"zip")]


def _metric(src, caps):
    """`<result> = metric_main.calc_metric(metric=<name>, ...)`; captures both."""
    out = []
    for m in assigns(src, r"metric_main\.calc_metric", within="training_loop", capture="result"):
        kw = [a for c in calls(src, m.node, r"metric_main\.calc_metric") for a in c.args
              if a.keyword is not None and a.keyword.value == "metric"]
        if len(kw) == 1:
            out.append(Match(m.node, {**m.captures, "metric": src.code(kw[0].value)}))
    return out


def _opt_step(src, caps):
    """`<phase>.opt.step()` in training_loop(); captures the phase variable."""
    return [Match(m.node, {"phase": m.captures["obj"][:-len(".opt")]})
            for m in call_stmts(src, r"\w+\.opt\.step", within="training_loop", capture_obj="obj")]


def _main_loop(src, caps):
    """The training loop: the `while` statement directly in training_loop()'s body."""
    return [Match(s) for f in src.functions("training_loop") for s in f.body.body if isinstance(s, cst.While)]


HOOKS = (
    import_hook(TRAIN, IMPORT),
    Hook("CLI definition", TRAIN, "the decorators of main() (a @click.command)",
         lambda src, caps: last_decorator(src, "main", r"click\.command"), "after",
         "@sparse.click_options(interval=5000, exclude='torgb')  # official Re-GAN StyleGAN2: g = 5000 iterations"),
    Hook("flags to the loop", TRAIN, "`<desc>, <args> = setup_training_loop_kwargs(**<kwargs>)` in main()",
         _setup_call, "before", "sparse_kwargs = sparse.pop_flags(${kwargs}, on_error=ctx.fail)"),
    Hook("flags to the loop (after)", TRAIN, "the same line", _setup_call, "after",
         "${args}.sparse_kwargs = sparse_kwargs\n"
         "${desc} += sparse.run_suffix(sparse_kwargs)  # the run folder names the method: 00001-<desc>-rggan\n"
         "if ${args}.num_gpus > 1 and sparse_kwargs['sparse'] != 'none':\n"
         "    ctx.fail('--sparse: one GPU only in an injected NVlabs checkout (--gpus 1)')"),
    import_hook(LOOP, IMPORT + "\nimport sparse_core.inject.hooks as sparse_hooks"),
    Hook("loop parameters", LOOP, "the last parameter of def training_loop(...)",
         lambda src, caps: last_param(src, "training_loop"), "before",
         "sparse_kwargs           = {},       # Re-GAN / RG-GAN flags (sparse_core)."),
    Hook("G constructed", LOOP, "`<G> = dnnlib.util.construct_class_by_name(**G_kwargs, ...)` in training_loop()",
         lambda src, caps: assigns(src, r"dnnlib\.util\.construct_class_by_name", within="training_loop",
                                   capture="G", where=_kwargs_of("G_kwargs")), "none", ""),
    Hook("D constructed", LOOP, "`<D> = dnnlib.util.construct_class_by_name(**D_kwargs, ...)` in training_loop()",
         lambda src, caps: assigns(src, r"dnnlib\.util\.construct_class_by_name", within="training_loop",
                                   capture="D", where=_kwargs_of("D_kwargs")), "after",
         "ctrl = sparse.controller_from_flags(sparse_kwargs, ${G}, ${D}, on_error=sparse_hooks.exit_usage,\n"
         "                                    run_length=total_kimg * 1000 // batch_size)"),
    Hook("EMA copy of G", LOOP, "`<G_ema> = copy.deepcopy(<G>)...` in training_loop()",
         lambda src, caps: assigns(src, r"copy\.deepcopy", within="training_loop", capture="G_ema",
                                   where=lambda s, t, v: s.code(calls(s, v, r"copy\.deepcopy")[0].args[0].value)
                                   == caps["G"]),
         "after", "ctrl.bind(G_ema=${G_ema})  # before the resume load, which restores G_ema's own thresholds / masks"),
    Hook("resume load", LOOP, "the `for ... in [..., G_ema ...]: misc.copy_params_and_buffers(<resume>[...], ...)` "
         "loop in training_loop()", _resume_loop, "after",
         "sparse_hooks.load_resume_state(ctrl, ${resume}.get('sparse', {}), resume_pkl)"),
    Hook("loss constructed", LOOP, "`<loss> = dnnlib.util.construct_class_by_name(**loss_kwargs, ...)` in "
         "training_loop()",
         lambda src, caps: assigns(src, r"dnnlib\.util\.construct_class_by_name", within="training_loop",
                                   capture="loss", where=_kwargs_of("loss_kwargs")), "after",
         "${loss}.extra_loss_fn = ctrl.regularizer"),
    Hook("optimizers constructed", LOOP, "the `for ... in [('G', G, G_opt_kwargs, ...), ...]` loop building "
         "<phases> in training_loop()",
         lambda src, caps: for_loops(src, "training_loop", r"G_opt_kwargs"), "after",
         "ctrl.bind(opt_G=phases[0].opt, opt_D=phases[-1].opt)  # upstream's phase order: G main/reg, D main/reg\n"
         "ctrl.measure_flops('G', lambda: ${G}(torch.zeros([batch_gpu, ${G}.z_dim], device=device), "
         "torch.zeros([batch_gpu, ${G}.c_dim], device=device)), batch=batch_gpu)\n"
         "ctrl.measure_flops('D', lambda: ${D}(torch.zeros([batch_gpu, ${G}.img_channels, ${G}.img_resolution, "
         "${G}.img_resolution], device=device), torch.zeros([batch_gpu, ${G}.c_dim], device=device)), "
         "batch=batch_gpu)"),
    Hook("optimizer step", LOOP, "`<phase>.opt.step()` in training_loop()",
         _opt_step, "replace", "ctrl.optimizer_step(${phase}.name[0], ${phase}.opt)  # 'G' or 'D'"),
    Hook("EMA update", LOOP, "the `for ... in zip(<G_ema>.parameters(), ...)` update in training_loop()",
         _ema_update, "after", "ctrl.after_ema()"),
    Hook("iteration counter", LOOP, "`cur_nimg += <batch>` in training_loop()",
         lambda src, caps: aug_assigns(src, r"cur_nimg", within="training_loop", capture="batch"), "after",
         "ctrl.advance(${batch})"),
    Hook("snapshot write", LOOP, "`snapshot_data = dict(...)` in training_loop()",
         lambda src, caps: assigns(src, r"dict", target=r"snapshot_data", within="training_loop"), "after",
         "snapshot_data['sparse'] = ctrl.state_dict()"),
    Hook("metric evaluation", LOOP, "`<result> = metric_main.calc_metric(metric=<metric>, ...)` in training_loop()",
         _metric, "after",
         "if ${metric} == metrics[0]:  # RG-GAN's metric-driven regeneration follows the first metric\n"
         "    ctrl.feed_metric(list(${result}.results.values())[0], name=list(${result}.results)[0])"),
    Hook("tick line", LOOP, "`print(' '.join(<fields>))` in training_loop()", _tick_print, "before",
         "${fields} += [ctrl.progress()]  # phase, sparsity per network, FLOPs against dense"),
    Hook("stats row", LOOP, "`<fields> = dict(stats_dict, ...)` in training_loop()",
         lambda src, caps: assigns(src, r"dict", within="training_loop", capture="fields",
                                   where=lambda s, t, v: bool(v.args) and s.code(v.args[0].value) == "stats_dict"),
         "after", "${fields}.update(ctrl.stats())"),
    Hook("final export", LOOP, "the `while` training loop directly in training_loop()'s body", _main_loop, "after",
         "if rank == 0:  # Sparse_* / Dense_* G_ema: state dicts by upstream's parameter names\n"
         "    sparse.export_generators(ctrl, 'G_ema', run_dir, dict(G_kwargs=sparse_hooks.plain(G_kwargs), "
         "common_kwargs=sparse_hooks.plain(common_kwargs)), key='G_ema')"),
    Hook("loss attributes", LOSS, "`self.pl_mean = ...` in StyleGAN2Loss.__init__",
         lambda src, caps: assigns(src, r".*", target=r"self\.pl_mean", within="__init__"), "after",
         "self.extra_loss_fn = lambda name: 0  # sparse_core's regulariser (RG-GAN), set by the training loop"),
    Hook("G loss", LOSS, "`loss_Gmain.mean().mul(<gain>).backward()` in accumulate_gradients()",
         lambda src, caps: backward_of(src, r"loss_Gmain", within="accumulate_gradients", prefix="G_"),
         "replace", "(${G_loss}.mean() + self.extra_loss_fn('G')).mul(${G_gain}).backward()"),
    Hook("D loss", LOSS, "`loss_Dgen.mean().mul(<gain>).backward()` in accumulate_gradients()",
         lambda src, caps: backward_of(src, r"loss_Dgen", within="accumulate_gradients", prefix="D_"),
         "replace", "(${D_loss}.mean() + self.extra_loss_fn('D')).mul(${D_gain}).backward()"),
)

RECIPES = [
    Recipe("stylegan2_ada", "NVlabs stylegan2-ada-pytorch", (
        Signature(TRAIN, "does not import our vendor packages", not_ours),
        Signature(TRAIN, "def setup_training_loop_kwargs", has_function("setup_training_loop_kwargs")),
        Signature(TRAIN, "def subprocess_fn", has_function("subprocess_fn")),
        Signature(LOOP, "def training_loop", has_function("training_loop")),
        Signature(LOOP, "does not import our vendor packages", not_ours),
        Signature(LOSS, "class StyleGAN2Loss", has_class("StyleGAN2Loss")),
    ), HOOKS),
]
