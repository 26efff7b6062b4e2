"""`mmtt convert`: official checkpoints to this project's format (CLI side)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `mmtt convert ...`."""
