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
    """The last parameter of every function named `func` (a `before` edit adds a parameter line in front of it)."""
    out = []
    for f in src.functions(func):
        params = list(f.params.params) + list(f.params.kwonly_params)
        if params and f.params.star_kwarg is None:
            out.append(Match(params[-1]))
    return out


def last_param_end(src: Source, func: str) -> list[Match]:
    """The end of the last parameter of every function named `func` without *args / **kwargs: its default value,
    else its name (a `replace` with `${code}, <new parameter>` appends a parameter, on one line or several)."""
    out = []
    for f in src.functions(func):
        params = list(f.params.params)
        if params and not f.params.kwonly_params and f.params.star_kwarg is None \
                and not isinstance(f.params.star_arg, cst.Param):
            last = params[-1]
            out.append(Match(last.default if last.default is not None else last.name))
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


def dict_arg_last(src: Source, call_pattern: str, within: str | None = None, has_key: str | None = None) -> list[Match]:
    """The last entry of the dict literal passed as the first argument of a `call_pattern(...)` call (a
    `replace` with `${code},\\n<new entry>` adds an entry after it, keeping the literal's layout); `has_key`: only
    a literal with that string key."""
    out = []
    for root in in_functions(src, within):
        for c in calls(src, root, call_pattern):
            if c.args and isinstance(c.args[0].value, cst.Dict) and c.args[0].value.elements and (
                    has_key is None or any(isinstance(e, cst.DictElement) and isinstance(e.key, cst.SimpleString)
                                           and e.key.evaluated_value == has_key for e in c.args[0].value.elements)):
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


def module_calls(src: Source, pattern: str) -> list[Match]:
    """Statement-level calls directly in the module body whose callee fully matches `pattern`, in order."""
    return [Match(single(s).value) for s in src.module.body
            if isinstance(single(s), cst.Expr) and isinstance(single(s).value, cst.Call)
            and re.fullmatch(pattern, callee(single(s).value) or "")]


def assigns_from_table(src: Source, table: str, within: str | None, capture: str) -> list[Match]:
    """Lines `T = <table>[...](...)...` (a network picked from a dict of classes by a flag); captures T."""
    out = []
    for stmt in src.statements(within):
        s = single(stmt)
        if isinstance(s, cst.Assign) and len(s.targets) == 1 and any(
                isinstance(n.value, cst.Name) and n.value.value == table
                for n in src.walk(s.value, cst.Subscript)):
            out.append(Match(stmt, {capture: src.code(s.targets[0].target)}))
    return out


def tuple_assigns(src: Source, value: str, within: str | None, names: tuple, top: bool = False) -> list[Match]:
    """Lines `a, b = <call matching value>(...)`: the tuple's elements are captured under `names`."""
    from ..engine import assigns
    out = []
    for m in assigns(src, value, within=within, top=top):
        target = single(m.node).targets[0].target
        if isinstance(target, cst.Tuple) and len(target.elements) == len(names):
            out.append(Match(m.node, {n: src.code(e.value) for n, e in zip(names, target.elements) if n}))
    return out


def plain_assigns(src: Source, target: str, within: str | None = None, capture: str | None = None,
                  top: bool = False) -> list[Match]:
    """Lines `T = V` (any V, no call needed) with T's source fully matching `target`; V captured under `capture`."""
    from ..engine import assignment, body_of
    out = []
    for stmt in (body_of(src, within) if top else src.statements(within)):
        tv = assignment(stmt)
        if tv is not None and re.fullmatch(target, src.code(tv[0])):
            out.append(Match(stmt, {capture: src.code(tv[1])} if capture else {}))
    return out


def call_last_arg(src: Source, call_pattern: str, within: str | None = None) -> list[Match]:
    """The last argument of every call `call_pattern(...)` (statement or expression) in `within`."""
    return [Match(c.args[-1]) for root in in_functions(src, within) for c in calls(src, root, call_pattern)
            if c.args]


def string_in(src: Source, node, text: str) -> bool:
    """Whether a string literal under `node` contains `text` (e.g. the class name in eval("models." + ...))."""
    return any(isinstance(s, cst.SimpleString) and text in s.evaluated_value
               for s in src.walk(node, cst.SimpleString))


def top_loops(src: Source, within: str, kind=cst.For) -> list[Match]:
    """Loops of `kind` directly in the body of `within` (the training loop a final hook goes after)."""
    from ..engine import body_of
    return [Match(s) for s in body_of(src, within) if isinstance(s, kind)]
