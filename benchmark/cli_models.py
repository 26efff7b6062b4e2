"""`mmtt models | run | train` and `mmtt data robust`: the CLI side that wires baselines to the harness.

This module (part of the CLI) is the one place where `benchmark` meets `baselines`.
"""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction) -> None:
    """Register the model verbs on `mmtt` and the `robust` action on `mmtt data`."""
