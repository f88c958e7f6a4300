"""What the sub-command modules share: exit codes and the conventions of their output."""

from __future__ import annotations

import argparse
import sys

#: Exit codes of ``fiqa`` (docs/cli.md): success; an error (a one-line ``fiqa: error: ...``);
#: usage (argparse: an unknown option, a missing argument); ``assess`` / ``filter``: at least
#: one image could not be read; interrupted.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def progress_flag(args: argparse.Namespace) -> bool:
    """``--progress`` / ``--no-progress``, by default on when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)
