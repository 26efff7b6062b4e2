"""Robustness on the board: how much each entry loses on the degraded variants of a split.

A split's variants (`test_downscale`, `test_blur`, `test_both`: the same items, images downscaled
0.75x and back, blurred 5x5, or both — `benchmark.data.robust`) are splits of their own on the
board, each with its fingerprint and a pointer to its clean base (`register_split`). A variant
submission is linked to the entry's clean submission (`benchmark.store.submission`), so a drop
is always measured between two runs of the same model.

Per entry, variant and headline metric (`ROBUST_METRICS`):
- `clean`, `degraded`: the two stored scores; `drop = clean - degraded` (positive: worse when
  degraded) and `rel_drop = drop / clean`;
- a 95% percentile interval of each from the *paired* bootstrap of `benchmark.store.compare`
  (`paired_specs` / `paired_replicates`, on the registry's per-image statistics): every replicate
  resamples the same images in the clean and the degraded run, so image difficulty cancels out.
  Per-image means are exact; corpus BLEU is recomputed from resampled n-gram statistics; CIDEr-D
  is the mean of per-image scores with the IDF of the split's references held fixed (the variant
  has the same references). A metric with no per-image statistic (pooled pixel AUC) gets its drop
  without an interval (`paired: false`).
Robustness rank (`RANK_RULE`): by the mean relative drop of IoU and CIDEr (those the entry has)
over the three variants, smallest first; entries without all three variant runs are "not
evaluated" (never scored as zero), and entries with a zero clean score have no relative drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmark.data.robust import VARIANTS, make_variants, missing_variants, variant_split_name
from benchmark.data.split import Split as DataSplit
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.metrics import registry
from benchmark.metrics.stats import percentile_interval
from benchmark.store.compare import align, paired_replicates, paired_specs
from benchmark.store.models import Entry, Evaluation, Split, Submission
from benchmark.store.ranking import leaderboard
from benchmark.store.scores import metrics_of, samples_of

# the registry's headline metrics; the rank uses each task's primary metric (IoU, CIDEr)
ROBUST_METRICS = tuple(registry.headline())
RANK_METRICS = tuple(registry.primary()[task] for task in ("localization", "interpretation"))
RANK_RULE = ("ranked by the mean relative drop (clean - degraded) / clean of IoU and CIDEr (those the entry "
             "has) over the three variants (downscale, blur, both); smallest drop first; entries without all "
             "three variant runs are not evaluated, entries with a zero clean score have no relative drop")
METHOD = ("paired bootstrap over images: each replicate resamples the same images in the clean and the degraded "
          "run; percentile 95% intervals of the drop and of the relative drop")
NOT_EVALUATED = "not evaluated"


# ------------------------------------------------------------------------------- registering
@dataclass
class Registered:
    row: Split
    state: str


def register_split(session: Session, data: DataSplit, *, hidden: bool = False, update: bool = False,
                   base: Split | None = None, variant: str | None = None) -> Registered:
    """Add or check split `data` on the board (as `variant` of `base` when given)."""
    row = session.scalar(select(Split).where(Split.name == data.name))
    base_id = base.id if base is not None else None
    if row is None:
        row = Split(name=data.name, fingerprint=data.fingerprint, n_items=len(data), hidden=hidden,
                    base_split_id=base_id, variant=variant)
        session.add(row)
        session.flush()
        return Registered(row, "added")
    if (row.base_split_id, row.variant) != (base_id, variant):
        what = f"the '{variant}' variant of '{base.name}'" if base is not None else "a clean split"
        raise BenchmarkError(f"split '{data.name}' is on the board, but not as {what}")
    state = "unchanged"
    if row.fingerprint != data.fingerprint:
        if not update:
            raise BenchmarkError(f"split '{data.name}' is on the board with fingerprint {row.fingerprint[:19]}..., "
                                 f"the data has {data.fingerprint[:19]}...; pass --update (then `mmtt rescore`)")
        row.fingerprint, row.n_items = data.fingerprint, len(data)
        state = "updated (run `mmtt rescore` to re-score its entries)"
    if hidden:
        row.hidden = True
    return Registered(row, state)


def load_variant_splits(data: Path, base: DataSplit, *, progress: bool = False) -> dict[str, DataSplit]:
    """The three variants of `base` from `data`, created first where missing; each must hold the
    base's image ids in its order (a variant is the same items, degraded)."""
    missing = missing_variants(data, base.name)
    if missing:
        make_variants(data, base.name, missing, progress=progress)
    out = {}
    for variant in VARIANTS:
        split = load_split(data, variant_split_name(base.name, variant))
        if split.ids != base.ids:
            raise BenchmarkError(f"{split.json_path}: its image ids differ from split '{base.name}': not a variant of "
                                 f"it (re-create it with `mmtt data robust --split {base.name} --variant {variant}`)")
        out[variant] = split
    return out


# ------------------------------------------------------------------------------------ drops
@dataclass
class Drop:
    """One metric of one entry on one variant against its clean score (see the module doc)."""

    clean: float | None
    degraded: float | None
    drop: float | None = None
    drop_ci: tuple[float | None, float | None] = (None, None)
    rel_drop: float | None = None
    rel_ci: tuple[float | None, float | None] = (None, None)
    paired: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"clean": self.clean, "degraded": self.degraded, "drop": self.drop, "drop_ci95": list(self.drop_ci),
                "rel_drop": self.rel_drop, "rel_drop_ci95": list(self.rel_ci), "paired": self.paired}


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if np.isnan(v) else v


def _relative(clean: np.ndarray | float, degraded: np.ndarray | float):
    """(clean - degraded) / clean, NaN where the clean score is 0 (no relative drop of nothing)."""
    clean = np.asarray(clean, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clean != 0, (clean - np.asarray(degraded, dtype=np.float64)) / clean, np.nan)


def paired_drops(specs: dict[str, Any], *, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, Drop]:
    """Drops clean (A) -> degraded (B) with paired-bootstrap intervals for `paired_specs` rows."""
    out = {}
    for name, (clean, degraded, reps_c, reps_d) in paired_replicates(specs, n_boot=n_boot, seed=seed).items():
        drop_ci = percentile_interval(reps_c - reps_d, alpha)
        rel_ci = percentile_interval(_relative(reps_c, reps_d), alpha)
        rel = _relative(clean, degraded)
        out[name] = Drop(clean=_num(clean), degraded=_num(degraded), drop=_num(clean - degraded),
                         drop_ci=(_num(drop_ci[0]), _num(drop_ci[1])), rel_drop=_num(rel),
                         rel_ci=(_num(rel_ci[0]), _num(rel_ci[1])))
    return out


def _unpaired(clean: float | None, degraded: float | None) -> Drop:
    if clean is None or degraded is None:
        return Drop(clean=clean, degraded=degraded, paired=False)
    return Drop(clean=clean, degraded=degraded, drop=clean - degraded, rel_drop=_num(_relative(clean, degraded)),
                paired=False)


# ------------------------------------------------------------------------------------ table
@dataclass
class RobustRow:
    entry: str
    team: str
    baseline: bool
    tasks: list[str]
    board_rank: int
    clean: dict[str, float | None]
    clean_ci95: dict[str, list[float | None]]
    variants: dict[str, dict[str, Drop]] = field(default_factory=dict)   # only the evaluated variants
    notes: list[str] = field(default_factory=list)
    score: float | None = None   # the mean relative drop of the rank rule
    rank: int | None = None

    @property
    def status(self) -> str:
        if not self.variants:
            return NOT_EVALUATED
        if len(self.variants) < len(VARIANTS):
            return "partly evaluated"
        return "ranked" if self.rank is not None else "not ranked"

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "entry": self.entry, "team": self.team, "baseline": self.baseline,
                "tasks": self.tasks, "board_rank": self.board_rank, "status": self.status,
                "mean_rel_drop": self.score, "clean": self.clean, "clean_ci95": self.clean_ci95,
                "variants": {v: ({m: d.to_json() for m, d in self.variants[v].items()} if v in self.variants
                                 else NOT_EVALUATED) for v in VARIANTS},
                "notes": self.notes}


@dataclass
class RobustTable:
    split: str
    protocol: str
    n_boot: int
    seed: int
    rows: list[RobustRow]
    variant_splits: dict[str, str]   # variant -> its split on the board (those registered)
    variants: tuple[str, ...] = VARIANTS
    metrics: tuple[str, ...] = ROBUST_METRICS
    rule: str = RANK_RULE
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "protocol": self.protocol, "variants": list(self.variants),
                "variant_splits": self.variant_splits, "metrics": list(self.metrics),
                "rank_metrics": list(RANK_METRICS), "rule": self.rule, "method": self.method,
                "n_boot": self.n_boot, "seed": self.seed, "rows": [r.to_json() for r in self.rows]}


def robustness(session: Session, split: str, *, protocol: str = "strict", team_entry: str = "best",
               public: bool = True, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> RobustTable:
    """The robustness table of clean split `split`: one row per entry of its board (same rules)."""
    board_rows = leaderboard(session, split, protocol=protocol, team_entry=team_entry, public=public)
    base = session.scalar(select(Split).where(Split.name == split))
    assert base is not None   # `leaderboard` raised otherwise
    variant_rows = {s.variant: s for s in session.scalars(select(Split).where(Split.base_split_id == base.id))}
    names = [r.entry for r in board_rows]
    clean_ev = dict(session.execute(
        select(Entry.name, Evaluation.id).join(Entry, Evaluation.entry_id == Entry.id)
        .where(Evaluation.split_id == base.id, Evaluation.protocol == protocol, Evaluation.current.is_(True),
               Entry.name.in_(names))).all())
    variant_ev: dict[tuple[str, str], tuple[int, int | None]] = {}
    if variant_rows:
        q = (select(Entry.name, Split.variant, Evaluation.id, Submission.clean_submission_id)
             .join(Entry, Evaluation.entry_id == Entry.id).join(Split, Evaluation.split_id == Split.id)
             .join(Submission, Evaluation.submission_id == Submission.id)
             .where(Split.base_split_id == base.id, Evaluation.protocol == protocol, Evaluation.current.is_(True),
                    Submission.status == "scored", Entry.name.in_(names)))
        for name, variant, ev_id, clean_sub in session.execute(q):
            variant_ev[(name, variant)] = (ev_id, clean_sub)

    rows: list[RobustRow] = []
    groups: dict[int, dict[str, Any]] = {}   # paired specs grouped by image count (one bootstrap pass each)
    for r in board_rows:
        row = RobustRow(entry=r.entry, team=r.team, baseline=r.baseline, tasks=r.tasks, board_rank=r.rank,
                        clean={m: r.metrics.get(m) for m in ROBUST_METRICS if r.metrics.get(m) is not None},
                        clean_ci95={m: r.ci95[m] for m in ROBUST_METRICS if m in r.ci95})
        rows.append(row)
        clean_cols = None
        for variant in VARIANTS:
            found = variant_ev.get((r.entry, variant))
            if found is None:
                continue
            ev_id, clean_sub = found
            if clean_sub != r.submission_id:
                row.notes.append(f"{variant}: run linked to clean submission #{clean_sub}, not the current "
                                 f"#{r.submission_id}: resubmit the variant runs")
                continue
            if clean_cols is None:
                clean_cols = samples_of(session, clean_ev[r.entry])
            var_cols = samples_of(session, ev_id)
            common, ia, ib = align(list(clean_cols.get("image_id", [])), list(var_cols.get("image_id", [])))
            if not common:
                row.notes.append(f"{variant}: no scored image in common with the clean run")
                continue
            stored = {m: v for m, (v, _, _) in metrics_of(session, ev_id).items()}
            wanted = [m for m in ROBUST_METRICS if m in row.clean and stored.get(m) is not None]
            specs, _ = paired_specs(clean_cols, var_cols, ia, ib, wanted)
            row.variants[variant] = {}
            for m in wanted:   # no per-image statistic stored (pooled AUC, older corpus rows): no interval
                if m not in specs:
                    row.variants[variant][m] = _unpaired(row.clean.get(m), stored.get(m))
            group = groups.setdefault(len(common), {})
            for m, spec in specs.items():
                group[(r.entry, variant, m)] = spec
    by_entry = {row.entry: row for row in rows}
    for specs in groups.values():
        keyed = {"\0".join(k): v for k, v in specs.items()}
        drops = paired_drops(keyed, n_boot=n_boot, seed=seed, alpha=alpha)
        for (entry, variant, m) in specs:
            by_entry[entry].variants[variant][m] = drops["\0".join((entry, variant, m))]
    for row in rows:
        row.variants = {v: {m: row.variants[v][m] for m in ROBUST_METRICS if m in row.variants[v]}
                        for v in VARIANTS if v in row.variants}
    rank_rows(rows)
    return RobustTable(split=split, protocol=protocol, n_boot=n_boot, seed=seed, rows=rows,
                       variant_splits={v: s.name for v, s in sorted(variant_rows.items())})


def rank_score(row: RobustRow) -> float | None:
    """The rank rule's number: mean relative drop of the entry's rank metrics over all variants."""
    if len(row.variants) < len(VARIANTS):
        return None
    values = []
    for variant in VARIANTS:
        for m in RANK_METRICS:
            if m in row.clean:
                drop = row.variants[variant].get(m)
                if drop is None or drop.rel_drop is None:
                    return None
                values.append(drop.rel_drop)
    return float(np.mean(values)) if values else None


def rank_rows(rows: list[RobustRow]) -> list[RobustRow]:
    """Number the rows by the rank rule (ties share a rank); unranked rows keep their board order after."""
    for row in rows:
        row.score = rank_score(row)
        row.rank = None
        if row.score is None and len(row.variants) == len(VARIANTS):
            row.notes.append("no relative drop: a rank metric's clean score is 0")
    ranked = sorted((r for r in rows if r.score is not None), key=lambda r: (r.score, r.board_rank, r.entry))
    previous = None
    for i, row in enumerate(ranked, start=1):
        row.rank = previous.rank if previous is not None and previous.score == row.score else i
        previous = row
    rest = sorted((r for r in rows if r.score is None), key=lambda r: (r.board_rank, r.entry))
    rows[:] = ranked + rest
    return rows


def format_robust(table: RobustTable, metrics: tuple[str, ...] | None = None) -> str:
    """The table in the terminal: per entry its rank line, then one line per metric and variant."""
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def ci(pair, fn) -> str:
        return "" if pair[0] is None or pair[1] is None else f"[{fn(pair[0])}, {fn(pair[1])}]"

    if not table.rows:
        return f"no scored entry on split {table.split} ({table.protocol})"
    shown = metrics or table.metrics
    width = max(5, *(len(r.entry) + 2 for r in table.rows))
    lines = [f"robustness on split {table.split} ({table.protocol}): clean vs "
             + ", ".join(f"{v} ({table.variant_splits.get(v, 'not registered')})" for v in table.variants),
             f"{'rank':>4}  {'entry':<{width}}  {'mean rel drop':>13}  {'metric':<9} {'variant':<10}"
             f"{'clean':>8}{'degraded':>10}{'drop':>9}  {'95% CI':<18}{'rel drop':>9}  95% CI"]
    for row in table.rows:
        name = row.entry + (" *" if row.baseline else "")
        rank = "-" if row.rank is None else str(row.rank)
        head = f"{rank:>4}  {name:<{width}}  {pct(row.score) if row.score is not None else row.status:>13}"
        first = True
        for variant, drops in row.variants.items():
            for m in shown:
                d = drops.get(m)
                if d is None:
                    continue
                lead = head if first else " " * len(head)
                first = False
                lines.append(f"{lead}  {m:<9} {variant:<10}{f(d.clean):>8}{f(d.degraded):>10}{f(d.drop):>9}  "
                             f"{ci(d.drop_ci, f) or ('(unpaired)' if not d.paired else ''):<18}{pct(d.rel_drop):>9}  "
                             f"{ci(d.rel_ci, pct)}")
        if first:
            lines.append(head)
        for note in row.notes:
            lines.append(" " * (8 + width) + f"note: {note}")
    lines.append("")
    lines.append(f"rule: {table.rule}")
    lines.append(f"method: {table.method}; {table.n_boot} replicates, seed {table.seed}; * baseline; "
                 "drop = clean - degraded (positive: worse when degraded)")
    return "\n".join(lines)
