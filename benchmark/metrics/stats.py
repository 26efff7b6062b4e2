"""Uncertainty of benchmark scores: a seeded, chunked, vectorized image-level bootstrap.

Method: the nonparametric bootstrap over images. Replicate b draws n images with replacement;
a statistic evaluated on each replicate gives its bootstrap distribution, and the
100(1 - alpha)% interval is the *percentile* interval — the alpha/2 and 1 - alpha/2 quantiles of
the replicate values (numpy's default linear interpolation). Replicates where a statistic is
undefined (NaN) are left out of the quantiles.

Replicate b is drawn from its own generator, ``SeedSequence(seed, spawn_key=(b,))``, so the
draws depend only on (n, seed, b): the same replicates serve every metric of a submission (all
its intervals come from one set of resamples), two systems scored on the same images are
resampled jointly (`paired_bootstrap`), and the chunk size changes memory use, never results.

A replicate is held as a weight row (how often each image was drawn), so a mean is a matrix
product, and any statistic of column sums (micro IoU from summed confusion counts, corpus BLEU
from summed n-gram counts) is a vectorized function of ``weights @ rows``. Weights are built in
chunks of `chunk_size` replicates, so 1,000 replicates of 21,679 images never need the full
(1000, 21679) matrix at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Union

import numpy as np

Statistic = Callable[[np.ndarray], "float | np.ndarray"]
"""A function of the resampled rows (m, ...) -> value; the slow, fully general path."""
SumStatistic = Callable[[np.ndarray], np.ndarray]
"""A vectorized function of replicate column sums (B, k) -> (B,) or (B, m)."""
Spec = Union[np.ndarray, tuple[np.ndarray, SumStatistic]]
"""For `Bootstrap.replicates_many`: values (their mean) or (rows, sum statistic)."""


class Bootstrap:
    """One set of bootstrap replicates over `n` images, evaluated for any number of statistics."""

    def __init__(self, n: int, n_boot: int = 1000, seed: int = 0, *, chunk_size: int = 64) -> None:
        if n < 1:
            raise ValueError("the bootstrap needs at least one image")
        if n_boot < 1 or chunk_size < 1:
            raise ValueError("n_boot and chunk_size must be positive")
        self.n, self.n_boot, self.seed, self.chunk_size = int(n), int(n_boot), int(seed), int(chunk_size)

    # -- the resamples -------------------------------------------------------------------------
    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start, n) image indices of replicates start..stop-1."""
        stop = self.n_boot if stop is None else min(stop, self.n_boot)
        out = np.empty((max(stop - start, 0), self.n), dtype=np.intp)
        for row, b in enumerate(range(start, stop)):
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(b,)))
            out[row] = rng.integers(0, self.n, size=self.n)
        return out

    def index_chunks(self) -> Iterator[np.ndarray]:
        """Replicate indices, `chunk_size` replicates at a time."""
        for start in range(0, self.n_boot, self.chunk_size):
            yield self.indices(start, start + self.chunk_size)

    def weight_chunks(self) -> Iterator[np.ndarray]:
        """(c, n) float64 draw counts per image (each row sums to n), chunk by chunk."""
        for idx in self.index_chunks():
            c = len(idx)
            flat = (idx + (np.arange(c) * self.n)[:, None]).ravel()
            yield np.bincount(flat, minlength=c * self.n).reshape(c, self.n).astype(np.float64)

    def sums(self, rows: np.ndarray) -> np.ndarray:
        """Replicate column sums `weights @ rows`: (n_boot,) for (n,) rows, (n_boot, k) for (n, k)."""
        rows = self._rows(rows)
        flat = rows.reshape(self.n, -1)
        out = np.empty((self.n_boot, flat.shape[1]), dtype=np.float64)
        start = 0
        for w in self.weight_chunks():
            out[start:start + len(w)] = w @ flat
            start += len(w)
        return out.reshape((self.n_boot,) + rows.shape[1:])

    # -- statistics ----------------------------------------------------------------------------
    def replicates(self, values: np.ndarray, statistic: Statistic | None = None, *,
                   sum_statistic: SumStatistic | None = None) -> np.ndarray:
        """The statistic on every replicate, shape (n_boot,) or (n_boot, ...).

        Default: the column mean. `sum_statistic`: a vectorized function of the replicate
        column sums. `statistic`: any function of the resampled rows (one call per replicate).
        """
        if statistic is not None and sum_statistic is not None:
            raise ValueError("give statistic or sum_statistic, not both")
        if statistic is not None:
            rows = self._rows(values)
            return np.stack([np.asarray(statistic(rows[i]), dtype=np.float64)
                             for idx in self.index_chunks() for i in idx])
        sums = self.sums(values)
        return np.asarray(sum_statistic(sums), dtype=np.float64) if sum_statistic else sums / self.n

    def replicates_many(self, specs: Mapping[str, Spec]) -> dict[str, np.ndarray]:
        """Replicates of many metrics from one pass over the weights (one matrix product).

        A spec is per-image values (replicates of their mean) or (rows, sum_statistic).
        """
        blocks, slices, fns, start = [], {}, {}, 0
        for name, spec in specs.items():
            rows, fn = spec if isinstance(spec, tuple) else (spec, None)
            rows = self._rows(rows)
            flat = rows.reshape(self.n, -1)
            blocks.append(flat)
            slices[name] = (slice(start, start + flat.shape[1]), rows.shape[1:])
            fns[name] = fn
            start += flat.shape[1]
        if not blocks:
            return {}
        sums = self.sums(np.concatenate(blocks, axis=1))
        out = {}
        for name, (cols, shape) in slices.items():
            s = sums[:, cols].reshape((self.n_boot,) + shape)
            out[name] = np.asarray(fns[name](s), dtype=np.float64) if fns[name] else s / self.n
        return out

    def ci(self, values: np.ndarray, statistic: Statistic | None = None, *,
           sum_statistic: SumStatistic | None = None, alpha: float = 0.05) -> tuple:
        """Percentile interval (low, high) of a statistic (floats, or arrays for vector ones)."""
        return percentile_interval(self.replicates(values, statistic, sum_statistic=sum_statistic), alpha)

    def cis(self, specs: Mapping[str, Spec], alpha: float = 0.05) -> dict[str, tuple]:
        """Percentile intervals of many metrics, all from the same replicates."""
        return {k: percentile_interval(v, alpha) for k, v in self.replicates_many(specs).items()}

    def _rows(self, values: np.ndarray) -> np.ndarray:
        rows = np.asarray(values, dtype=np.float64)
        if rows.ndim == 0 or rows.shape[0] != self.n:
            raise ValueError(f"expected {self.n} rows (one per image), got shape {rows.shape}")
        return rows


def percentile_interval(replicates: np.ndarray, alpha: float = 0.05) -> tuple:
    """(alpha/2, 1 - alpha/2) quantiles over axis 0, NaN replicates left out."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    reps = np.asarray(replicates, dtype=np.float64)
    if np.isnan(reps).all(axis=0).any():
        low = np.full(reps.shape[1:], np.nan)
        high = low.copy()
        ok = ~np.isnan(reps).all(axis=0)
        if ok.any():
            q = np.nanquantile(reps[:, ok], [alpha / 2, 1 - alpha / 2], axis=0)
            low[ok], high[ok] = q[0], q[1]
    else:
        low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    if np.ndim(low) == 0:
        return float(low), float(high)
    return low, high


def bootstrap_ci(values: np.ndarray, statistic: Statistic | None = None, *,
                 sum_statistic: SumStatistic | None = None, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0, chunk_size: int = 64) -> tuple:
    """Percentile bootstrap interval (low, high) of a statistic of per-image values.

    Default statistic: the mean (of each column for (N, k) values). See `Bootstrap.replicates`.
    """
    boot = Bootstrap(len(values), n_boot, seed, chunk_size=chunk_size)
    return boot.ci(values, statistic, sum_statistic=sum_statistic, alpha=alpha)


def _point(values: np.ndarray, statistic: Statistic | None, sum_statistic: SumStatistic | None) -> np.ndarray:
    rows = np.asarray(values, dtype=np.float64)
    if statistic is not None:
        return np.asarray(statistic(rows), dtype=np.float64)
    if sum_statistic is not None:
        return np.asarray(sum_statistic(rows.sum(axis=0)[None]), dtype=np.float64)[0]
    return rows.mean(axis=0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, statistic: Statistic | None = None, *,
                     sum_statistic: SumStatistic | None = None, n_boot: int = 1000,
                     alpha: float = 0.05, seed: int = 0, chunk_size: int = 64) -> dict[str, float]:
    """Paired bootstrap test of stat(a) - stat(b) for two systems scored on the same images.

    Images are resampled jointly (row i of `a` and of `b` is the same image). Returns the
    observed difference, its percentile interval, and a two-sided p-value: twice the smaller
    share of replicate differences at or beyond zero on either side, clipped to [1/n_boot, 1]
    (the smallest alpha at which the percentile interval would exclude zero).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape: {a.shape} vs {b.shape}")
    if statistic is not None and sum_statistic is not None:
        raise ValueError("give statistic or sum_statistic, not both")
    boot = Bootstrap(len(a), n_boot, seed, chunk_size=chunk_size)
    if statistic is not None:
        reps = np.array([float(statistic(a[i])) - float(statistic(b[i]))
                         for idx in boot.index_chunks() for i in idx])
    else:
        both = boot.replicates_many({"a": (a, sum_statistic) if sum_statistic else a,
                                     "b": (b, sum_statistic) if sum_statistic else b})
        reps = np.asarray(both["a"] - both["b"], dtype=np.float64)
        if reps.ndim != 1:
            raise ValueError("paired_bootstrap needs a scalar statistic")
    diff = float(_point(a, statistic, sum_statistic) - _point(b, statistic, sum_statistic))
    low, high = percentile_interval(reps, alpha)
    ok = reps[~np.isnan(reps)]
    if len(ok):
        p = 2 * min(np.mean(ok <= 0), np.mean(ok >= 0))
        p_value = float(min(1.0, max(1.0 / n_boot, p)))
    else:
        p_value = float("nan")
    return {"diff": diff, "low": low, "high": high, "p_value": p_value}
