"""Finders several recipes share (no recipes here). Each returns a `find(source, captures)` function."""
import re

from ..engine import assigns, call_stmts, calls


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


def value_of(pattern, within="main"):
    """The value of the one line `<x> = <call matching pattern>(...)` (for a `replace` that adds to it)."""
    return lambda src, caps: assigns(src, pattern, within=within, edit="value")


def first_arg_is(src, call, name):
    return bool(call.args) and src.code(call.args[0].value) == name
