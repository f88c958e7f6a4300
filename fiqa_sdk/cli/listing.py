"""``fiqa list``: the registered detectors, embedders and scorers with their descriptions."""

from __future__ import annotations

import argparse

from .common import EXIT_OK

NAME = "list"
HELP = "list registered detectors, embedders and scorers"
HEAVY = False


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(NAME, help=HELP)


def run(args: argparse.Namespace) -> int:
    from ..detect import DETECTORS
    from ..embed import EMBEDDERS
    from ..quality import SCORERS

    for title, reg in (("detectors", DETECTORS), ("embedders", EMBEDDERS), ("scorers", SCORERS)):
        print(f"{title}:")
        for name, doc in reg.describe().items():
            print(f"  {name:<18} {doc}")
    return EXIT_OK
