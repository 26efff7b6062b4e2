"""`mmtt submit | rescore | leaderboard | compare`: the store's command-line verbs."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the store's subcommands on the `mmtt` parser."""
