"""Models by name: what `mmtt models` lists and `mmtt run MODEL` builds.

Entries are declared here with their import path and built lazily, so listing the registry
imports no model code (and no heavy dependency).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from benchmark.errors import BenchmarkError


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str            # localizer | captioner | both
    needs: str           # nothing | training | checkpoint
    target: str          # "module:callable" building the model: callable(**options) -> Model
    description: str
    trainer: str | None = None  # "module:callable" for `mmtt train`: callable(**options) -> checkpoint dir
    uses: tuple[str, ...] = ()  # models whose trained checkpoint this one's training reads (train those first)


_REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"model '{entry.name}' registered twice")
    _REGISTRY[entry.name] = entry


def entries() -> list[Entry]:
    return [(_REGISTRY[k]) for k in sorted(_REGISTRY)]


def get_entry(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BenchmarkError(f"unknown model '{name}' (see `mmtt models`; known: {', '.join(sorted(_REGISTRY))})") from None


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(name: str, **options: Any):
    """Instantiate model `name`; options (checkpoint dir, device, ...) go to its builder."""
    return _load(get_entry(name).target)(**options)


def train(name: str, **options: Any):
    """Run model `name`'s trainer (data root, output dir, device, ...)."""
    entry = get_entry(name)
    if entry.trainer is None:
        raise BenchmarkError(f"model '{name}' needs no training")
    return _load(entry.trainer)(**options)
