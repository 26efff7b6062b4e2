"""`mmtt compare A B`: is the difference between two entries on a split more than resampling noise?

Method: a paired bootstrap over images (`benchmark.metrics.stats.paired_bootstrap`, run for all
metrics in one pass over the replicate weights: 21,679 images x 1,000 replicates in about a
second): both
entries' stored per-sample scores are resampled with the *same* image draws, and each replicate
recomputes each entry's metric, so image difficulty cancels out. Reported per metric: the
observed difference A - B, its 95% percentile interval, and a two-sided p-value; `significant`
when p < alpha. Per-image means (IoU, F1, precision, recall, CIDEr-D with the IDF held fixed,
ROUGE-L, METEOR segments, clue F1) are exact; images a metric left unscored (NaN; the official
protocol's skipped masks) drop out of that entry's mean in each replicate, as they do in its score.
BLEU is a corpus statistic: it is tested paired only when per-image n-gram statistics
(`bleu_stats`) were stored; otherwise the two stored 95% CIs are compared (non-overlapping CIs
= significant, a conservative test) and no p-value is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from benchmark.metrics import registry
from benchmark.metrics.stats import Bootstrap, percentile_interval
from benchmark.store.db import StoreError
from benchmark.store.detail import current_evaluation
from benchmark.store.scores import metrics_of, samples_of

PAIRED = "paired bootstrap over images (same draws for both entries), percentile 95% interval"
UNPAIRED_BLEU = ("not paired: corpus BLEU needs per-image n-gram statistics, not stored; "
                 "significant when the two stored 95% CIs do not overlap (conservative)")


def _result(diff: float, low, high, p, alpha: float, method: str, a, b) -> dict[str, Any]:
    def clean(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    p = clean(p)
    return {"a": clean(a), "b": clean(b), "diff": clean(diff), "low": clean(low), "high": clean(high),
            "p_value": p, "significant": None if p is None else bool(p < alpha), "method": method}


def align(ids_a: list[str], ids_b: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids in both, in A's order; their positions in A; their positions in B)."""
    pos_b = {i: k for k, i in enumerate(ids_b)}
    common = [i for i in ids_a if i in pos_b]
    ia = np.array([k for k, i in enumerate(ids_a) if i in pos_b], dtype=np.intp)
    ib = np.array([pos_b[i] for i in common], dtype=np.intp)
    return common, ia, ib


PairedSpec = tuple[np.ndarray, np.ndarray, Any]
"""(rows_a, rows_b, sum_statistic): one metric of two score sets over the same images."""


def paired_specs(cols_a: dict[str, Any], cols_b: dict[str, Any], ia: np.ndarray, ib: np.ndarray,
                 metrics: Iterable[str]) -> tuple[dict[str, PairedSpec], list[str]]:
    """The paired-bootstrap rows of each metric whose statistic both per-sample column sets hold
    (`registry.statistics_of`), aligned by `ia`/`ib` (positions of the same images in A and in B);
    also the corpus metrics that cannot be paired (no per-image sufficient statistics stored).
    Shared by `compare` and the robustness drops."""
    specs: dict[str, PairedSpec] = {}
    unpaired: list[str] = []
    for m in metrics:
        stat_a, stat_b = registry.statistics_of(cols_a, m), registry.statistics_of(cols_b, m)
        if stat_a is not None and stat_b is not None:
            specs[m] = (stat_a.rows[ia], stat_b.rows[ib], stat_a.fn)
        elif (registry.metric(m) is not None) and registry.metric(m).reduction == "corpus":
            unpaired.append(m)
    return specs, unpaired


def paired_replicates(specs: dict[str, PairedSpec], *, n_boot: int,
                      seed: int) -> dict[str, tuple[float, float, np.ndarray, np.ndarray]]:
    """{name: (A's value, B's value, A's replicates, B's replicates)} from one `Bootstrap` pass: the
    same image draws for A and B (and for every metric), so row i of both is one resample."""
    if not specs:
        return {}
    n = len(next(iter(specs.values()))[0])
    boot = Bootstrap(n, n_boot, seed)
    flat: dict[str, Any] = {}
    for name, (ra, rb, fn) in specs.items():
        flat[f"a:{name}"], flat[f"b:{name}"] = (ra, fn), (rb, fn)
    reps = boot.replicates_many(flat)
    return {name: (float(fn(ra.sum(axis=0)[None])[0]), float(fn(rb.sum(axis=0)[None])[0]),
                   np.asarray(reps[f"a:{name}"], dtype=np.float64), np.asarray(reps[f"b:{name}"], dtype=np.float64))
            for name, (ra, rb, fn) in specs.items()}


def paired_many(specs: dict[str, PairedSpec], *, n_boot: int, seed: int,
                alpha: float) -> dict[str, dict[str, float]]:
    """`paired_bootstrap` for many metrics at once: one pass over the replicate weights.

    `specs[name] = (rows_a, rows_b, sum_statistic)`; same result as calling `paired_bootstrap`
    per metric (same draws: they depend only on n, seed and the replicate index).
    """
    out = {}
    for name, (value_a, value_b, reps_a, reps_b) in paired_replicates(specs, n_boot=n_boot, seed=seed).items():
        diffs = reps_a - reps_b
        point = value_a - value_b
        low, high = percentile_interval(diffs, alpha)
        ok = diffs[~np.isnan(diffs)]
        p = float(min(1.0, max(1.0 / n_boot, 2 * min(np.mean(ok <= 0), np.mean(ok >= 0))))) if len(ok) else float("nan")
        out[name] = {"diff": point, "low": low, "high": high, "p_value": p}
    return out


def compare(session: Session, a: str, b: str, split: str, protocol: str = "strict", *, n_boot: int = 1000,
            seed: int = 0, alpha: float = 0.05, public: bool = False) -> dict[str, Any]:
    """Paired test of A - B on every headline metric both entries have (see the module doc)."""
    if a == b:
        raise StoreError("compare needs two different entries")
    _, _, ev_a = current_evaluation(session, a, split, protocol, public=public)
    _, _, ev_b = current_evaluation(session, b, split, protocol, public=public)
    cols_a, cols_b = samples_of(session, ev_a.id), samples_of(session, ev_b.id)
    stored_a, stored_b = metrics_of(session, ev_a.id), metrics_of(session, ev_b.id)
    ids_a, ids_b = list(cols_a.get("image_id", [])), list(cols_b.get("image_id", []))
    common, ia, ib = align(ids_a, ids_b)
    if not common:
        raise StoreError(f"'{a}' and '{b}' have no scored image in common on split '{split}'")
    out: dict[str, Any] = {"a": a, "b": b, "split": split, "protocol": protocol, "n_images": len(common),
                           "n_boot": n_boot, "seed": seed, "alpha": alpha, "method": PAIRED, "metrics": {}}
    if len(common) != max(len(ids_a), len(ids_b)):
        out["note"] = f"compared on the {len(common)} images both entries were scored on"
    wanted = [m for m in registry.headline() if m in stored_a and m in stored_b]
    specs, unpaired = paired_specs(cols_a, cols_b, ia, ib, wanted)
    tests = paired_many(specs, n_boot=n_boot, seed=seed, alpha=alpha)
    for m, (ra, rb, fn) in specs.items():
        r = tests[m]
        out["metrics"][m] = _result(r["diff"], r["low"], r["high"], r["p_value"], alpha, PAIRED,
                                    fn(ra.sum(axis=0)[None])[0], fn(rb.sum(axis=0)[None])[0])
    for m in unpaired:
        (va, la, ha), (vb, lb, hb) = stored_a[m], stored_b[m]
        if va is None or vb is None:
            continue
        res = _result(va - vb, None, None, None, alpha, UNPAIRED_BLEU, va, vb)
        if None not in (la, ha, lb, hb):
            res["significant"] = bool(la > hb or lb > ha)
        out["metrics"][m] = res
    if not out["metrics"]:
        raise StoreError(f"'{a}' and '{b}' share no metric to compare on split '{split}' (different tasks?)")
    return out


def format_comparison(result: dict[str, Any]) -> str:
    lines = [f"{result['a']} vs {result['b']} on {result['split']} ({result['protocol']}), "
             f"{result['n_images']} images, {result['n_boot']} paired replicates (seed {result['seed']})",
             f"{'metric':<12}{'A':>10}{'B':>10}{'A-B':>10}   {'95% CI of A-B':<22}{'p':>8}  verdict"]
    for m, r in result["metrics"].items():
        def f(v):
            return "-" if v is None else f"{v:.4f}"

        ci = f"[{f(r['low'])}, {f(r['high'])}]" if r["low"] is not None else "(unpaired)"
        verdict = {True: "significant", False: "not significant", None: "-"}[r["significant"]]
        p = "-" if r["p_value"] is None else f"{r['p_value']:.4f}"
        lines.append(f"{m:<12}{f(r['a']):>10}{f(r['b']):>10}{f(r['diff']):>10}   {ci:<22}{p:>8}  {verdict}")
    lines.append("method: " + result["method"] + f"; alpha {result['alpha']}")
    if any(r["method"] == UNPAIRED_BLEU for r in result["metrics"].values()):
        lines.append("corpus metrics: " + UNPAIRED_BLEU)
    if result.get("note"):
        lines.append("note: " + result["note"])
    return "\n".join(lines)
