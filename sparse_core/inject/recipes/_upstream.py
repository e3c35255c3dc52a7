"""Finder helpers shared by the recipes for the upstream checkouts (`*_upstream.py`); lists no recipe."""
from __future__ import annotations

import re

import libcst as cst

from ..engine import Match, Source, calls, callee, dotted, imports_module, single

RECIPES: list = []


def not_ours(src: Source) -> bool:
    """A signature test: the file does not import our vendor packages (our own trees do: they have their recipes)."""
    return not imports_module(src, "vendor")


def in_functions(src: Source, within: str | None):
    return [src.module] if within is None else src.functions(within)


def walk_in(src: Source, within: str | None, kind):
    for root in in_functions(src, within):
        yield from src.walk(root, kind)


def last_param(src: Source, func: str) -> list[Match]:
    """The last parameter of every function named `func` (a `before` edit adds a parameter in front of it)."""
    out = []
    for f in src.functions(func):
        params = list(f.params.params) + list(f.params.kwonly_params)
        if params and f.params.star_kwarg is None:
            out.append(Match(params[-1]))
    return out


def last_decorator(src: Source, func: str, pattern: str) -> list[Match]:
    """The last decorator of each function named `func` that has a decorator calling / naming `pattern`."""
    out = []
    for f in src.functions(func):
        names = [dotted(d.decorator.func) if isinstance(d.decorator, cst.Call) else dotted(d.decorator)
                 for d in f.decorators]
        if any(n is not None and re.fullmatch(pattern, n) for n in names):
            out.append(Match(f.decorators[-1]))
    return out


def aug_assigns(src: Source, target: str, within: str | None = None, capture: str | None = None) -> list[Match]:
    """Lines `T += V` with T's source fully matching `target`; V's source is captured under `capture`."""
    out = []
    for stmt in src.statements(within):
        s = single(stmt)
        if isinstance(s, cst.AugAssign) and isinstance(s.operator, cst.AddAssign) \
                and re.fullmatch(target, src.code(s.target)):
            out.append(Match(stmt, {capture: src.code(s.value)} if capture else {}))
    return out


def for_loops(src: Source, within: str | None, iter_has: str, target: str | None = None) -> list[Match]:
    """`for` statements whose iterable contains a name / dotted name fully matching `iter_has` (and whose
    loop target's source fully matches `target` when given)."""
    out = []
    for node in walk_in(src, within, cst.For):
        names = [dotted(n) for n in src.walk(node.iter, (cst.Name, cst.Attribute))]
        if any(n is not None and re.fullmatch(iter_has, n) for n in names) and \
                (target is None or re.fullmatch(target, src.code(node.target))):
            out.append(Match(node, {"loop_target": src.code(node.target)}))
    return out


def backward_of(src: Source, loss: str, within: str | None = None, prefix: str = "") -> list[Match]:
    """Lines `<loss>.mean().mul(<gain>).backward()` (NVlabs' loss.py); captures `<prefix>loss`, `<prefix>gain`."""
    out = []
    for stmt in src.statements(within):
        s = single(stmt)
        if not (isinstance(s, cst.Expr) and isinstance(s.value, cst.Call)):
            continue
        c = s.value
        chain = []
        while isinstance(c, cst.Call) and isinstance(c.func, cst.Attribute):
            chain.append((c.func.attr.value, c))
            c = c.func.value
        if [n for n, _ in chain] == ["backward", "mul", "mean"] and isinstance(c, cst.Name) \
                and re.fullmatch(loss, c.value) and len(chain[1][1].args) == 1:
            out.append(Match(s.value, {prefix + "loss": c.value, prefix + "gain": src.code(chain[1][1].args[0].value)}))
    return out


def dict_arg_last(src: Source, call_pattern: str, within: str | None = None) -> list[Match]:
    """The last entry of the dict literal passed as the first argument of a `call_pattern(...)` call (a
    `replace` with `${code},\\n<new entry>` adds an entry after it, keeping the literal's layout)."""
    out = []
    for root in in_functions(src, within):
        for c in calls(src, root, call_pattern):
            if c.args and isinstance(c.args[0].value, cst.Dict) and c.args[0].value.elements:
                out.append(Match(c.args[0].value.elements[-1]))
    return out


def last_arg(src: Source, call_pattern: str, within: str | None = None) -> list[Match]:
    """The last argument of each statement-level call `call_pattern(...)` (a `replace` adds one after it)."""
    out = []
    for stmt in src.statements(within):
        s = single(stmt)
        if isinstance(s, cst.Expr) and isinstance(s.value, cst.Call) and s.value.args \
                and re.fullmatch(call_pattern, callee(s.value) or ""):
            out.append(Match(s.value.args[-1]))
    return out


def enclosing_with(src: Source, node):
    """`node`'s statement, or the `with` block it sits directly in (the whole block is the step)."""
    parent = src.parent(src.parent(node)) if src.parent(node) is not None else None
    return parent if isinstance(parent, cst.With) else node
