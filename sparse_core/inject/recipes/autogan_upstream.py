"""AutoGAN as VITA-Group publishes it (VITA-Group/AutoGAN, checked at a5eeef0, the last commit): cfg.py
(parse_args), train.py (main(): networks by model name, init, optimizers, the averaged-G parameter list, resume
from <load_path>/Model/checkpoint.pth, the epoch loop, validate, save_checkpoint) and functions.py (train(): the D
step, the n_critic G step, the optional LR decay, the averaged-G update). The hook lines are those of
patches/autogan.patch with upstream's names. The controller reaches functions.train as a new keyword-only
parameter `sparse_ctrl` (train.py passes it); a script of the repository that calls functions.train without it
(train_derived.py, not injected) stops with Python's own "missing ... argument 'sparse_ctrl'" error.

Upstream's own behaviour stays: CUDA tensors, the TensorFlow Inception IS / FID of validate(), tensorboardX
(the controller's numbers join the same writer once per epoch), Model/checkpoint.pth (it gains a 'sparse'
entry). --lr_decay with a sparse method is refused: LinearLrDecay sets the LR itself every G step and would
undo the method's LR scale (Re-GAN's dense phases).
"""
import re

from ..engine import Hook, Match, Recipe, Signature, assigns, call_stmts, has_function, import_hook
from ._hooks import uses_parameters
from ._upstream import call_last_arg, dict_arg_last, for_loops, last_param_end, not_ours, plain_assigns, string_in, \
    top_loops, tuple_assigns

CFG, TRAIN, FUNCS = "cfg.py", "train.py", "functions.py"


def _net(cls, capture):
    """`<net> = eval("models." + ... + ".<cls>")(args=args)...` in main()."""
    return lambda src, caps: assigns(src, r"eval", within="main", capture=capture, top=True,
                                     where=lambda s, t, v: string_in(s, v, "." + cls))


def _optimizer(net_key, capture):
    return lambda src, caps: assigns(src, r"torch\.optim\.\w+", within="main", capture=capture,
                                     where=lambda s, t, v: uses_parameters(s, v, caps[net_key]))


def _resume_ema(src, caps):
    """`<G_ema> = copy_params(<the loaded averaged G>)` inside main()'s resume block."""
    return assigns(src, r"copy_params", target=re.escape(caps["G_ema"]), within="main",
                   where=lambda s, t, v: bool(v.args) and s.code(v.args[0].value) != caps["G"])


HOOKS = (
    import_hook(CFG, "import sparse_core.inject.hooks as sparse_hooks"),
    Hook("CLI definition", CFG, "`<opt> = <parser>.parse_args(...)` in parse_args()",
         lambda src, caps: [Match(m.node, {"parser": m.captures["value"].split(".parse_args")[0]})
                            for m in plain_assigns(src, r"\w+", within="parse_args", capture="value")
                            if re.fullmatch(r"\w+\.parse_args\(.*\)", m.captures["value"], re.S)], "before",
         "sparse_hooks.add_argparse_flags(${parser}, interval=3910, warmup=78200)  # official: 5 / 100 epochs of "
         "782 D steps"),
    import_hook(TRAIN, "import sparse_core.integration as sparse\nimport sparse_core.inject.hooks as sparse_hooks"),
    Hook("G constructed", TRAIN, "`<G> = eval(\"models.\" + ... + \".Generator\")(...)` in main()",
         _net("Generator", "G"), "none", ""),
    Hook("D constructed", TRAIN, "`<D> = eval(\"models.\" + ... + \".Discriminator\")(...)` in main()",
         _net("Discriminator", "D"), "none", ""),
    Hook("networks initialised", TRAIN, "the line `<D>.apply(...)` in main()",
         lambda src, caps: call_stmts(src, re.escape(caps["D"]) + r"\.apply", within="main"), "after",
         "ctrl = sparse.controller_from_flags(args, ${G}, ${D}, on_error=sparse_hooks.exit_usage)"),
    Hook("G optimizer constructed", TRAIN, "`<opt_G> = torch.optim.*(... <G>.parameters() ...)` in main()",
         _optimizer("G", "opt_G"), "none", ""),
    Hook("D optimizer constructed", TRAIN, "`<opt_D> = torch.optim.*(... <D>.parameters() ...)` in main()",
         _optimizer("D", "opt_D"), "none", ""),
    Hook("averaged G", TRAIN, "`<G_ema> = copy_params(<G>)` directly in main()'s body",
         lambda src, caps: assigns(src, r"copy_params", within="main", capture="G_ema", top=True), "after",
         "ctrl.bind(G_ema=${G_ema}, opt_G=${opt_G}, opt_D=${opt_D})\n"
         "ctrl.measure_flops('G', lambda: ${G}(fixed_z[:2]), batch=2)  # then each executed pass is charged\n"
         "ctrl.measure_flops('D', lambda: ${D}(fixed_z.new_zeros(2, 3, args.img_size, args.img_size)), batch=2)\n"
         "if args.lr_decay and ctrl.targets:\n"
         "    sparse_hooks.exit_usage(f'--lr_decay with --sparse {ctrl.method}: LinearLrDecay sets the LR every G step "
         "and would undo the method\\'s LR scale')"),
    Hook("resume load", TRAIN, "`<checkpoint> = torch.load(...)` in main()",
         lambda src, caps: assigns(src, r"torch\.load", within="main", capture="checkpoint"), "after",
         "sparse_hooks.load_resume_state(ctrl, ${checkpoint}.get('sparse', {}), args.load_path)  # before the "
         "weights: other settings are refused by name"),
    Hook("resumed averaged G", TRAIN, "`<G_ema> = copy_params(<loaded averaged G>)` in main()'s resume block",
         _resume_ema, "after", "ctrl.bind(G_ema=${G_ema})  # the loaded averaged G replaces the fresh one"),
    Hook("controller to functions.train", TRAIN, "the last argument of the `train(...)` call in main()",
         lambda src, caps: call_last_arg(src, r"train", within="main"), "replace", "${code},\nsparse_ctrl=ctrl"),
    Hook("stats row", TRAIN, "the `train(...)` call line in main() (once per epoch)",
         lambda src, caps: call_stmts(src, r"train", within="main"), "after",
         "sparse_hooks.log_scalars(writer_dict['writer'], ctrl.stats(), writer_dict['train_global_steps'])"),
    Hook("metric evaluation", TRAIN, "`<IS>, <FID> = validate(...)` in main()",
         lambda src, caps: tuple_assigns(src, r"validate", "main", (None, "fid")), "after",
         "ctrl.feed_metric(${fid}, name='fid')"),
    Hook("snapshot write", TRAIN, "the dict literal passed to `save_checkpoint({...}, ...)` in main()",
         lambda src, caps: dict_arg_last(src, r"save_checkpoint", within="main"), "replace",
         "${code},\n\"sparse\": ctrl.state_dict()"),
    Hook("final export", TRAIN, "the epoch `for` loop directly in main()'s body",
         lambda src, caps: top_loops(src, "main"), "after",
         "sparse.export_generators(ctrl, 'G_ema', args.path_helper['ckpt_path'], {'gen_model': args.gen_model},\n"
         "                         key='avg_gen_state_dict')"),
    Hook("train() parameters", FUNCS, "the last parameter of def train(...) (no *args / **kwargs)",
         lambda src, caps: last_param_end(src, "train"), "replace", "${code},\n*,\nsparse_ctrl"),
    Hook("D loss", FUNCS, "`d_loss = ...` in train()",
         lambda src, caps: assigns(src, r".*", target=r"d_loss", within="train"), "after",
         "d_loss = d_loss + sparse_ctrl.regularizer('D')"),
    Hook("D optimizer step", FUNCS, "`dis_optimizer.step()` in train()",
         lambda src, caps: call_stmts(src, r"dis_optimizer\.step", within="train"), "replace",
         "sparse_ctrl.optimizer_step('D', dis_optimizer)"),
    Hook("G loss", FUNCS, "`g_loss = ...` in train()",
         lambda src, caps: assigns(src, r".*", target=r"g_loss", within="train", edit="value"), "replace",
         "${operand} + sparse_ctrl.regularizer('G')"),
    Hook("G optimizer step", FUNCS, "`gen_optimizer.step()` in train()",
         lambda src, caps: call_stmts(src, r"gen_optimizer\.step", within="train"), "replace",
         "sparse_ctrl.optimizer_step('G', gen_optimizer)"),
    Hook("EMA update", FUNCS, "the `for ... in zip(gen_net.parameters(), gen_avg_param)` update in train()",
         lambda src, caps: for_loops(src, "train", r"gen_avg_param"), "after", "sparse_ctrl.after_ema()"),
    Hook("real batch", FUNCS, "`<real> = imgs.type(...)` in train()",
         lambda src, caps: assigns(src, r"imgs\.type", within="train", capture="real"), "after",
         "sparse_ctrl.observe_real(${real})"),
    Hook("iteration counter", FUNCS, "`writer_dict[\"train_global_steps\"] = ...` in train()",
         lambda src, caps: plain_assigns(src, r"writer_dict\[(['\"])train_global_steps\1\]", within="train"),
         "after", "sparse_ctrl.advance(${real}.size(0))  # one iteration = one D step (and the G step after it)"),
)

RECIPES = [
    Recipe("autogan", "VITA-Group AutoGAN", (
        Signature(TRAIN, "does not import our vendor packages", not_ours),
        Signature(CFG, "def parse_args", has_function("parse_args")),
        Signature(TRAIN, "def main", has_function("main")),
        Signature(FUNCS, "def train", has_function("train")),
        Signature(FUNCS, "def validate", has_function("validate")),
        Signature(FUNCS, "def copy_params", has_function("copy_params")),
    ), HOOKS),
]
