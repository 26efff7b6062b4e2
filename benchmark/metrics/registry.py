"""The metric registry: every metric is declared once, here-registered by the module that computes it.

The shape is pycocoevalcap's list of scorers with torchmetrics' metadata. A *scorer* is the unit
of computation (one mask pass gives IoU, F1, precision, recall, AUC; one METEOR jar run gives
METEOR) and declares the *metrics* it yields. Each `Metric` carries everything a reader needs:
key, label, one-line help, family, direction, headline flag, display scale, and how its
per-image values and its bootstrap statistic are formed (`reduction`). The scorer, the report,
`--json`, breakdowns, confidence intervals, `mmtt compare`, ranking and the board iterate this
registry; nothing else keeps a list of metric names.

Switching a slow metric off is one generic mechanism: `select(names, skip)` picks scorers by
scorer name or metric key (`--metrics` / `--skip` on every verb that scores).
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Family = Literal["mask", "text", "clue", "semantic"]
Task = Literal["localization", "interpretation"]
Reduction = Literal["mean", "ratio", "corpus", "pooled"]
REDUCTIONS: dict[str, str] = {
    "mean": "mean of per-image values (images a metric leaves unscored drop out)",
    "ratio": "ratio of sums of per-image counts (dataset-level)",
    "corpus": "corpus statistic recomputed from per-image sufficient statistics",
    "pooled": "pooled over every pixel of every image (no per-image value)",
}

SumStatistic = Callable[[np.ndarray], np.ndarray]
"""A vectorized function of column sums (B, k) -> (B,)."""


@dataclass(frozen=True)
class Metric:
    """One reported number, declared once."""

    key: str
    label: str
    help: str
    family: Family
    reduction: Reduction
    headline: bool = False          # a board column by default
    brief: bool = False             # in the compact terminal table too
    primary: bool = False           # the default ranking key of its task (IoU, CIDEr)
    higher_is_better: bool = True
    scale: float = 100.0            # the board shows value x scale (x100, CIDEr too, as the paper)
    per_image: str | None = None    # the per-sample column holding its per-image values, if any


@dataclass(frozen=True)
class Statistic:
    """How a metric is recomputed on any weighting of the images (a subset, a bootstrap replicate).

    `rows` (n, k) are per-image sufficient statistics; the metric is `fn(column sums)`. A mean of
    per-image values is rows (value, 1) with fn = ratio, so unscored (NaN) images drop out.
    """

    rows: np.ndarray
    fn: SumStatistic

    def on(self, subset: np.ndarray | None = None) -> float:
        rows = self.rows if subset is None else self.rows[subset]
        return float(np.asarray(self.fn(rows.sum(axis=0)[None]))[0])


def _ratio(sums: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[:, 0] / sums[:, 1]


def mean_statistic(values: np.ndarray) -> Statistic:
    """The mean of per-image values, NaN (unscored) images left out."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    return Statistic(np.stack([np.where(ok, values, 0.0), ok.astype(np.float64)], axis=1), _ratio)


@dataclass
class Scored:
    """What one scorer yields: corpus values, per-image columns, statistics, summary notes."""

    values: dict[str, float] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, Statistic] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inputs:
    """What scorers read: the scored ids, their truth, the predictions, the protocol, options.

    `memo` holds work shared by several scorers (the PTB-tokenized captions, the n-gram pass),
    computed once by whichever asks first; scorers may run on two threads at once, so another
    asking meanwhile waits for that result.
    """

    ids: list[str]
    truth: Any                              # benchmark.scoring.truth.TruthCache (None during `start`)
    strict: bool
    masks: Any = None                       # benchmark.scoring.maskpass.MaskPass, if localization
    captions: list[str] | None = None       # aligned with ids, if interpretation
    options: Any = None                     # benchmark.scoring.options.ScoreOptions
    memo: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)  # set: stop early (scoring failed)
    warm: dict[str, Any] = field(default_factory=dict)  # scorer name -> what its `warm_up` started

    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self.memo:
                self.memo[key] = make()
        return self.memo[key]


class Scorer(ABC):
    """A unit of computation yielding one or more metrics (subclass, then `register`)."""

    name: str
    task: Task
    metrics: tuple[Metric, ...]
    default: bool = True       # on unless skipped (False: only when named in --metrics)
    official: bool = False     # part of what the official script reports (or free with it)
    lead: bool = False         # long and mostly waiting on another process: scheduled first
    help: str = ""

    def available(self, options: Any) -> str | None:
        """Why this scorer cannot run with these options (None: it can)."""
        return None

    def warm_up(self, n_items: int) -> AbstractContextManager[Any]:
        """Entered before the submission is read, left when scoring ends (however it ends): start
        what is slow to start (a JVM loading its tables) so that it gets ready while the rest
        runs. What it yields reaches `score` as `inputs.warm[self.name]`. Default: nothing."""
        return nullcontext()

    def start(self, inputs: Inputs) -> None:
        """Called on the main thread once the predictions are read (`inputs.truth` not loaded
        yet), before the mask pass forks its workers: start work in another process (a Java
        tokenizer) that `score` collects, so that it runs while the truth loads. Threads must not
        be started here. Default: nothing."""

    @abstractmethod
    def score(self, inputs: Inputs) -> Scored:
        ...

    def statistic_from_samples(self, samples: Mapping[str, Any], key: str) -> Statistic | None:
        """A stored entry's statistic for one of this scorer's corpus metrics, rebuilt from the
        per-sample columns it keeps (None: not rebuildable). Per-image means need nothing here."""
        return None


_SCORERS: dict[str, Scorer] = {}
_METRICS: dict[str, Metric] = {}
_OWNER: dict[str, str] = {}
# the built-in metric modules, in report order (pycocoevalcap's list of scorers)
BUILTIN = ("benchmark.metrics.mask", "benchmark.metrics.text",
           "benchmark.metrics.clue", "benchmark.metrics.semantic")
_loaded = False


def register(scorer: Scorer) -> Scorer:
    """Add a scorer and its metrics (names must be new)."""
    own = {m.key for m in scorer.metrics}
    if scorer.name in _SCORERS or (scorer.name in _METRICS and scorer.name not in own):
        raise ValueError(f"scorer name {scorer.name!r} is taken")
    for m in scorer.metrics:
        if m.key in _METRICS:
            raise ValueError(f"metric {m.key!r} is registered already (by {_OWNER[m.key]!r})")
    _SCORERS[scorer.name] = scorer
    for m in scorer.metrics:
        _METRICS[m.key] = m
        _OWNER[m.key] = scorer.name
    return scorer


def _load() -> None:
    """Import the built-in metric modules, then fix the report order: the order of `BUILTIN` (and
    registration order within a module, and for metrics registered from elsewhere), whatever
    module happened to be imported first."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(module)
        rank = {name: k for k, name in enumerate(BUILTIN)}
        position = {name: k for k, name in enumerate(_SCORERS)}
        order = sorted(_SCORERS, key=lambda n: (rank.get(type(_SCORERS[n]).__module__, len(BUILTIN)), position[n]))
        scorers_in_order = {n: _SCORERS[n] for n in order}
        metrics_in_order = {m.key: _METRICS[m.key] for n in order for m in scorers_in_order[n].metrics}
        _SCORERS.clear()
        _SCORERS.update(scorers_in_order)
        _METRICS.clear()
        _METRICS.update(metrics_in_order)


def scorers() -> dict[str, Scorer]:
    _load()
    return dict(_SCORERS)


def metrics() -> dict[str, Metric]:
    """Every metric, in report order."""
    _load()
    return dict(_METRICS)


def metric(key: str) -> Metric | None:
    return metrics().get(key)


def owner(key: str) -> str:
    _load()
    return _OWNER[key]


def headline(family: Family | None = None) -> list[str]:
    """Keys of the headline metrics (those the board shows by default), in report order."""
    return [k for k, m in metrics().items() if m.headline and (family is None or m.family == family)]


def brief() -> list[str]:
    """Keys of the metrics of the compact terminal table, in report order."""
    return [k for k, m in metrics().items() if m.brief]


def primary() -> dict[str, str]:
    """Task -> its default ranking metric."""
    _load()
    return {_SCORERS[_OWNER[k]].task: k for k, m in _METRICS.items() if m.primary}


def keys(family: Family | None = None, *, reduction: Reduction | None = None) -> list[str]:
    return [k for k, m in metrics().items()
            if (family is None or m.family == family) and (reduction is None or m.reduction == reduction)]


def label(key: str) -> str:
    m = metric(key)
    return m.label if m else key


def help_text(key: str) -> str:
    m = metric(key)
    return m.help if m else ""


def ordered(present: Iterable[str]) -> list[str]:
    """`present` keys in registry order, unknown ones (older stored scores) last, sorted."""
    present = list(present)
    known = [k for k in metrics() if k in present]
    return known + sorted(k for k in present if k not in _METRICS)


def select(names: Iterable[str] | None, skip: Iterable[str] = (), *, official: bool = False,
           options: Any = None) -> list[Scorer]:
    """The scorers to run: `names` (scorer names or metric keys; None: the defaults) minus `skip`.

    Under the official protocol the defaults are what the official script reports plus what is
    free with it; everything else runs on request. Raises ValueError on an unknown name or when a
    requested scorer cannot run with these options.
    """
    table = scorers()

    def resolve(name: str) -> str:
        if name in table:
            return name
        if name in _METRICS:
            return _OWNER[name]
        known = ", ".join(list(table) + [k for k in _METRICS if k not in table])
        raise ValueError(f"unknown metric {name!r} (known: {known})")

    skipped = {resolve(n) for n in skip}
    if names is None:
        chosen = [s for s in table.values() if s.default and (s.official or not official)
                  and s.available(options) is None]
    else:
        wanted = {resolve(n) for n in names}
        chosen = [s for s in table.values() if s.name in wanted]
        for s in chosen:
            why = s.available(options)
            if why is not None:
                raise ValueError(f"metric {s.name!r} cannot run: {why}")
    return [s for s in chosen if s.name not in skipped]


def describe() -> list[dict[str, Any]]:
    """The registry as JSON-ready rows (for `mmtt metrics` and the board's help)."""
    rows = []
    for key, m in metrics().items():
        s = _SCORERS[_OWNER[key]]
        rows.append({"key": key, "label": m.label, "help": m.help, "family": m.family, "task": s.task,
                     "reduction": m.reduction, "headline": m.headline, "primary": m.primary,
                     "higher_is_better": m.higher_is_better,
                     "scorer": s.name, "default": s.default, "official": s.official})
    return rows


def statistics_of(samples: Mapping[str, Any], key: str) -> Statistic | None:
    """A stored entry's statistic for `key` from its per-sample columns (compare, robustness).

    Per-image means come from the metric's per-image column; corpus metrics from the stored
    sufficient statistics their scorer names (`corpus_rows`), when kept.
    """
    m = metric(key)
    if m is None:
        return None
    if m.reduction == "mean" and m.per_image and samples.get(m.per_image) is not None:
        return mean_statistic(np.asarray(samples[m.per_image], dtype=np.float64))
    return _SCORERS[_OWNER[key]].statistic_from_samples(samples, key)
