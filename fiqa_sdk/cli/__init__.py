"""The ``fiqa`` command line (docs/cli.md documents every option).

    fiqa assess [IMG ...]         one JSON line per image (no IMG: the bundled sample face)
    fiqa filter DIR (--discard F | --threshold Q) [--out result.csv] [--json]
                                  keep/reject each image of a folder by face quality
                                  (--engine ray --out result.parquet: on Ray Data, resumable)
    fiqa list                     registered detectors, embedders and scorers
    fiqa train ddpm ...           train the DifFIQA denoiser (resumable; --t-max, --init-from)
    fiqa train labels ...         DifFIQA pseudo-labels of the training faces (cached, shardable)
    fiqa train ediffiqa ...       distill eDifFIQA (MobileFaceNet + MLP head)
    fiqa train ediffiqa-free ...  eDifFIQA head on the frozen ArcFace embedding
    fiqa train diffiqa-r ...      DifFIQA(R): MobileFaceNet + linear head on the raw labels
    fiqa export onnx --scorer NAME [--weights PATH] --out FILE.onnx
                                  export a distilled regressor to ONNX and check its parity
                                  (--int8 --calibration FACES.npy: a static int8 graph)
    fiqa --version

The evaluation suites (``fiqa-bench quality | templates | alignment | runtime``) and the
experiments behind the docs' numbers (``fiqa-bench run NAME``) are the research harness,
package ``fiqa_bench`` (``fiqa bench ...`` only points there).

One module per sub-command (``assess``, ``filter``, ``listing``, ``bench``, ``train``,
``export``), each with ``NAME``, ``HELP``, ``HEAVY``, ``add_parser(subparsers)`` and
``run(args)``; ``run`` checks the arguments and calls one library function
(docs/architecture.md, "The command line"). This module holds only the top-level parser and
:func:`main`.

Exit codes: 0 success; 1 an error (one line ``fiqa: error: ...`` on stderr, no traceback: a
missing file, a bad value or combination of options (``InvalidArgumentError``), missing
weights, an unavailable device, a missing optional backend); 2 usage (an unknown option or a
missing argument: the sub-command's usage is printed); 3 ``assess`` / ``filter``: at least one
image could not be read (its output is still complete); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .._version import __version__
from ..errors import FiqaError
from . import assess, bench, export, listing, train
from . import filter as filter_
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

__all__ = ["main", "build_parser", "sample_image", "COMMANDS", "EXIT_OK", "EXIT_ERROR",
           "EXIT_USAGE", "EXIT_SOME_FAILED", "EXIT_INTERRUPTED"]

#: The sub-command modules, in the order ``fiqa --help`` lists them. A ``HEAVY`` one imports the
#: evaluation or training code to build its parser: built only when the command line names it,
#: so that ``fiqa --help``, ``assess`` and ``filter`` start fast.
COMMANDS = {m.NAME: m for m in (assess, filter_, listing, bench, train, export)}


def sample_image():
    """The bundled sample face (:func:`fiqa_sdk.io.sample_image`, RGB)."""
    from ..io import sample_image as sample

    return sample()


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The ``fiqa`` parser; ``full=False`` lists the ``HEAVY`` commands without their options
    (enough for ``fiqa --help`` and the light commands)."""
    ap = argparse.ArgumentParser(prog="fiqa", description="Face image quality assessment, offline.")
    ap.add_argument("--version", action="version", version=f"fiqa-sdk {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS.values():
        if full or not mod.HEAVY:
            mod.add_parser(sub)
        else:
            sub.add_parser(mod.NAME, help=mod.HELP)
    return ap


def _deepest_parser(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)parser of the command line's innermost sub-command, e.g. ``fiqa train
    ddpm``'s, so that a usage error prints that command's usage."""
    while True:
        for action in parser._actions:  # noqa: SLF001 - argparse has no public walk
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                name = getattr(args, action.dest, None)
                if name in action.choices:
                    parser = action.choices[name]
                    break
        else:
            return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fiqa`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(full=command in COMMANDS and COMMANDS[command].HEAVY)
    # parse_args would report a sub-command's unknown option with the top-level usage
    args, extra = parser.parse_known_args(argv)
    if extra:
        _deepest_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = words
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command].run(args)
    except FiqaError as exc:
        print(f"fiqa: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fiqa: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
