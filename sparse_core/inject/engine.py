"""The injection engine: recognise a checkout, find hook points by syntax tree, build the diff.

Recipe format
=============
A recipe (`Recipe`) describes one codebase variant (e.g. our `vendor/sngan` tree, or upstream's SNGAN):

* `codebase`: the name `--codebase` takes (`sngan`, `autogan`, `progan`, `fastgan`, `stylegan2_ada`); several
  recipes may share one codebase name (our vendor tree and the upstream checkout are two variants of it).
* `variant`: a short human name of the variant, printed in reports ("sparse-gan vendor tree").
* `signatures`: how a checkout is recognised: a list of `Signature(file, what, test, weight)`. `test(source)`
  looks at the parsed file (`Source`) and returns True when the file has the syntactic feature (a class,
  a function, a call); without `test` the signature only asks that the file exists. A checkout's score for a
  recipe is the weight of the signatures that hold over the total. `--codebase auto` picks the one recipe whose
  signatures all hold and refuses, naming the candidates, when several or none do (then with the closest
  ones and what they lack). A named `--codebase` with several variants picks the one whose signatures all hold,
  else the best-scoring one, whose hook points then say what is missing.
* `hooks`: the hook points, in the order they are searched (later ones may use names captured by earlier ones).

A hook point (`Hook`) is:

* `name`: what it is, e.g. "G/D constructed", "D optimizer step", "D loss", "EMA update", "metric evaluation",
  "snapshot write", "resume load", "CLI definition", "import".
* `file`: the file (relative to the checkout, `/`-separated) it lives in.
* `looks_for`: one line saying what the finder looks for; refusals and `--check` print it.
* `find(source, captures) -> list[Match]`: the finder. It gets the parsed file and the names captured so far
  and returns every place that fits. Exactly one must: none is reported as *missing*, more than one as
  *ambiguous* (with the lines of each), and either way nothing is written. Finders are plain functions over
  libcst nodes: `Source` gives `walk(node, kind)`, `functions(name)`, `statements(within=...)`, `parent`,
  `code(node)` and `line(node)`; the helpers below (`assigns`, `call_stmts`, `lines_calling`, `calls`,
  `returns`, `last_import`, `body_of`, `enclosing`, `dotted`, ...) and `recipes/_hooks.py` (optimizer of a
  network, its step, the loss that step applies, ...) cover the usual anchors. A `Match` is the node to edit
  plus the names it captures (e.g. the optimizer's variable as `opt_D`), which the edit's text and later
  finders use. A finder that needs a name an earlier (missing) hook point should have captured reports its
  hook point as missing too.
* the edit: `action` and `text`. `action` is `"before"` (insert statement lines before the matched node's
  line, at its indentation, and above the comment lines at that indentation directly over it, which describe
  it), `"after"` (insert them after the node's last line, below a block's own trailing comments; with
  `skip_comments`, also below the comment-only lines at the same indentation that directly follow it),
  `"none"` (nothing is edited: the hook point is found for the names it captures), or `"replace"` (replace the
  matched node's source: an expression, a call, or a run of statements `Match(first, last=...)`). `text` is a
  `string.Template`: `${name}` is a captured name, `${code}` the matched node's own source and `${operand}` the
  same, parenthesised when it would not bind as the left operand of `+`. Lines after the first keep their
  indentation relative to the first line. The text is our hook line: the same text our patches insert into
  our own trees, with the codebase's names put in from the captures.
* `import_hook(file, text)` builds the hook that adds `text` (an import) after the file's last top-level
  import statement. A checkout counts as *already injected* when every file with an import hook already
  imports `sparse_core` (and as half-injected, refused, when only some do).

Edits are made on the file's text at the positions libcst reports, so everything else in the file (formatting,
comments, line endings) stays byte for byte; every edited file must still parse. The result is a unified diff
(`a/`, `b/` paths) that `sparse_core.patching` applies all-or-nothing.
"""
from __future__ import annotations

import bisect
import dataclasses
import difflib
import importlib
import pkgutil
import re
import string
from pathlib import Path
from typing import Callable, Iterable, Iterator

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider


class InjectError(RuntimeError):
    """Refused: nothing is written (exit 2)."""


class AlreadyInjected(InjectError):
    """The checkout already has the hooks (exit 1, nothing written)."""


# ----------------------------------------------------------------------------------------------------------------
# parsed files

class Source:
    """One parsed file of the checkout: its text, libcst tree, node positions and parents."""

    def __init__(self, root: Path, rel: str):
        self.rel = rel
        path = Path(root) / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InjectError(f"{rel}: file not found") from None
        except OSError as e:
            raise InjectError(f"{rel}: cannot read it: {e.strerror}") from None
        try:
            self.text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InjectError(f"{rel}: not UTF-8 text (byte {e.start}): cannot inject into it") from None
        try:
            module = cst.parse_module(self.text)
        except cst.ParserSyntaxError as e:
            raise InjectError(f"{rel}: does not parse as Python (line {e.raw_line}): {e.message}") from None
        self.module = module
        self._positions = None
        # every node once, parents first, and where each node's subtree lies in that order; read from the nodes'
        # fields (libcst's `children` runs a visitor on every access, far too slow to walk with)
        self._order, self._subtree, self._parent, self._kinds = [], {}, {}, {}
        stack = [(module, None, False)]
        while stack:
            node, parent, done = stack.pop()
            if done:
                self._subtree[id(node)] = (self._subtree[id(node)], len(self._order))
                continue
            self._subtree[id(node)] = len(self._order)
            self._parent[id(node)] = parent
            self._order.append(node)
            stack.append((node, None, True))
            stack.extend((child, node, False) for child in reversed(_fields_children(node)))
        self.newline = "\r\n" if self.text.split("\n", 1)[0].endswith("\r") else "\n"
        self._line_start = [0] + [m.end() for m in re.finditer("\n", self.text)]

    # positions -------------------------------------------------------------------------------------------------
    @property
    def _pos(self):
        if self._positions is None:     # computed on first use: recognising a checkout needs no positions
            self._positions = MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider)
        return self._positions

    def line(self, node: cst.CSTNode) -> int:
        """1-based line where the node starts."""
        return self._pos[node].start.line

    def end_line(self, node: cst.CSTNode) -> int:
        end = self._pos[node].end
        # a block's end is reported at column 0 of the line after it
        return end.line - 1 if end.column == 0 and end.line > self._pos[node].start.line else end.line

    def offset(self, line: int, column: int) -> int:
        return self._line_start[line - 1] + column

    def span(self, node: cst.CSTNode) -> tuple[int, int]:
        r = self._pos[node]
        return self.offset(r.start.line, r.start.column), self.offset(r.end.line, r.end.column)

    def code(self, node: cst.CSTNode) -> str:
        a, b = self.span(node)
        return self.text[a:b]

    def line_text(self, line: int) -> str:
        start = self._line_start[line - 1]
        end = self._line_start[line] if line < len(self._line_start) else len(self.text)
        return self.text[start:end]

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parent.get(id(node))

    # traversal -------------------------------------------------------------------------------------------------
    def walk(self, node: cst.CSTNode | None = None, kind=cst.CSTNode) -> Iterator:
        """Every node under `node` (default: the module), parents before children, of the given type(s)."""
        start, end = self._subtree[id(node if node is not None else self.module)]
        if kind not in self._kinds:      # positions (in the walk order) of every node of that kind, once
            self._kinds[kind] = [k for k, n in enumerate(self._order) if isinstance(n, kind)]
        found = self._kinds[kind]
        for k in found[bisect.bisect_left(found, start):bisect.bisect_left(found, end)]:
            yield self._order[k]

    def functions(self, name: str) -> list[cst.FunctionDef]:
        return [f for f in self.walk(kind=cst.FunctionDef) if f.name.value == name]

    def statements(self, within: str | None = None) -> Iterator:
        """Statement lines and compound statements in source order; `within`: only inside functions of that name."""
        roots = [self.module] if within is None else self.functions(within)
        for root in roots:
            for n in self.walk(root, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                if n is not root:
                    yield n


def _fields_children(node: cst.CSTNode) -> list:
    """The nodes directly under `node` (from its dataclass fields, in field order)."""
    out = []
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if isinstance(value, cst.CSTNode):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(v for v in value if isinstance(v, cst.CSTNode))
    return out


@dataclasses.dataclass
class Match:
    """A place a finder found: the node to edit (for a run of statements, the first; `last` the last one) and
    the names it captures."""
    node: cst.CSTNode
    captures: dict = dataclasses.field(default_factory=dict)
    last: cst.CSTNode | None = None


# ----------------------------------------------------------------------------------------------------------------
# finder helpers (syntax, not text)

def dotted(node) -> str | None:
    """`a.b.c` for a Name / Attribute chain, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr.value}"
    return None


def callee(node) -> str | None:
    """The dotted name a Call calls (`torch.optim.Adam`, `optim_D.step`), else None."""
    return dotted(node.func) if isinstance(node, cst.Call) else None


def _full(pattern: str, name: str | None) -> bool:
    return name is not None and re.fullmatch(pattern, name) is not None


def calls(src: Source, node, pattern: str) -> list[cst.Call]:
    """Calls under `node` whose callee's dotted name fully matches the regex `pattern`."""
    return [c for c in src.walk(node, cst.Call) if _full(pattern, callee(c))]


def single(stmt) -> cst.BaseSmallStatement | None:
    """The one small statement of a statement line (None for compound statements or `a; b` lines)."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def assignment(stmt):
    """(target, value) of a one-target assignment line `T = V`, else None."""
    s = single(stmt)
    if isinstance(s, cst.Assign) and len(s.targets) == 1:
        return s.targets[0].target, s.value
    return None


def body_of(src: Source, within: str) -> list:
    """The statements directly in the bodies of the functions named `within` (not inside loops or blocks)."""
    return [s for f in src.functions(within) if isinstance(f.body, cst.IndentedBlock) for s in f.body.body]


def assigns(src: Source, value: str, within: str | None = None, target: str | None = None,
            capture: str | None = None, where: Callable | None = None, edit: str = "line",
            top: bool = False) -> list[Match]:
    """Lines `T = V` where V contains a call whose callee fully matches `value` (regex), T (its source) fully
    matches `target` when given, and `where(src, target_node, value_node)` holds when given. The target's
    source is captured under `capture`. The Match's node is the line (`edit="line"`) or V (`edit="value"`, for
    a `replace` of the value). `top`: only statements directly in the body of `within`."""
    out = []
    for stmt in (body_of(src, within) if top else src.statements(within)):
        tv = assignment(stmt)
        if tv is None or not calls(src, tv[1], value):
            continue
        t = src.code(tv[0])
        if target is not None and not re.fullmatch(target, t):
            continue
        if where is not None and not where(src, *tv):
            continue
        out.append(Match(stmt if edit == "line" else tv[1], {capture: t} if capture else {}))
    return out


def call_stmts(src: Source, pattern: str, within: str | None = None, capture_obj: str | None = None,
               where: Callable | None = None, top: bool = False) -> list[Match]:
    """Lines that are one call `X.m(...)` whose callee fully matches `pattern`; `capture_obj` captures the
    object the method is called on (`X`); `where(src, call)` must hold when given. The Match's node is the call
    expression (a `replace` replaces the call; `before`/`after` use its line). `top`: only statements directly
    in the body of `within`."""
    out = []
    for stmt in (body_of(src, within) if top else src.statements(within)):
        s = single(stmt)
        if isinstance(s, cst.Expr) and isinstance(s.value, cst.Call) and _full(pattern, callee(s.value)):
            if where is not None and not where(src, s.value):
                continue
            caps = {}
            if capture_obj:
                func = s.value.func
                caps[capture_obj] = src.code(func.value) if isinstance(func, cst.Attribute) else src.code(func)
            out.append(Match(s.value, caps))
    return out


def lines_calling(src: Source, pattern: str, within: str | None = None) -> list[Match]:
    """Statement lines (not compound statements) with a call whose callee fully matches `pattern` anywhere in
    them, e.g. a `a.step(); b.step()` line."""
    return [Match(stmt) for stmt in src.statements(within)
            if isinstance(stmt, cst.SimpleStatementLine) and calls(src, stmt, pattern)]


def returns(src: Source, within: str, value: str | None = None) -> list[Match]:
    """`return V` lines in functions named `within`, V's source fully matching `value` when given (captured
    as `returned`)."""
    out = []
    for stmt in src.statements(within):
        s = single(stmt)
        if isinstance(s, cst.Return) and s.value is not None:
            v = src.code(s.value)
            if value is None or re.fullmatch(value, v):
                out.append(Match(stmt, {"returned": v}))
    return out


def last_import(src: Source) -> list[Match]:
    """The last import statement directly in the module body (not inside if/try/def)."""
    imports = [s for s in src.module.body if isinstance(single(s), (cst.Import, cst.ImportFrom))]
    return [Match(imports[-1])] if imports else []


def imports_module(src: Source, prefix: str) -> bool:
    """Whether any import in the file imports `prefix` or a submodule of it."""
    for node in src.walk(kind=(cst.Import, cst.ImportFrom)):
        if isinstance(node, cst.Import):
            names = [dotted(alias.name) for alias in node.names]
        else:
            names = [dotted(node.module)] if node.module is not None and not node.relative else []
        if any(n == prefix or (n or "").startswith(prefix + ".") for n in names):
            return True
    return False


def enclosing(src: Source, node, kind):
    """The nearest ancestor of `node` of the given type, or None."""
    n = src.parent(node)
    while n is not None and not isinstance(n, kind):
        n = src.parent(n)
    return n


def statement_of(src: Source, node):
    """The statement line or compound statement that contains `node`."""
    n = node
    while n is not None and not isinstance(n, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
        n = src.parent(n)
    return n


def has_function(name: str) -> Callable[[Source], bool]:
    return lambda src: bool(src.functions(name))


def has_class(name: str) -> Callable[[Source], bool]:
    return lambda src: any(c.name.value == name for c in src.walk(kind=cst.ClassDef))


def has_call(pattern: str) -> Callable[[Source], bool]:
    return lambda src: bool(calls(src, src.module, pattern))


# ----------------------------------------------------------------------------------------------------------------
# recipes

@dataclasses.dataclass(frozen=True)
class Signature:
    file: str
    what: str
    test: Callable[[Source], bool] | None = None
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Hook:
    name: str
    file: str
    looks_for: str
    find: Callable[[Source, dict], list[Match]]
    action: str            # "before" | "after" | "replace" | "none" (found for its captures only)
    text: str
    skip_comments: bool = False
    is_import: bool = False

    def __post_init__(self):
        if self.action not in ("before", "after", "replace", "none"):
            raise ValueError(f"hook {self.name!r}: action must be before, after, replace or none, not {self.action!r}")


def import_hook(file: str, text: str, name: str = "import") -> Hook:
    return Hook(name, file, "the last top-level import statement", lambda src, caps: last_import(src), "after", text,
                is_import=True)


@dataclasses.dataclass(frozen=True)
class Recipe:
    codebase: str
    variant: str
    signatures: tuple
    hooks: tuple

    @property
    def label(self) -> str:
        return f"{self.codebase} ({self.variant})"


def recipes() -> list[Recipe]:
    """Every recipe: each module of `sparse_core.inject.recipes` lists its own in `RECIPES`."""
    from . import recipes as package
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.extend(getattr(module, "RECIPES", []))
    return found


from . import CODEBASES  # noqa: E402  (the --codebase names)


# ----------------------------------------------------------------------------------------------------------------
# the run

class _Sources:
    def __init__(self, root: Path):
        self.root, self._cache = Path(root), {}

    def get(self, rel: str) -> Source | InjectError:
        if rel not in self._cache:
            try:
                self._cache[rel] = Source(self.root, rel)
            except InjectError as e:
                self._cache[rel] = e
        return self._cache[rel]


def _score(recipe: Recipe, sources: _Sources) -> tuple[float, list[str]]:
    total = got = 0.0
    unmet = []
    for sig in recipe.signatures:
        total += sig.weight
        src = sources.get(sig.file)
        ok = not isinstance(src, InjectError) and (sig.test is None or bool(sig.test(src)))
        if ok:
            got += sig.weight
        else:
            unmet.append(f"{sig.file}: {sig.what}")
    return (got / total if total else 0.0), unmet


def recognise(root: str | Path, codebase: str = "auto", candidates: Iterable[Recipe] | None = None,
              sources: _Sources | None = None) -> Recipe:
    """The recipe for the checkout at `root`: the one whose signatures all hold (among `codebase`'s variants
    when one is named; then the best-scoring variant of it when none holds fully)."""
    root = Path(root)
    if not root.is_dir():
        raise InjectError(f"{root}: not an existing folder")
    pool = list(recipes() if candidates is None else candidates)
    if codebase != "auto":
        pool = [r for r in pool if r.codebase == codebase]
        if not pool:
            raise InjectError(f"--codebase {codebase}: no recipe for it (known: {', '.join(CODEBASES)})")
    sources = sources or _Sources(root)
    scored = [(r, *_score(r, sources)) for r in pool]
    full = [r for r, s, _ in scored if s == 1.0]
    if len(full) == 1:
        return full[0]
    if len(full) > 1:
        raise InjectError(f"{root}: ambiguous, it fits {len(full)} recipes: {', '.join(r.label for r in full)}; "
                          f"name one with --codebase")
    best = sorted(scored, key=lambda t: -t[1])
    if codebase != "auto" and best and (len(best) == 1 or best[0][1] > best[1][1]):
        return best[0][0]        # named explicitly: its hook points say what is missing
    lines = [f"  {r.label}: {s:.0%} ({'; '.join(unmet)} missing)" for r, s, unmet in best[:3]]
    raise InjectError(f"{root}: no codebase recognised (closest:\n" + "\n".join(lines) + ")"
                      + ("" if codebase != "auto" else "\nname one with --codebase to see which hook points are missing"))


@dataclasses.dataclass
class Found:
    hook: Hook
    status: str                     # "found" | "missing" | "ambiguous"
    lines: list = dataclasses.field(default_factory=list)
    detail: str = ""
    file_problem: str = ""          # its file could not be read or parsed

    def describe(self) -> str:
        h = self.hook
        if self.status == "found":
            return f"{h.name}: found at {h.file}:{self.lines[0]}"
        where = f" (lines {', '.join(map(str, self.lines))})" if self.lines else ""
        extra = f"; {self.detail}" if self.detail else ""
        return f"{h.name}: {self.status} in {h.file}{where}: looked for {h.looks_for}{extra}"


@dataclasses.dataclass
class Injection:
    root: Path
    recipe: Recipe
    found: list
    new_text: dict            # rel -> new file text (only files that change)
    old_text: dict
    diff: str = ""

    @property
    def ok(self) -> bool:
        return all(f.status == "found" for f in self.found)

    def report(self) -> str:
        return "\n".join(f.describe() for f in self.found)

    def problems(self) -> list:
        """One line per hook point not found exactly once; one line per file that cannot be read or parsed."""
        out, files = [], {}
        for f in self.found:
            if f.file_problem:
                files.setdefault(f.file_problem, []).append(f.hook.name)
            elif f.status != "found":
                out.append(f.describe())
        return [f"{problem} (hook points there: {', '.join(names)})" for problem, names in files.items()] + out


def _operand(src: Source, node) -> str:
    code = src.code(node)
    tight = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.Imaginary,
             cst.SimpleString, cst.UnaryOperation, cst.List, cst.Tuple, cst.Dict)
    additive = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.MatrixMultiply,
                cst.Power)
    if getattr(node, "lpar", ()) or isinstance(node, tight) or (
            isinstance(node, cst.BinaryOperation) and isinstance(node.operator, additive)):
        return code
    return f"({code})"


def _indent_of(src: Source, node, hook: Hook) -> str:
    line = src.line(node)
    text = src.line_text(line)
    head = text[:src._pos[node].start.column]
    if head.strip():
        raise InjectError(f"{hook.file}:{line}: hook point {hook.name!r}: the statement shares its line with other "
                          f"code; cannot insert a line next to it")
    return head


def _render(template: str, first: str, rest: str, newline: str, values: dict) -> str:
    """The hook text: the template's first line after `first`, its other lines after `rest` (blank lines stay
    empty), joined with the file's newline, then the captured names put in. Only the template's own lines are
    indented: a multi-line `${code}` keeps its bytes."""
    lines = template.split("\n")
    lines = [first + lines[0]] + [rest + line if line.strip() else "" for line in lines[1:]]
    return string.Template(newline.join(lines)).substitute(values)


def _edit(src: Source, hook: Hook, m: Match, caps: dict) -> tuple[int, int, str]:
    """(start, end, replacement) in the file's text."""
    values = dict(caps)
    values.update(m.captures)
    if hook.action == "replace":
        end_node = m.last if m.last is not None else m.node
        start, end = src.span(m.node)[0], src.span(end_node)[1]
        values["code"] = src.text[start:end]
        values["operand"] = values["code"] if m.last is not None else _operand(src, m.node)
        indent = re.match(r"[ \t]*", src.line_text(src.line(m.node))).group(0)
        return start, end, _render(hook.text, "", indent, src.newline, values)
    anchor = _anchor(src, m.node if hook.action == "before" else (m.last or m.node))
    indent = _indent_of(src, anchor, hook)
    body = _render(hook.text, indent, indent, src.newline, values) + src.newline
    if hook.action == "before":
        first = src.line(anchor)
        while first > 1:     # above the comment lines (same indentation) that directly precede it
            prev = src.line_text(first - 1)
            if prev.lstrip().startswith("#") and prev[:len(prev) - len(prev.lstrip())] == indent:
                first -= 1
            else:
                break
        at = src.offset(first, 0)
        return at, at, body
    last = src.end_line(anchor)
    block = isinstance(anchor, cst.BaseCompoundStatement)
    while last < len(src._line_start):
        # comment lines right below: a block's own (indented deeper) always, same-indented ones on request
        nxt = src.line_text(last + 1)
        depth = nxt[:len(nxt) - len(nxt.lstrip())]
        if nxt.lstrip().startswith("#") and ((block and depth.startswith(indent) and depth != indent)
                                             or (hook.skip_comments and depth == indent)):
            last += 1
        else:
            break
    at = src.offset(last + 1, 0) if last < len(src._line_start) else len(src.text)
    prefix = "" if at == 0 or src.text[at - 1] == "\n" else src.newline
    return at, at, prefix + body


def _anchor(src: Source, node):
    """What an insertion goes next to: a parameter, decorator or except clause itself, else its statement."""
    if isinstance(node, (cst.Param, cst.Decorator, cst.ExceptHandler, cst.Finally)):
        return node
    return statement_of(src, node) or node


def inject(root: str | Path, codebase: str = "auto", recipe: Recipe | None = None) -> Injection:
    """Find every hook point of the checkout's recipe and compute the edited files (nothing is written).
    Raises AlreadyInjected, or InjectError when the checkout is not recognised; missing / ambiguous hook points
    are in the result (`ok` False, `report()`)."""
    root = Path(root)
    sources = _Sources(root)
    recipe = recipe or recognise(root, codebase, sources=sources)
    import_files = sorted({h.file for h in recipe.hooks if h.is_import})
    done = [f for f in import_files
            if not isinstance(sources.get(f), InjectError) and imports_module(sources.get(f), "sparse_core")]
    if import_files and len(done) == len(import_files):
        raise AlreadyInjected(f"{root}: already injected ({recipe.label}: {', '.join(done)} already import "
                              f"sparse_core)")
    if done:
        raise InjectError(f"{root}: partly injected: {', '.join(done)} already import sparse_core but "
                          f"{', '.join(f for f in import_files if f not in done)} do not; restore the files first")
    caps: dict = {}
    found, edits = [], {}
    for hook in recipe.hooks:
        src = sources.get(hook.file)
        if isinstance(src, InjectError):
            found.append(Found(hook, "missing", detail=str(src), file_problem=str(src)))
            continue
        try:
            matches = hook.find(src, caps)
        except KeyError as e:
            found.append(Found(hook, "missing", detail=f"needs {e.args[0]!r}, which an earlier hook point "
                                                          f"(missing) captures"))
            continue
        except Exception as e:  # noqa: BLE001  a finder meeting syntax it does not expect: refuse, naming it
            found.append(Found(hook, "missing", detail=f"its finder failed on this file ({type(e).__name__}: {e})"))
            continue
        matches = sorted(matches, key=lambda m: src.span(m.node))
        lines = [src.line(m.node) for m in matches]
        if len(matches) != 1:
            found.append(Found(hook, "missing" if not matches else "ambiguous", lines))
            continue
        found.append(Found(hook, "found", lines))
        m = matches[0]
        for key, value in m.captures.items():
            if key in caps and caps[key] != value:
                raise InjectError(f"recipe {recipe.label}: hook point {hook.name!r} captures {key}={value!r} but an "
                                  f"earlier one captured {caps[key]!r}")
        caps.update(m.captures)
        if hook.action == "none":
            continue
        edits.setdefault(hook.file, []).append((hook, m, dict(caps)))
    result = Injection(root, recipe, found, {}, {})
    if not result.ok:
        return result
    for rel, items in edits.items():
        src = sources.get(rel)
        spans = []
        for k, (hook, m, c) in enumerate(items):
            try:
                spans.append((*_edit(src, hook, m, c), k))
            except (KeyError, ValueError) as e:
                raise InjectError(f"recipe {recipe.label}: hook point {hook.name!r}: its text uses a name no "
                                  f"hook point captured, or a bad placeholder ({e})") from None
        spans.sort(key=lambda s: (s[0], s[1], s[3]))
        for a, b in zip(spans, spans[1:]):
            if b[0] < a[1]:
                raise InjectError(f"recipe {recipe.label}: two hook points edit overlapping text of {rel}")
        out, pos = [], 0
        for start, end, text, _ in spans:
            out.append(src.text[pos:start])
            out.append(text)
            pos = end
        out.append(src.text[pos:])
        new = "".join(out)
        try:
            cst.parse_module(new)
        except cst.ParserSyntaxError as e:
            raise InjectError(f"{rel}: the injected file would not parse (line {e.raw_line}): {e.message}; "
                              f"nothing was written") from None
        result.old_text[rel], result.new_text[rel] = src.text, new
    result.diff = unified_diff(result.old_text, result.new_text)
    return result


def unified_diff(old: dict, new: dict) -> str:
    """`diff -ruN a/ b/`-style text of the changed files (in the recipe's file order)."""
    parts = []
    for rel in new:
        a, b = old[rel].splitlines(keepends=True), new[rel].splitlines(keepends=True)
        body = list(difflib.unified_diff(a, b, f"a/{rel}", f"b/{rel}", n=3))
        if not body:
            continue
        parts.append(f"diff -ruN a/{rel} b/{rel}\n")
        for k, line in enumerate(body):
            if k < 2:
                line = line.rstrip("\n") + "\n"
                if line.startswith(("--- ", "+++ ")):
                    line = line.split("\t")[0].rstrip() + "\n"
            elif not line.endswith("\n"):
                line += "\n\\ No newline at end of file\n"
            parts.append(line)
    return "".join(parts)
