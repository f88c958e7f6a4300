"""``fiqa bench ...``: moved. The evaluation suites are ``fiqa-bench quality | templates |
alignment | runtime`` (the research harness, package ``fiqa_bench``), with the same options;
this command only says so (exit code 1), so that an old command line gets the new one."""

from __future__ import annotations

import argparse
import shlex

from ..errors import InvalidArgumentError

NAME = "bench"
HELP = "moved: the benchmarks are `fiqa-bench quality | templates | alignment | runtime`"
HEAVY = False


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, add_help=False,
                              description="Moved to the research harness: run `fiqa-bench` "
                                          "with the same arguments.")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def run(args: argparse.Namespace) -> int:
    rest = list(args.rest)
    raise InvalidArgumentError(
        "`fiqa bench` moved to the research harness (installed with fiqa-sdk): run `fiqa-bench "
        + (shlex.join(rest) if rest else "quality | templates | alignment | runtime ...")
        + "` (same options; docs/api.md, 'Migration')")
