"""SNGAN as the PyTorch GAN collection publishes it (w86763777/pytorch-gan-collections, checked at 860e90b, the
last commit): sngan.py (absl flags, train() with the n_dis D steps and the G step, LambdaLR decay, model.pt,
pytorch_gan_metrics' IS / FID) with source/models/sngan.py and source/losses.py. The hook lines are those of
patches/sngan.patch with upstream's names; the flags come through sparse_core.inject.flags_absl (same spellings
as every other codebase: --sparse, --interval, --sparse-exclude, ...).

Upstream's own behaviour stays: the CUDA device, the CIFAR-10 / STL-10 download, tensorboardX logging (the
controller's numbers are added to the same writer every eval_step), model.pt (it gains a 'sparse' entry), and
no EMA generator and no resume (upstream has neither, so neither hook exists here). The other scripts of that
repository (dcgan.py, wgan.py, wgangp.py) are not touched.
"""
import re

from ..engine import Hook, Recipe, Signature, assigns, call_stmts, has_class, has_function, import_hook, \
    imports_module, lines_calling
from ._hooks import real_batch, step_of, uses_parameters
from ._upstream import assigns_from_table, dict_arg_last, module_calls, not_ours, tuple_assigns

MAIN = "sngan.py"


def _optimizer(net_key, capture):
    return lambda src, caps: assigns(src, r"(torch\.)?optim\.\w+", within="train", capture=capture,
                                     where=lambda s, t, v: uses_parameters(s, v, caps[net_key]))


def _scheduler(opt_key, capture):
    return lambda src, caps: assigns(src, r"(torch\.)?optim\.lr_scheduler\.\w+", within="train", capture=capture,
                                     where=lambda s, t, v: bool(v.args) and s.code(v.args[0].value) == caps[opt_key])


def _loss(n_args):
    """The value of `<loss> = loss_fn(...)` with n_args arguments (2: D on reals and fakes, 1: G)."""
    return lambda src, caps: assigns(src, r"loss_fn", within="train", edit="value",
                                     where=lambda s, t, v: len(v.args) == n_args)


HOOKS = (
    import_hook(MAIN, "import sparse_core.integration as sparse\n"
                      "import sparse_core.inject.flags_absl as sparse_absl\n"
                      "import sparse_core.inject.hooks as sparse_hooks"),
    Hook("CLI definition", MAIN, "the last module-level `flags.DEFINE_*(...)` call",
         lambda src, caps: module_calls(src, r"flags\.DEFINE_\w+")[-1:], "after",
         "sparse_absl.define_flags(interval=15625)  # official: 100 CIFAR-10 epochs (n_dis 5, batch 64)"),
    Hook("G constructed", MAIN, "`<G> = net_G_models[...](...)` in train()",
         lambda src, caps: assigns_from_table(src, "net_G_models", "train", "G"), "none", ""),
    Hook("D constructed", MAIN, "`<D> = net_D_models[...](...)` in train()",
         lambda src, caps: assigns_from_table(src, "net_D_models", "train", "D"), "after",
         "ctrl = sparse.controller_from_flags(sparse_absl.values(), ${G}, ${D}, on_error=sparse_absl.usage_error,\n"
         "                                    run_length=FLAGS.total_steps)"),
    Hook("G optimizer constructed", MAIN, "`<opt_G> = optim.*(<G>.parameters(), ...)` in train()",
         _optimizer("G", "opt_G"), "none", ""),
    Hook("D optimizer constructed", MAIN, "`<opt_D> = optim.*(<D>.parameters(), ...)` in train()",
         _optimizer("D", "opt_D"), "none", ""),
    Hook("G LR scheduler constructed", MAIN, "`<sched_G> = optim.lr_scheduler.*(<opt_G>, ...)` in train()",
         _scheduler("opt_G", "sched_G"), "none", ""),
    Hook("optimizers constructed", MAIN, "`<sched_D> = optim.lr_scheduler.*(<opt_D>, ...)` in train()",
         _scheduler("opt_D", "sched_D"), "after",
         "ctrl.bind(opt_G=${opt_G}, opt_D=${opt_D}, sched_G=[${sched_G}], sched_D=[${sched_D}])"),
    Hook("real batch for the FLOP count", MAIN, "`<real>, _ = next(...)` directly in train()'s body",
         lambda src, caps: tuple_assigns(src, r"next", "train", ("real", None), top=True), "after",
         "ctrl.measure_flops('G', lambda: ${G}(torch.zeros(2, FLAGS.z_dim, device=device)), batch=2)  # then each "
         "executed pass is charged\n"
         "ctrl.measure_flops('D', lambda: ${D}(${real}[:2].to(device)), batch=2)"),
    Hook("real batch", MAIN, "`<real> = next(...)...` in a loop of train() (D's real batch)",
         real_batch(r"next", within="train"), "after", "ctrl.observe_real(${real})"),
    Hook("D loss", MAIN, "`<loss> = loss_fn(<real>, <fake>)` in train()", _loss(2), "replace",
         "${operand} + ctrl.regularizer('D')"),
    Hook("D optimizer step", MAIN, "`<opt_D>.step()` in train()", step_of("opt_D", "train"), "replace",
         "ctrl.optimizer_step('D', ${opt_D})"),
    Hook("G loss", MAIN, "`<loss> = loss_fn(<D(G(z))>)` in train()", _loss(1), "replace",
         "${operand} + ctrl.regularizer('G')"),
    Hook("G optimizer step", MAIN, "`<opt_G>.step()` in train()", step_of("opt_G", "train"), "replace",
         "ctrl.optimizer_step('G', ${opt_G})"),
    Hook("iteration end", MAIN, "the line calling `<sched_D>.step()` in train()",
         lambda src, caps: lines_calling(src, re.escape(caps["sched_D"]) + r"\.step", within="train"), "after",
         "ctrl.advance(FLAGS.n_dis * FLAGS.batch_size)  # one iteration = n_dis D steps and one G step"),
    Hook("snapshot write", MAIN, "the dict literal passed to `torch.save({...}, ...)` in train()",
         lambda src, caps: dict_arg_last(src, r"torch\.save", within="train"), "replace",
         "${code},\n'sparse': ctrl.state_dict()"),
    Hook("stats row", MAIN, "the `torch.save(...)` line in train() (the eval_step block)",
         lambda src, caps: call_stmts(src, r"torch\.save", within="train"), "after",
         "sparse_hooks.log_scalars(writer, ctrl.stats(), step)"),
    Hook("metric evaluation", MAIN, "`<IS>, <FID> = get_inception_score_and_fid(...)` in train()",
         lambda src, caps: tuple_assigns(src, r"get_inception_score_and_fid", "train", (None, "fid")), "after",
         "ctrl.feed_metric(${fid}, name='fid')"),
    Hook("final export", MAIN, "`writer.close()` in train()",
         lambda src, caps: call_stmts(src, r"writer\.close", within="train"), "after",
         "sparse.export_generators(ctrl, 'G', FLAGS.logdir, {'arch': FLAGS.arch, 'z_dim': FLAGS.z_dim}, key='net_G')"),
)

RECIPES = [
    Recipe("sngan", "pytorch-gan-collections sngan.py", (
        Signature(MAIN, "does not import our vendor packages", not_ours),
        Signature(MAIN, "imports absl", lambda src: imports_module(src, "absl")),
        Signature(MAIN, "def train", has_function("train")),
        Signature("source/models/sngan.py", "class ResGenerator32", has_class("ResGenerator32")),
        Signature("source/losses.py", "exists"),
    ), HOOKS),
]
