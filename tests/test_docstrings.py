"""Static docstring checks (the "Contracts" part of the redesign issue): the source is parsed
with :mod:`ast`, no module of fiqa_sdk is imported, no data or model is read.

1. Every public entry point in :data:`ENTRY_POINTS` (what docs/api.md documents as the public
   API) has a numpydoc docstring with a ``Parameters`` section (when it takes arguments beyond
   ``self`` / ``cls``; a dataclass may document its fields under ``Attributes``) and an
   ``Examples`` section with ``>>>`` lines.
2. No docstring in fiqa_sdk (outside the CLI and the training code) quotes a measured result
   (a speed, a latency, a speed-up ratio, ...): measured numbers live in docs/ (docs/benchmarks.md,
   docs/models.md), where the command that produced them is written next to them; docstrings
   point there. Definitions and constants (thresholds, sizes, defaults) are not measurements.
3. The examples of the modules that need only numpy (:data:`NUMPY_ONLY_MODULES`) run as
   written (doctest); examples elsewhere mark the lines that need models or files
   ``# doctest: +SKIP``.

Each check has a self-test on a synthetic bad case so that it can be seen to fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fiqa_sdk"

#: ``{module file (relative to fiqa_sdk/): [qualified names]}`` of the public entry points.
#: A name ``"Class.method"`` is a method of a class defined in that file.
ENTRY_POINTS: dict[str, list[str]] = {
    "gate.py": ["QualityGate", "QualityGate.assess", "QualityGate.filter", "QualityGate.scores",
                "QualityGate.calibrate", "QualityGate.template", "QualityGate.save",
                "QualityGate.load", "QualityGate.compare", "QualityGate.embedding"],
    "pipeline.py": ["FacePipeline", "FacePipeline.process", "FacePipeline.process_batch"],
    "detect/__init__.py": ["create_detector", "list_detectors"],
    "embed/__init__.py": ["create_embedder", "list_embedders"],
    "quality/__init__.py": ["create_scorer", "list_scorers"],
    "policy.py": ["check_fraction", "check_threshold", "discard_count", "discard_lowest",
                  "apply_threshold", "calibrate_threshold", "template_weights",
                  "fuse_embeddings", "fuse_template", "cosine"],
    "eval/metrics.py": ["combine_pair_qualities", "threshold_at_fmr", "edc", "fmr_edc", "pauc"],
    "eval/bootstrap.py": ["bootstrap_pauc"],
    "io.py": ["load_image"],
    "align.py": ["align_face", "align_faces"],
    "types.py": ["Template", "QualityReport"],
}

#: Modules whose examples need nothing but numpy (importing them loads no model, no image
#: library): their doctests are run by :func:`test_numpy_only_examples_run`.
NUMPY_ONLY_MODULES = ("fiqa_sdk.policy", "fiqa_sdk.eval.metrics", "fiqa_sdk.eval.bootstrap",
                      "fiqa_sdk.eval")

#: Files whose docstrings may quote measurements (not part of the library's contract text).
MEASUREMENT_EXEMPT_PREFIXES = ("cli", "train/")

#: Heuristic patterns of a measured result quoted in a docstring: a number followed by a
#: throughput or latency unit, a speed-up ratio, or a rank correlation / TAR value.
MEASUREMENT = re.compile(
    r"\d[\d.,]*\s*(?:faces/s|images/s|img/s|ms/|ms per|ms\b|s per (?:face|image)"
    r"|x (?:faster|slower|cheaper|more faces)|% (?:faster|slower|less|more|cheaper))"
    r"|\bSpearman(?: rho)?\s+\d|\bTAR@\S+\s+\d",
    re.IGNORECASE,
)

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _find(tree: ast.Module, qualname: str) -> ast.AST | None:
    """The definition ``qualname`` (``"f"`` or ``"Class.method"``) at module level of ``tree``;
    of several definitions of one name (``@overload`` stubs), the last (the implementation)."""
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        hits = [n for n in scope if isinstance(n, _DEFS) and n.name == part]
        if not hits:
            return None
        node = hits[-1]
        scope = node.body
    return node


def _sections(doc: str) -> set[str]:
    """numpydoc section titles of ``doc``: a line followed by a line of dashes as long."""
    lines = [ln.strip() for ln in doc.splitlines()]
    return {a for a, b in zip(lines, lines[1:]) if a and b and set(b) == {"-"} and len(b) == len(a)}


def _arguments(fn: ast.AST) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return [n for n in names if n not in ("self", "cls")]


def _is_dataclass(cls: ast.ClassDef) -> bool:
    for d in cls.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
                isinstance(target, ast.Attribute) and target.attr == "dataclass"):
            return True
    return False


def docstring_problems(node: ast.AST, name: str) -> list[str]:
    """What the docstring of entry point ``node`` lacks (empty when it is complete)."""
    doc = ast.get_docstring(node)
    if not doc:
        return [f"{name}: no docstring"]
    found = _sections(doc)
    problems = []
    if isinstance(node, ast.ClassDef):
        init = _find(ast.Module(body=node.body, type_ignores=[]), "__init__")
        if init is not None and _arguments(init) and "Parameters" not in found:
            problems.append(f"{name}: no Parameters section")
        if init is None and _is_dataclass(node) and not {"Parameters", "Attributes"} & found:
            problems.append(f"{name}: no Parameters or Attributes section (dataclass fields)")
    elif _arguments(node) and "Parameters" not in found:
        problems.append(f"{name}: no Parameters section")
    if "Examples" not in found:
        problems.append(f"{name}: no Examples section")
    elif ">>>" not in doc.split("Examples", 1)[1]:
        problems.append(f"{name}: Examples section without a >>> line")
    return problems


def measurement_lines(tree: ast.Module, where: str) -> list[str]:
    """``where:name: text`` for each match of :data:`MEASUREMENT` in a docstring of ``tree``
    (whitespace collapsed first, so that a number and its unit on two lines still match)."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, *_DEFS)):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc:
            continue
        text = " ".join(doc.split())
        for m in MEASUREMENT.finditer(text):
            context = text[max(0, m.start() - 40):m.end() + 40]
            out.append(f"{where}:{getattr(node, 'name', '<module>')}: ...{context}...")
    return out


def _package_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if not p.relative_to(PACKAGE).as_posix().startswith(MEASUREMENT_EXEMPT_PREFIXES)]


# --------------------------------------------------------------------------------------------
# 1. Entry points have numpydoc docstrings with Parameters and Examples
# --------------------------------------------------------------------------------------------


def test_entry_points_have_numpydoc_docstrings():
    problems = []
    for rel, names in ENTRY_POINTS.items():
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        for name in names:
            node = _find(tree, name)
            if node is None:
                problems.append(f"{rel}: {name} not found (update ENTRY_POINTS)")
                continue
            problems += [f"{rel}: {p}" for p in docstring_problems(node, name)]
    assert not problems, "\n".join(problems)


BAD_ENTRY = '''
def f(x, y=1):
    """Summary only, no sections."""

def g(x):
    """Summary.

    Parameters
    ----------
    x : int
        A number.

    Examples
    --------
    No prompt here.
    """

class C:
    """A class.

    Examples
    --------
    >>> C(1)
    """

    def __init__(self, a):
        pass

def good(x):
    """Summary.

    Parameters
    ----------
    x : int
        A number.

    Examples
    --------
    >>> good(1)
    """

def no_args():
    """Summary.

    Examples
    --------
    >>> no_args()
    """
'''


def test_entry_point_checker_fails_on_bad_docstrings():
    tree = ast.parse(BAD_ENTRY)
    problems = {n: docstring_problems(_find(tree, n), n) for n in ("f", "g", "C", "good", "no_args")}
    assert problems["f"] == ["f: no Parameters section", "f: no Examples section"]
    assert problems["g"] == ["g: Examples section without a >>> line"]
    assert problems["C"] == ["C: no Parameters section"]
    assert problems["good"] == [] and problems["no_args"] == []


# --------------------------------------------------------------------------------------------
# 2. No measured numbers in docstrings
# --------------------------------------------------------------------------------------------


def test_no_measurements_in_docstrings():
    found = []
    for path in _package_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += measurement_lines(tree, path.relative_to(ROOT).as_posix())
    assert not found, ("docstrings quoting measured results (move the number to docs/ and point "
                       "there):\n" + "\n".join(found))


@pytest.mark.parametrize("line", [
    "The int8 graph scores 400 faces/s with two threads.",
    "that one node took 8.7 ms per face",
    "the same function, ~1.6x\n    faster on one thread",
    "a pass costs 12 ms on one thread",
    "the rewrite is ~1.5x faster in onnxruntime",
    "Spearman 0.992 with the fp32 scores",
    "TAR@1e-3 99.37 % vs 99.95 %",
])
def test_measurement_checker_fails_on_bad_docstring(line):
    tree = ast.parse(f'def f():\n    """Summary.\n\n    {line}\n    """\n')
    found = measurement_lines(tree, "bad.py")
    assert len(found) == 1 and found[0].startswith("bad.py:f: ...")


@pytest.mark.parametrize("line", [
    "Faces smaller than 40 px are skipped; the default threshold is 0.5.",
    "Throughput: docs/benchmarks.md, section \"Runtime per face\".",
    "A (112, 112, 3) uint8 crop; temperature is 4 x the standard deviation.",
])
def test_measurement_checker_passes_definitions(line):
    tree = ast.parse(f'def f():\n    """Summary.\n\n    {line}\n    """\n')
    assert measurement_lines(tree, "ok.py") == []


# --------------------------------------------------------------------------------------------
# 3. The pure-numpy examples run
# --------------------------------------------------------------------------------------------


def run_examples(module):
    """doctest's ``TestResults(failed, attempted)`` of ``module``'s examples (failures are
    printed)."""
    import doctest

    return doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)


@pytest.mark.parametrize("name", NUMPY_ONLY_MODULES)
def test_numpy_only_examples_run(name):
    import importlib

    result = run_examples(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"


def test_example_runner_fails_on_a_wrong_example():
    import types

    module = types.ModuleType("fiqa_bad_examples")
    exec('def f():\n    """Summary.\n\n    >>> 1 + 1\n    3\n    >>> 2 * 2\n    4\n    """\n',
         module.__dict__)
    module.f.__module__ = module.__name__
    result = run_examples(module)
    assert (result.failed, result.attempted) == (1, 2)
