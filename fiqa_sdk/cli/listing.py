"""``fiqa list``: the registered detectors, embedders and scorers with their cards
(:meth:`fiqa_sdk._registry.Registry.cards`); ``--json`` prints them as one JSON object."""

from __future__ import annotations

import argparse
import json

from .common import EXIT_OK

NAME = "list"
HELP = "list registered detectors, embedders and scorers"
HEAVY = False


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP)
    p.add_argument("--json", action="store_true", help="the cards as one JSON object")
    p.add_argument("--brief", action="store_true", help="names and descriptions only")
    return p


def run(args: argparse.Namespace) -> int:
    from ..detect import DETECTORS
    from ..embed import EMBEDDERS
    from ..quality import scorer_cards

    cards = {"detectors": DETECTORS.cards(), "embedders": EMBEDDERS.cards(),
             "scorers": scorer_cards()}
    if args.json:
        print(json.dumps(cards, indent=2, default=list))
        return EXIT_OK
    for title, entries in cards.items():
        print(f"{title}:")
        for name, card in entries.items():
            print(f"  {name:<18} {card.pop('doc')}")
            for key, value in ([] if args.brief else card.items()):
                text = ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else value
                print(f"  {'':<18}   {key}: {text}")
    return EXIT_OK
