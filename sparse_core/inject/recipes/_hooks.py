"""Finders several recipes share (no recipes here). Each returns a `find(source, captures)` function."""
import re

import libcst as cst

from ..engine import Hook, Match, assigns, assignment, call_stmts, callee, calls, enclosing, single, statement_of


def uses_parameters(src, node, name):
    """Whether `node` calls `<name>.parameters` (an optimizer built over that network's parameters)."""
    return bool(calls(src, node, re.escape(name) + r"\.parameters"))


def optimizer_of(net_key, capture, within="main", pattern=r"torch\.optim\.\w+"):
    """`<capture> = torch.optim.*(<net>.parameters(), ...)`."""
    return lambda src, caps: assigns(src, pattern, within=within, capture=capture,
                                     where=lambda s, t, v: uses_parameters(s, v, caps[net_key]))


def scheduler_of(opt_key, capture, within="main"):
    """`<capture> = torch.optim.lr_scheduler.*(<opt>, ...)`."""
    def where(caps):
        return lambda s, t, v: bool(v.args) and s.code(v.args[0].value) == caps[opt_key]
    return lambda src, caps: assigns(src, r"torch\.optim\.lr_scheduler\.\w+", within=within, capture=capture,
                                     where=where(caps))


def step_of(opt_key, within="main"):
    """The line `<opt>.step()`."""
    return lambda src, caps: call_stmts(src, re.escape(caps[opt_key]) + r"\.step", within=within)


def first_arg_is(src, call, name):
    return bool(call.args) and src.code(call.args[0].value) == name


def primary_metric(pattern, capture="metric", within="main"):
    """`<metric> = <call matching pattern>(...)` outside any `for ... in <x>.extra_metrics` loop (the --metric
    evaluation, not the logged-only extra metrics)."""
    def outside_extra(src, target, value):
        loop = enclosing(src, value, cst.For)
        while loop is not None:
            if re.fullmatch(r"(.+\.)?extra_metrics", src.code(loop.iter)):
                return False
            loop = enclosing(src, loop, cst.For)
        return True
    return lambda src, caps: assigns(src, pattern, within=within, capture=capture, where=outside_extra)


def aug_assign(name, within="main", capture="added"):
    """The line `<name> += <value>` (its value's source captured)."""
    def find(src, caps):
        out = []
        for stmt in src.statements(within):
            s = single(stmt)
            if isinstance(s, cst.AugAssign) and isinstance(s.operator, cst.AddAssign) and src.code(s.target) == name:
                out.append(Match(stmt, {capture: src.code(s.value)}))
        return out
    return find


def loss_of_step(opt_key, within="main"):
    """The value of the loss that `<opt>.step()` applies: in the block of the step, the nearest `<loss>.backward()`
    line before it, and the nearest `<loss> = ...` line before that (for a `replace` that adds to the loss)."""
    def find(src, caps):
        out = []
        for m in step_of(opt_key, within)(src, caps):
            step = statement_of(src, m.node)
            block = src.parent(step)
            body = list(getattr(block, "body", ()))
            before = body[:body.index(step)] if step in body else []
            backward = [s for s in before if isinstance(single(s), cst.Expr) and
                        isinstance(single(s).value, cst.Call) and (callee(single(s).value) or "").endswith(".backward")]
            if not backward:
                continue
            loss = callee(single(backward[-1]).value)[:-len(".backward")]
            assigned = [s for s in before[:before.index(backward[-1])]
                        if assignment(s) is not None and src.code(assignment(s)[0]) == loss]
            if assigned:
                out.append(Match(assignment(assigned[-1])[1]))
        return out
    return find


def real_batch(pattern, within="main", capture="real"):
    """`<real> = <call matching pattern>(...)` inside a loop of `within`: where the loop reads D's real batch (a
    batch read before the loop, e.g. for a sample grid, is not it). Its name is captured."""
    def in_loop(src, target, value):
        return isinstance(target, cst.Name) and enclosing(src, value, (cst.For, cst.While)) is not None
    return lambda src, caps: assigns(src, pattern, within=within, capture=capture, where=in_loop)


def batch_loop(pattern, within="main", capture="real"):
    """The first statement in the body of `for <real> in <call matching pattern>(...)` in `within` (an edit
    `before` it sees each batch as the loop hands it over); the loop variable is captured."""
    def find(src, caps):
        out = []
        for f in src.functions(within):
            for loop in src.walk(f, cst.For):
                if isinstance(loop.target, cst.Name) and calls(src, loop.iter, pattern) and \
                        isinstance(loop.body, cst.IndentedBlock) and loop.body.body:
                    out.append(Match(loop.body.body[0], {capture: src.code(loop.target)}))
        return out
    return find


# the hook line after the progress line is formatted (the same text in every recipe of our vendor trees)
PROGRESS_TEXT = "${line} += \"  \" + ctrl.progress()  # phase, sparsity per network, FLOPs against dense"


def progress_tick(within="main"):
    """`<line> = progress.tick(...)`: the formatted per-tick progress line (its name captured as `line`)."""
    return lambda src, caps: assigns(src, r"progress\.tick", within=within, capture="line")


def stats_row(file, within="main", row="stats"):
    """The hook of our vendors' per-tick row: the controller's stats join it before `stats_writer.write(...)`."""
    return Hook("stats row", file, f"`stats_writer.write(<row>)` in {within}()",
                lambda src, caps: call_stmts(src, r"stats_writer\.write", within=within), "before",
                f"{row}.update(ctrl.stats())")


def snapshot_dict(file, builder, name="snapshot"):
    """The hook of our vendors' snapshot dict `<name> = <builder>(...)`: the controller's state goes into it."""
    return Hook("snapshot write", file, f"`<{name}> = {builder}(...)` in main()",
                lambda src, caps: assigns(src, builder, within="main", capture="snapshot"), "after",
                "${snapshot}[\"sparse\"] = ctrl.state_dict()")


def vendor_metric(file, comment=""):
    """The hook of our vendors' primary metric `<metric> = compute_metric_for(...)`: fed with its name."""
    return Hook("metric evaluation", file, "`<metric> = compute_metric_for(...)` in main(), outside the loop over "
                "extra metrics", primary_metric(r"compute_metric_for"), "after",
                "ctrl.feed_metric(${metric}, name=args.metric)" + comment)


def losses_and_steps(file, within="main"):
    """The hooks of a loop written `<loss> = ...; <loss>.backward(); <opt>.step()` for D then G: the method's
    regulariser joins each loss, and each optimizer step goes through the controller."""
    hooks = []
    for net in ("D", "G"):
        hooks.append(Hook(f"{net} loss", file, f"`<loss> = ...` followed by `<loss>.backward()` and "
                          f"`<opt_{net}>.step()` in {within}()", loss_of_step(f"opt_{net}", within), "replace",
                          f"${{operand}} + ctrl.regularizer(\"{net}\")"))
        hooks.append(Hook(f"{net} optimizer step", file, f"`<opt_{net}>.step()` in {within}()",
                          step_of(f"opt_{net}", within), "replace", f"ctrl.optimizer_step(\"{net}\", ${{opt_{net}}})"))
    return tuple(hooks)
