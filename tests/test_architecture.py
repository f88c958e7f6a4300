"""Static architecture checks (docs/architecture.md): the source is parsed with :mod:`ast`, no
module of fiqa_sdk or fiqa_bench is imported, no data or model is read.

1. Every error fiqa_sdk and fiqa_bench raise on purpose is a :class:`~fiqa_sdk.errors.FiqaError`
   subclass: no bare built-in exception is raised (``NotImplementedError`` only in abstract
   methods).
2. No module of either package resolves data through the checkout layout: no path built from
   ``__file__`` leaves the package folder, and no path is joined with the ``"shared"`` folder
   of the checkout.
3. No import cycle among fiqa_sdk's modules (nor among fiqa_bench's), counting function-level
   imports; the remaining edges are listed in :data:`ALLOWED_CYCLE_EDGES`, which may only
   shrink. Imports also point down the layers (:data:`LAYERS`): inference modules never import
   eval, train or the CLI.
4. Nothing in ``fiqa_bench/`` (the research harness) or ``examples/`` imports a private
   fiqa_sdk name (a module or name starting with ``_``).
5. fiqa_bench sits on top of fiqa_sdk: no module of fiqa_sdk imports fiqa_bench, at any level.
6. The command line stays thin: every module of ``fiqa_sdk/cli/`` is short (``CLI_MAX_LINES``)
   and holds no module-level logic (imports, constants and functions only); each sub-command
   module defines ``NAME``, ``HELP``, ``HEAVY``, ``add_parser`` and ``run``.

Each check has a self-test on a synthetic bad case so that it can be seen to fail.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fiqa_sdk"
BENCH = ROOT / "fiqa_bench"

#: Built-in exceptions that fiqa_sdk must not raise bare (a typed ``FiqaError`` subclass that
#: also derives from the built-in keeps ``except ValueError`` working).
BUILTIN_EXCEPTIONS = frozenset(
    n for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), BaseException)
) - {"SystemExit", "KeyboardInterrupt", "GeneratorExit", "StopIteration", "StopAsyncIteration"}

#: ``(module, function)`` allowed to build a path above the package folder from ``__file__``:
#: the ``sys.path`` entry that holds fiqa_sdk (the same for an install and a checkout), which
#: a local Ray instance's workers need to import this very package; it is not a data location.
FILE_PATH_EXEMPT = {("fiqa_sdk._paths", "import_root")}

#: Import edges ``(importer, imported)`` that still close a cycle. Each entry is a debt: remove
#: it when the cycle is broken (the test fails on an entry whose edge no longer exists, so the
#: list can only shrink). Do not add entries.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()


# --------------------------------------------------------------------------------------------
# Source helpers
# --------------------------------------------------------------------------------------------


def module_name(path: Path, root: Path = ROOT) -> str:
    """Dotted module name of ``path`` (a ``.py`` file under ``root``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_sources(package: Path = PACKAGE, root: Path = ROOT) -> dict[str, tuple[Path, ast.Module]]:
    """``{module name: (path, parsed tree)}`` of every module under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        out[module_name(path, root)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_function(node: ast.AST, parents: dict) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def _is_abstract(fn: ast.AST | None) -> bool:
    if fn is None:
        return False
    for d in fn.decorator_list:
        name = d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", "")
        if name in ("abstractmethod", "abstractproperty"):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Check 1: typed errors
# --------------------------------------------------------------------------------------------


def bare_raises(tree: ast.Module, label: str = "") -> list[str]:
    """``label:line name`` of every bare built-in exception raised in ``tree``."""
    parents = _parents(tree)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = exc.id if isinstance(exc, ast.Name) else exc.attr if isinstance(exc, ast.Attribute) else None
        if isinstance(exc, ast.Attribute) and not (isinstance(exc.value, ast.Name) and exc.value.id == "builtins"):
            continue  # a module's own class, e.g. errors.GateError
        if name not in BUILTIN_EXCEPTIONS:
            continue
        fn = _enclosing_function(node, parents)
        if name == "NotImplementedError" and _is_abstract(fn):
            continue
        if name == "AttributeError" and getattr(fn, "name", None) == "__getattr__":
            continue  # the attribute protocol (a module's or class's __getattr__) requires it
        out.append((node.lineno, f"{label}:{node.lineno} {name}"))
    return [s for _, s in sorted(out)]


def all_sources() -> dict[str, tuple[Path, ast.Module]]:
    """:func:`package_sources` of fiqa_sdk and of fiqa_bench."""
    return {**package_sources(PACKAGE), **package_sources(BENCH)}


def test_no_bare_builtin_exception():
    bad = [hit for mod, (path, tree) in all_sources().items()
           for hit in bare_raises(tree, str(path.relative_to(ROOT)))]
    assert not bad, "raise a fiqa_sdk.errors class instead of a built-in:\n" + "\n".join(bad)


def test_bare_raise_checker_fails_on_bad_code():
    src = """
import abc
from fiqa_sdk.errors import InvalidArgumentError
def f(x):
    if x:
        raise ValueError("bad")
    raise InvalidArgumentError("fine")
def g():
    raise KeyError
class A(abc.ABC):
    @abc.abstractmethod
    def h(self):
        raise NotImplementedError
    def k(self):
        raise NotImplementedError
def __getattr__(name):
    raise AttributeError(name)
"""
    assert bare_raises(ast.parse(src), "m") == ["m:6 ValueError", "m:9 KeyError", "m:15 NotImplementedError"]


# --------------------------------------------------------------------------------------------
# Check 2: no data through the checkout layout
# --------------------------------------------------------------------------------------------


def _file_depth(node: ast.AST) -> int | None:
    """Levels climbed above the module's file by ``node`` if it is a path built from
    ``__file__`` (``Path(__file__).resolve().parents[k]``, ``.parent.parent``), else None."""
    levels = 0
    while True:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parents":
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
                return 10**6  # parents[n] with a computed n: treat as leaving the package
            levels += node.slice.value + 1
            node = node.value.value
        elif isinstance(node, ast.Attribute) and node.attr == "parent":
            levels += 1
            node = node.value
        elif isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):  # .resolve(), .absolute()
                node = node.func.value
            elif node.args:  # Path(x), os.path.dirname(x) are not counted: Path(...) only
                node = node.args[0]
            else:
                return None
        elif isinstance(node, ast.Name):
            return levels if node.id == "__file__" else None
        else:
            return None


def checkout_paths(tree: ast.Module, module: str) -> list[str]:
    """``module:line`` of every path in ``tree`` that leaves the package folder from
    ``__file__`` or joins the checkout's ``"shared"`` folder."""
    depth = len(module.split(".")) - 1  # folders between the file and the package's parent
    parents = _parents(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and isinstance(side.value, str) \
                        and side.value.strip("/").split("/")[0] == "shared":
                    out.append(f"{module}:{node.lineno} 'shared'")
        if isinstance(node, (ast.Subscript, ast.Attribute)) and not isinstance(parents.get(node), (ast.Subscript, ast.Attribute, ast.Call)):
            up = _file_depth(node)
            if up is not None and up > depth:
                fn = _enclosing_function(node, parents)
                if (module, getattr(fn, "name", None)) not in FILE_PATH_EXEMPT:
                    out.append(f"{module}:{node.lineno} __file__ up {up}")
    return sorted(set(out))


def test_no_checkout_layout_paths():
    bad = [hit for mod, (path, tree) in all_sources().items() for hit in checkout_paths(tree, mod)]
    assert not bad, ("data locations come from arguments and environment variables "
                     "(fiqa_sdk._paths), not the checkout layout:\n" + "\n".join(bad))


def test_checkout_path_checker_fails_on_bad_code():
    src = """
from pathlib import Path
A = Path(__file__).resolve().parents[3] / "shared" / "data" / "lfw"
B = Path(__file__).resolve().parents[1] / "weights"
C = Path(__file__).parent.parent.parent
D = Path(__file__).resolve().parent / "x"
"""
    # module fiqa_sdk.eval.protocols: parents[1] is the package folder, parents[2] leaves it
    assert checkout_paths(ast.parse(src), "fiqa_sdk.eval.protocols") == [
        "fiqa_sdk.eval.protocols:3 'shared'", "fiqa_sdk.eval.protocols:3 __file__ up 4",
        "fiqa_sdk.eval.protocols:5 __file__ up 3"]


# --------------------------------------------------------------------------------------------
# Check 3: no import cycle
# --------------------------------------------------------------------------------------------


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def facade_names(sources: dict[str, tuple[Path, ast.Module]], top: str = "fiqa_sdk") -> dict[str, str]:
    """``{name: module}`` of the names the top package exposes: its own imports and the
    submodules and names it attaches lazily (``lazy_loader.attach``)."""
    if top not in sources:
        return {}
    out: dict[str, str] = {}
    for node in ast.walk(sources[top][1]):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for a in node.names:
                out[a.asname or a.name] = f"{top}.{node.module}" if node.module else f"{top}.{a.name}"
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "attach":
            for kw in node.keywords:
                value = ast.literal_eval(kw.value)
                if kw.arg == "submodules":
                    out.update({m: f"{top}.{m}" for m in value})
                elif kw.arg == "submod_attrs":
                    out.update({n: f"{top}.{m}" for m, names in value.items() for n in names})
    return out


def import_graph(sources: dict[str, tuple[Path, ast.Module]], top: str = "fiqa_sdk") -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, at any level (functions included).

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``; a name
    of the top package's facade (``from fiqa_sdk import QualityGate``, ``fq.QualityGate`` after
    ``import fiqa_sdk as fq``) points at the module that defines it, and the facade points at
    every module it attaches.
    """
    facade = facade_names(sources, top)
    graph: dict[str, set[str]] = {m: set() for m in sources}
    if top in graph:
        graph[top].update(m for m in facade.values() if m in sources)
    for mod, (path, tree) in sources.items():
        is_pkg = path.name == "__init__.py"
        aliases: set[str] = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == top and mod != top:
                        aliases.add(a.asname or a.name)  # edges through its attributes below
                    else:
                        targets.append(a.name)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in sources:
                        targets.append(sub)
                    elif base == top and a.name in facade:
                        targets.append(facade[a.name])
                    else:
                        targets.append(base)
            for t in targets:
                while t and t not in sources:  # import a.b.c of a name: the deepest module
                    t = t.rpartition(".")[0]
                if t and t != mod and (t == top or t.startswith(top + ".")):
                    graph[mod].add(t)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                t = facade.get(node.attr, top)
                if t != mod and t in sources:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]], allowed: set[tuple[str, str]] = frozenset()) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring ``allowed``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if (v, w) in allowed:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(out)


def _describe(graph: dict[str, set[str]], comp: list[str], allowed) -> str:
    members = set(comp)
    edges = [f"  {a} -> {b}" for a in comp for b in sorted(graph[a]) if b in members and (a, b) not in allowed]
    return "cycle among " + ", ".join(comp) + ":\n" + "\n".join(edges)


def test_no_import_cycle():
    graph = import_graph(package_sources())
    found = cycles(graph, ALLOWED_CYCLE_EDGES)
    assert not found, "import cycles (move the shared code into a lower module):\n" + "\n".join(
        _describe(graph, c, ALLOWED_CYCLE_EDGES) for c in found)


def test_no_import_cycle_in_bench():
    graph = import_graph(package_sources(BENCH), top="fiqa_bench")
    found = cycles(graph)
    assert not found, "import cycles in fiqa_bench:\n" + "\n".join(
        _describe(graph, c, set()) for c in found)


def test_cycle_allow_list_only_shrinks():
    graph = import_graph(package_sources())
    stale = sorted(e for e in ALLOWED_CYCLE_EDGES if e[1] not in graph.get(e[0], ()))
    assert not stale, f"remove these edges from ALLOWED_CYCLE_EDGES, they no longer exist: {stale}"
    needed = [e for e in ALLOWED_CYCLE_EDGES if cycles(graph, ALLOWED_CYCLE_EDGES - {e})]
    assert len(needed) == len(ALLOWED_CYCLE_EDGES), (
        "these allowed edges no longer close a cycle, remove them: "
        f"{sorted(ALLOWED_CYCLE_EDGES - set(needed))}")


def test_cycle_checker_fails_on_bad_code(tmp_path):
    pkg = tmp_path / "pk"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import lazy_loader as _lazy\nfrom ._version import v\n"
        "__getattr__, _d, _a = _lazy.attach(__name__, submodules=['sub'], submod_attrs={'e': ['E']})\n")
    (pkg / "_version.py").write_text("v = 1\n")
    (pkg / "e.py").write_text("def g():\n    import pk as p\n    return p.E, p.v\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import x\n")
    (pkg / "c.py").write_text("import pk.a\nx = 1\n")
    (pkg / "d.py").write_text("from pk import a, c, E\n")
    graph = import_graph(package_sources(pkg, tmp_path), top="pk")
    assert graph["pk.a"] == {"pk.sub.b"} and graph["pk.sub.b"] == {"pk.c"}
    assert graph["pk.d"] == {"pk.a", "pk.c", "pk.e"} and graph["pk.e"] == {"pk._version"}
    assert graph["pk"] == {"pk._version", "pk.e", "pk.sub"}
    assert cycles(graph) == [["pk.a", "pk.c", "pk.sub.b"]]
    assert cycles(graph, {("pk.c", "pk.a")}) == []


#: The layers of fiqa_sdk, bottom first (docs/architecture.md): a module imports modules of its
#: own layer or of lower ones. Keys are the first component under ``fiqa_sdk`` ("" is the
#: top package's facade).
LAYERS = (
    {"errors", "_version", "_paths", "_preprocess", "_deps", "_torch", "_onnx", "_weights", "cpu",
     "_registry", "_device"},
    {"io", "types", "align", "nets", "diffusion"},
    {"detect", "embed", "quality"},
    {"pipeline", "export"},
    {"policy", "gate", "batch"},
    {"eval", "train", "distributed", "cli", ""},
)


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (a dotted name under fiqa_sdk), None if unplaced."""
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    return next((i for i, names in enumerate(LAYERS) if key in names), None)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a higher layer, and ``a: no layer`` for unplaced modules."""
    out = [f"{m}: no layer (add it to LAYERS)" for m in sorted(graph) if layer_of(m) is None]
    out += [f"{a} -> {b}" for a in sorted(graph) for b in sorted(graph[a])
            if None not in (layer_of(a), layer_of(b)) and layer_of(b) > layer_of(a)]
    return out


def test_imports_point_down_the_layers():
    bad = upward_imports(import_graph(package_sources()))
    assert not bad, ("imports point down the layers (inference never imports eval or train; "
                     "move shared code into a bottom module):\n" + "\n".join(bad))


def test_layer_checker_fails_on_bad_code():
    graph = {"fiqa_sdk.quality.x": {"fiqa_sdk.train.ddpm", "fiqa_sdk._paths"}, "fiqa_sdk.train.ddpm": set(),
             "fiqa_sdk._paths": set(), "fiqa_sdk.newthing": set()}
    assert upward_imports(graph) == ["fiqa_sdk.newthing: no layer (add it to LAYERS)",
                                     "fiqa_sdk.quality.x -> fiqa_sdk.train.ddpm"]


# --------------------------------------------------------------------------------------------
# Check 4: no private names outside the package
# --------------------------------------------------------------------------------------------


def _private(dotted: str) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in dotted.split("."))


def private_imports(tree: ast.Module, label: str = "", top: str = "fiqa_sdk") -> list[str]:
    """``label:line name`` of every private ``top`` module or name imported or read in ``tree``."""
    out = []
    aliases: set[str] = set()  # local names bound to a module of the package
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == top or a.name.startswith(top + "."):
                    aliases.add(a.asname or a.name.split(".")[0])
                    if _private(a.name):
                        out.append(f"{label}:{node.lineno} {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and (node.module == top or node.module.startswith(top + ".")):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _private(full):
                    out.append(f"{label}:{node.lineno} {full}")
                aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = []
            n = node
            while isinstance(n, ast.Attribute):
                chain.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id in aliases and _private(chain[0]):
                out.append(f"{label}:{node.lineno} {n.id}.{'.'.join(reversed(chain))}")
    return sorted(set(out))


def _outside_sources():
    for folder in ("fiqa_bench", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def test_no_private_names_outside_package():
    bad = [hit for path, tree in _outside_sources()
           for hit in private_imports(tree, str(path.relative_to(ROOT)))]
    assert not bad, "fiqa_bench/ and examples/ use public fiqa_sdk names only:\n" + "\n".join(bad)


def test_outside_sources_are_found():
    """The private-name check reads the research harness (fiqa_bench and its experiments)."""
    files = {p.relative_to(ROOT).as_posix() for p, _ in _outside_sources()}
    assert "fiqa_bench/harness.py" in files
    assert sum(f.startswith("fiqa_bench/experiments/") for f in files) >= 30
    assert not (ROOT / "benchmarks").exists() or not list((ROOT / "benchmarks").glob("*.py"))


def test_private_import_checker_fails_on_bad_code():
    src = """
import fiqa_sdk as fq
import fiqa_sdk._weights
from fiqa_sdk.eval import _private
from fiqa_sdk.eval.evaluate import _helper, public
from fiqa_sdk import __version__
x = fq.eval._secret
y = fq.QualityGate
z = public._inner
"""
    assert private_imports(ast.parse(src), "b") == [
        "b:3 fiqa_sdk._weights", "b:4 fiqa_sdk.eval._private", "b:5 fiqa_sdk.eval.evaluate._helper",
        "b:7 fq.eval._secret", "b:9 public._inner"]


# --------------------------------------------------------------------------------------------
# Check 6: a thin command line
# --------------------------------------------------------------------------------------------

CLI = PACKAGE / "cli"
#: Longest module of ``fiqa_sdk/cli/``: a sub-command parses, checks and calls one library
#: function; more than this means logic that belongs in the library.
CLI_MAX_LINES = 150
#: Modules allowed past :data:`CLI_MAX_LINES`, with the reason (none: the benchmark commands
#: left for fiqa_bench.cli).
CLI_LONG_EXEMPT: set[str] = set()
#: What a sub-command module defines (``fiqa_sdk.cli.COMMANDS`` reads them).
CLI_COMMAND_API = ("NAME", "HELP", "HEAVY", "add_parser", "run")
#: Modules of ``fiqa_sdk/cli/`` that are not sub-commands.
CLI_SUPPORT = {"__init__.py", "__main__.py", "common.py"}


def _module_level_logic(tree: ast.Module) -> list[int]:
    """Lines of module-level statements other than the docstring, imports, constant
    assignments, function definitions and ``if TYPE_CHECKING`` / ``if __name__ == "__main__"``
    blocks."""
    bad = []
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign,
                             ast.AnnAssign)):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING", "__name__ == '__main__'"):
            continue
        bad.append(node.lineno)
    return bad


def thin_cli_problems(folder: Path = CLI) -> list[str]:
    """``file: problem`` for every module of the CLI package that is too long, has
    module-level logic, or (a sub-command) lacks part of :data:`CLI_COMMAND_API`."""
    out = []
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
        lines = text.count("\n")
        if lines > CLI_MAX_LINES and path.name not in CLI_LONG_EXEMPT:
            out.append(f"{path.name}: {lines} lines > {CLI_MAX_LINES}")
        out += [f"{path.name}:{n} module-level logic" for n in _module_level_logic(tree)]
        if path.name not in CLI_SUPPORT:
            defined = {t.id for node in tree.body if isinstance(node, ast.Assign)
                       for t in node.targets if isinstance(t, ast.Name)}
            defined |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
            missing = [n for n in CLI_COMMAND_API if n not in defined]
            if missing:
                out.append(f"{path.name}: no {', '.join(missing)}")
    return out


def test_cli_modules_stay_thin():
    bad = thin_cli_problems()
    assert not bad, ("fiqa_sdk/cli/: one short module per sub-command, its work in a library "
                     "function (docs/architecture.md 'The command line'):\n" + "\n".join(bad))
    stale = sorted(n for n in CLI_LONG_EXEMPT if not (CLI / n).is_file()
                   or (CLI / n).read_text(encoding="utf-8").count("\n") <= CLI_MAX_LINES)
    assert not stale, f"remove from CLI_LONG_EXEMPT, no longer needed: {stale}"


def test_thin_cli_checker_fails_on_bad_code(tmp_path):
    (tmp_path / "good.py").write_text(
        '"""Doc."""\nimport argparse\nNAME = "good"\nHELP = "h"\nHEAVY = False\n\n\n'
        "def add_parser(subparsers):\n    return subparsers.add_parser(NAME)\n\n\n"
        "def run(args):\n    return 0\n")
    (tmp_path / "bad.py").write_text(
        'NAME = "bad"\nfor i in range(3):\n    pass\nprint("x")\n\n\nclass Job:\n    pass\n\n\n'
        "def run(args):\n    return 0\n" + "# filler\n" * CLI_MAX_LINES)
    (tmp_path / "__main__.py").write_text(
        "from . import main\n\nif __name__ == \"__main__\":\n    raise SystemExit(main())\n")
    assert thin_cli_problems(tmp_path) == [
        f"bad.py: {CLI_MAX_LINES + 12} lines > {CLI_MAX_LINES}", "bad.py:2 module-level logic",
        "bad.py:4 module-level logic", "bad.py:7 module-level logic",
        "bad.py: no HELP, HEAVY, add_parser"]


# Check 5: fiqa_sdk never imports fiqa_bench
# --------------------------------------------------------------------------------------------


def imports_of(tree: ast.Module, label: str, target: str) -> list[str]:
    """``label:line name`` of every import of ``target`` (or a module under it) in ``tree``,
    at any level (functions included); ``importlib.import_module("target...")`` counts too."""
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                in ("import_module", "__import__") and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        out += [f"{label}:{node.lineno} {n}" for n in names
                if n == target or n.startswith(target + ".")]
    return sorted(set(out))


def test_sdk_never_imports_bench():
    bad = [hit for mod, (path, tree) in package_sources().items()
           for hit in imports_of(tree, str(path.relative_to(ROOT)), "fiqa_bench")]
    assert not bad, ("fiqa_sdk must not import the research harness (fiqa_bench sits on top of "
                     "it; move what both need into fiqa_sdk):\n" + "\n".join(bad))


def test_bench_import_checker_fails_on_bad_code():
    src = """
import fiqa_bench
import fiqa_benchmarks
from fiqa_bench.harness import experiment
import importlib
def f():
    from fiqa_bench import experiments
    return importlib.import_module("fiqa_bench.experiments.x")
"""
    assert imports_of(ast.parse(src), "m", "fiqa_bench") == [
        "m:2 fiqa_bench", "m:4 fiqa_bench.harness", "m:7 fiqa_bench", "m:8 fiqa_bench.experiments.x"]


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
