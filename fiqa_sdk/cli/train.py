"""``fiqa train ...``: the training commands, whose parsers and runners live in
:mod:`fiqa_sdk.train.cli` (each ``fiqa train MODEL`` sets its own runner)."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train models (the DifFIQA denoiser, the regressors)"
HEAVY = True


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..train.cli import add_train_parser

    return add_train_parser(subparsers)


def run(args: argparse.Namespace) -> int:
    return args.func(args)
