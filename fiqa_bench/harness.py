"""The experiment harness: one registry, one command line and one result format for every
experiment of the research harness (the numbers quoted in ``docs/``).

An experiment is a function ``run(args, ctx) -> dict`` registered by name with a one-line
description::

    from fiqa_bench.harness import experiment

    def arguments(ap):
        ap.add_argument("--images", type=int, default=100)

    @experiment("lfw_face_size", "inter-eye distance of LFW faces",
                arguments=arguments, quick={"images": 8})
    def run(args, ctx):
        ...
        return {"images": args.images, "median_px": median}

``fiqa-bench run lfw_face_size --quick --out results/size.json`` then parses the common
arguments (``--quick``, ``--out``) and the experiment's own, merges the ``--quick`` parameters
(options given on the command line still win), runs it and writes the result JSON: the exact
command line, the date, the versions of fiqa_sdk / numpy / torch / onnxruntime, the machine's
CPU count and the experiment's results (:func:`result_record`).

The harness imports only public :mod:`fiqa_sdk` names; :mod:`fiqa_sdk` never imports
:mod:`fiqa_bench`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import pkgutil
import platform
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiqa_sdk.errors import FiqaError, InvalidArgumentError

#: The program name the result files record (``python -m fiqa_bench`` runs the same code).
PROG = "fiqa-bench"

#: Packages whose versions every result file records.
VERSIONED_PACKAGES = ("fiqa_sdk", "numpy", "torch", "onnxruntime")

RunFunction = Callable[[argparse.Namespace, "RunContext"], "dict[str, Any] | None"]
ArgumentsFunction = Callable[[argparse.ArgumentParser], None]
QuickParameters = "Mapping[str, Any] | Callable[[argparse.Namespace], Mapping[str, Any]]"


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes
    ----------
    name : str
        Registry name, ``fiqa-bench run NAME``; also the name of its module under
        :mod:`fiqa_bench.experiments`.
    description : str
        One line, printed by ``fiqa-bench list``.
    run : callable
        ``run(args, ctx) -> dict | None``: the experiment; the returned dict (JSON-able after
        :func:`jsonable`) is the ``results`` of the result file.
    arguments : callable or None
        ``arguments(parser)`` adds the experiment's own options.
    quick : mapping or callable or None
        ``--quick`` parameters (argparse destinations -> values), or a function of the
        arguments parsed without them that returns such a mapping.
    requires : str or None
        What a run needs that a CI machine does not have (a GPU, the result of a long training
        run); the smoke tests skip the experiment with this reason.
    default_out : str or callable or None
        Result location used when ``--out`` is not given (None: write no file), or a function
        of the parsed arguments that returns it.
    doc : str
        The longer description (the module docstring), shown by ``--help``.
    """

    name: str
    description: str
    run: RunFunction
    arguments: ArgumentsFunction | None = None
    quick: Any = None
    requires: str | None = None
    default_out: str | None = None
    doc: str = ""


@dataclass
class RunContext:
    """What the harness hands an experiment besides its parsed arguments.

    Attributes
    ----------
    name : str
        The experiment's name.
    argv : list of str
        The arguments after ``fiqa-bench run NAME``, as given.
    command : str
        The exact command line (``fiqa-bench run NAME ARGS``).
    quick : bool
        ``--quick`` was given.
    out : pathlib.Path or None
        The result file the harness writes after the run (None: no file).
    out_dir : pathlib.Path or None
        Folder for the experiment's extra files (tables, figures, arrays): ``--out`` itself when
        it names a folder, else the result file's folder; None without ``--out``.
    extra_files : list of str
        Files written through :meth:`artifact`, recorded in the result file.
    exit_code : int
        Exit status of ``fiqa-bench run``; an experiment whose check fails sets 1 (the result
        file is still written).
    """

    name: str
    argv: list[str]
    command: str
    quick: bool = False
    out: Path | None = None
    out_dir: Path | None = None
    extra_files: list[str] = field(default_factory=list)
    exit_code: int = 0

    def artifact(self, name: str) -> Path | None:
        """Path of an extra output file ``name`` in :attr:`out_dir` (folder created), recorded
        in the result file's ``files``; None when the run writes no files."""
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        self.extra_files.append(str(path))
        return path

    def log(self, msg: str) -> None:
        """Print a progress line on stderr, prefixed with the experiment's name."""
        print(f"{self.name}: {msg}", file=sys.stderr, flush=True)


#: name -> :class:`Experiment`, filled by :func:`experiment` as the modules are imported.
REGISTRY: dict[str, Experiment] = {}


def experiment(name: str, description: str, *, arguments: ArgumentsFunction | None = None,
               quick: Any = None, requires: str | None = None,
               default_out: str | None = None) -> Callable[[RunFunction], RunFunction]:
    """Decorator registering ``run(args, ctx)`` as the experiment ``name``.

    Parameters
    ----------
    name : str
        Registry name (``fiqa-bench run NAME``); unique.
    description : str
        One line for ``fiqa-bench list``.
    arguments : callable, optional
        ``arguments(parser)`` adding the experiment's own options (``--quick`` and ``--out``
        are the harness's).
    quick : mapping or callable, optional
        The ``--quick`` parameters: argparse destinations and their smoke-run values, or a
        function of the arguments parsed without them that returns such a mapping.
    requires : str, optional
        Why the experiment cannot run on a CI machine (its smoke test is skipped).
    default_out : str or callable, optional
        Result file (or folder) when ``--out`` is not given, or a function of the parsed
        arguments that returns it.

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.

    Raises
    ------
    InvalidArgumentError
        If ``name`` is registered already by another function or the description is empty.
    """
    if not description or "\n" in description:
        raise InvalidArgumentError(f"experiment {name!r}: the description is one non-empty line")

    def register(fn: RunFunction) -> RunFunction:
        old = REGISTRY.get(name)
        if old is not None and (old.run.__module__, old.run.__qualname__) != (
                fn.__module__, fn.__qualname__):
            raise InvalidArgumentError(f"experiment {name!r} is registered twice "
                                       f"({old.run.__module__} and {fn.__module__})")
        doc = sys.modules[fn.__module__].__doc__ if fn.__module__ in sys.modules else None
        REGISTRY[name] = Experiment(name=name, description=description, run=fn,
                                    arguments=arguments, quick=quick, requires=requires,
                                    default_out=default_out, doc=doc or fn.__doc__ or "")
        return fn

    return register


def load_experiments() -> dict[str, Experiment]:
    """Import every module of :mod:`fiqa_bench.experiments` (each registers its experiment)
    and return the registry, sorted by name."""
    from . import experiments as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    return dict(sorted(REGISTRY.items()))


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``.

    Raises
    ------
    InvalidArgumentError
        If no experiment has that name.
    """
    exps = load_experiments()
    if name not in exps:
        raise InvalidArgumentError(f"unknown experiment {name!r}; `{PROG} list` shows "
                                   f"the {len(exps)} experiments")
    return exps[name]


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def _quick_help(quick: Any) -> str:
    if quick is None:
        return "smoke run (CI): small inputs"
    if callable(quick):
        return "smoke run (CI): small inputs (see the experiment's description)"
    return "smoke run (CI): " + ", ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
        for k, v in quick.items()) + " (options given explicitly still win)"


def build_parser(exp: Experiment) -> argparse.ArgumentParser:
    """The argument parser of ``fiqa-bench run NAME``: the common options and the
    experiment's own."""
    ap = argparse.ArgumentParser(prog=f"{PROG} run {exp.name}",
                                 description=exp.doc or exp.description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--quick", action="store_true", help=_quick_help(exp.quick))
    default = exp.default_out if isinstance(exp.default_out, str) else None
    ap.add_argument("--out", default=default,
                    help="result JSON file, or a folder for NAME.json and the experiment's other "
                         "files" + (f" (default {default})" if default else
                                    " (default: the experiment's own)" if exp.default_out else
                                    " (default: no file)"))
    if exp.arguments is not None:
        exp.arguments(ap)
    return ap


def parse_arguments(exp: Experiment, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` for ``exp``, merging the ``--quick`` parameters under the options given.

    Raises
    ------
    InvalidArgumentError
        If a ``--quick`` parameter names no option of the experiment (a registration error).
    """
    ap = build_parser(exp)
    args = ap.parse_args(list(argv))
    if args.quick and exp.quick is not None:
        quick = exp.quick(args) if callable(exp.quick) else exp.quick
        unknown = sorted(set(quick) - set(vars(args)))
        if unknown:
            raise InvalidArgumentError(f"experiment {exp.name!r}: --quick sets unknown "
                                       f"options {unknown}")
        ap.set_defaults(**quick)  # the quick defaults; options given explicitly still win
        args = ap.parse_args(list(argv))
    return args


def resolve_out(out: str | os.PathLike | None, name: str) -> tuple[Path | None, Path | None]:
    """``(result file, folder of extra files)`` for ``--out``: a path ending in ``.json`` is
    the result file (extra files beside it); any other path is a folder holding
    ``NAME.json``."""
    if out is None or str(out) == "":
        return None, None
    p = Path(out)
    if p.suffix.lower() == ".json":
        return p, p.parent
    return p / f"{name}.json", p


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None if not installed), read from the package
    metadata without importing it (fiqa_sdk: its ``__version__``)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for n in names:
        if n == "fiqa_sdk":
            import fiqa_sdk

            out[n] = fiqa_sdk.__version__
            continue
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def machine() -> dict[str, Any]:
    """CPU count (all, and usable by this process), platform and Python version."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "usable_cpus": usable, "platform": platform.platform(),
            "python": platform.python_version()}


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, paths, sets and tuples turned into JSON types.

    Non-finite floats stay (written as ``NaN`` / ``Infinity``, which :func:`json.loads` reads
    back): an undefined normalized pAUC is NaN in the results, as in the experiments' own
    code."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array / scalar
        return jsonable(obj.tolist())
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def result_record(exp: Experiment, ctx: RunContext, args: argparse.Namespace,
                  results: Mapping[str, Any] | None, seconds: float) -> dict[str, Any]:
    """The result file's content: the harness fields and the experiment's ``results``."""
    return {
        "experiment": exp.name,
        "description": exp.description,
        "command": ctx.command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "machine": machine(),
        "quick": ctx.quick,
        "arguments": jsonable(vars(args)),
        "seconds": round(seconds, 2),
        "exit_code": ctx.exit_code,
        "files": list(ctx.extra_files),
        "results": jsonable(results or {}),
    }


def write_result(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a result record as indented JSON (folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """The ``results`` of a result file written by the harness (a folder: its only
    ``*.json`` written by the harness)."""
    p = Path(path)
    if p.is_dir():
        found = [f for f in sorted(p.glob("*.json")) if "results" in json.loads(f.read_text())]
        if len(found) != 1:
            raise InvalidArgumentError(f"{p}: {len(found)} result files, expected one")
        p = found[0]
    return json.loads(p.read_text())["results"]


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is not installed
    (experiments then skip their figures)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(ctx: RunContext, name: str, draw: Callable[[Any], None]) -> Path | None:
    """Draw a figure with ``draw(axes)`` and save it as ``name`` in the run's folder.

    Returns None (and draws nothing) when matplotlib is missing or the run writes no files.
    """
    plt = pyplot()
    path = ctx.artifact(name) if plt is not None else None
    if path is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    draw(ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def run_experiment(name: str, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Run experiment ``name`` with command-line arguments ``argv`` (after ``run NAME``);
    returns the result record, written to ``--out`` when given."""
    import time

    exp = get_experiment(name)
    args = parse_arguments(exp, argv)
    if args.out is None and callable(exp.default_out):
        args.out = exp.default_out(args)
    out, out_dir = resolve_out(args.out, exp.name)
    ctx = RunContext(name=exp.name, argv=list(argv),
                     command=f"{PROG} run {exp.name} " + shlex.join(list(argv)),
                     quick=bool(args.quick), out=out, out_dir=out_dir)
    t0 = time.perf_counter()
    results = exp.run(args, ctx)
    record = result_record(exp, ctx, args, results, time.perf_counter() - t0)
    if out is not None:
        write_result(record, out)
        ctx.log(f"wrote {out} ({record['seconds']} s)")
    return record


def list_text() -> str:
    """``fiqa-bench list``: one line per experiment (name, description, what it requires)."""
    exps = load_experiments()
    width = max(map(len, exps), default=0)
    return "\n".join(f"{e.name:<{width}}  {e.description}"
                     + (f"  [requires {e.requires}]" if e.requires else "")
                     for e in exps.values())


def main(argv: Sequence[str] | None = None) -> int:
    """``fiqa-bench list`` / ``fiqa-bench run NAME [--quick] [--out PATH] [options]`` /
    ``fiqa-bench SUITE [options]`` (:mod:`fiqa_bench.cli`).

    Returns
    -------
    int
        0 on success, 2 on a usage error, 1 when the experiment fails with a fiqa_sdk error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    from . import cli

    if argv[:1] and argv[0] in cli.SUITES:
        return cli.main(argv)
    ap = argparse.ArgumentParser(prog=PROG, description="The experiments behind the numbers in "
                                 "docs/: list them, or run one; and the evaluation suites "
                                 "(quality, templates, alignment, runtime).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="print the registered experiments")
    for name, text in (("quality", "ISO/IEC 29794-1 EDC and pAUC of quality scorers on a "
                        "protocol or on the hard-data dev suite (--suite dev)"),
                       ("templates", "TAR of template methods (mean, best, quality-weighted, "
                        "top-k)"),
                       ("alignment", "EDC / pAUC of quality scorers under other detectors and "
                        "landmark jitter"),
                       ("runtime", "per-face runtime of the pipeline stages, DifFIQA and the "
                        "regressors")):
        sub.add_parser(name, help=f"{text} (`{name} --help`: its options)", add_help=False)
    run = sub.add_parser("run", help="run one experiment (`run NAME --help`: its options)",
                         add_help=False)
    run.add_argument("name", nargs="?")
    if argv[:1] == ["run"]:
        if len(argv) < 2 or argv[1].startswith("-"):
            print(f"usage: {PROG} run NAME [--quick] [--out PATH] [options]\n\n" + list_text(),
                  file=sys.stderr if len(argv) < 2 else sys.stdout)
            return 2 if len(argv) < 2 else 0
        try:
            record = run_experiment(argv[1], argv[2:])
        except InvalidArgumentError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        except FiqaError as e:
            print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        return int(record["exit_code"])
    args = ap.parse_args(argv)
    if args.cmd == "list":
        print(list_text())
    return 0
