"""Caption metrics with the numbers of pycocoevalcap 1.2, fast enough to re-score often.

Scores are those of pycocoevalcap 1.2 after its PTB tokenization:

* ``bleu_1..bleu_4`` -- ``Bleu(4)``: corpus-level, 'closest' reference length, its
  ``tiny=1e-15`` / ``small=1e-9`` guards;
* ``rouge_l`` -- ``Rouge()``: per-image LCS F-measure with beta 1.2, averaged over images;
* ``cider`` -- ``Cider()`` (CIDEr-D): n=4, sigma=6, clipping, Gaussian length penalty, x10, document
  frequencies from the references of the images being scored (``idf="scored"``, what
  pycocoevalcap does when given exactly those images) or of every image of the reference
  (``idf="all"``: the per-image scores of a full pycocoevalcap run);
* ``meteor`` -- pycocoevalcap's METEOR 1.5 jar (``-stdio -l en -norm``; see :mod:`benchmark.metrics.meteor`), optional.

BLEU, ROUGE-L and CIDEr-D are computed here with numpy; the tests check them against
pycocoevalcap to 1e-9 (corpus and per-image values). The reference side -- tokens, n-gram counts,
lengths -- is computed once into a picklable :class:`TextReference`; scoring a hypothesis set then
tokenizes only the hypotheses (one Java call) and does per-image work.

For uncertainty estimates every score comes per image: CIDEr-D and ROUGE-L (the corpus values
are their means), METEOR per segment, and for BLEU the per-image sufficient statistics
(:data:`BLEU_STAT_COLUMNS`) from which :func:`bleu_from_stats` recomputes corpus BLEU for any
resample of images.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal

import numpy as np

from benchmark.metrics.meteor import MeteorProcess, meteor_score
from benchmark.metrics.ptb import PTBRun, ptb_tokenize_lines, tokenize

__all__ = [
    "BLEU_STAT_COLUMNS", "TEXT_METRICS_VERSION", "TextReference", "TextScores", "bleu_from_stats",
    "bleu_from_totals", "meteor_score", "score_captions", "tokenize",
]

TEXT_METRICS_VERSION = "pycocoevalcap-1.2/text-1"
"""Changes whenever a number or the layout of a cached :class:`TextReference` could change."""

NGRAM_N = 4
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
BLEU_TINY = 1e-15
BLEU_SMALL = 1e-9
BLEU_STAT_COLUMNS = ("correct_1", "correct_2", "correct_3", "correct_4",
                     "guess_1", "guess_2", "guess_3", "guess_4", "hyp_len", "ref_len")
_ROUGE_PAD_REF, _ROUGE_PAD_HYP, _OOV = -3, -2, -1
_OTHER_WHITESPACE = re.compile(r"[^\S \n]")


# --------------------------------------------------------------------------------------- BLEU
def bleu_from_totals(totals: np.ndarray) -> np.ndarray:
    """BLEU-1..4 from statistics rows ``(..., 10)`` (:data:`BLEU_STAT_COLUMNS`) -> ``(..., 4)``.

    On summed rows this is pycocoevalcap's corpus BLEU; on one image's row its per-image BLEU.
    """
    t = np.asarray(totals, dtype=np.float64)
    if t.shape[-1] != 10:
        raise ValueError(f"BLEU statistics need 10 columns, got shape {t.shape}")
    precision = np.cumprod((t[..., 0:4] + BLEU_TINY) / (t[..., 4:8] + BLEU_SMALL), axis=-1)
    bleu = precision ** (1.0 / np.arange(1, NGRAM_N + 1))
    ratio = (t[..., 8] + BLEU_TINY) / (t[..., 9] + BLEU_SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / np.where(ratio < 1, ratio, 1.0)), 1.0)
    return bleu * brevity[..., None]


def bleu_from_stats(stats: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1..4 (pycocoevalcap ``Bleu(4)``) from per-image statistics ``(n_images, 10)``.

    Bootstrap replicate: ``bleu_from_stats(stats[rng.integers(0, n, n)])``.
    """
    stats = np.asarray(stats)
    if stats.ndim != 2:
        raise ValueError(f"expected per-image statistics of shape (n, 10), got {stats.shape}")
    return bleu_from_totals(stats.sum(axis=0))


# ------------------------------------------------------------------------------------ n-grams
def _encode(token_lists: list[list[str]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (new tokens get fresh ids; ``vocab`` is extended in place) and lengths."""
    ids = list(map(vocab.get, chain.from_iterable(token_lists)))   # C loops: ~10x a comprehension
    if None in ids:
        tokens = chain.from_iterable(token_lists)
        ids = [vocab.setdefault(t, len(vocab)) if i is None else i for i, t in zip(ids, tokens)]
    lengths = np.fromiter(map(len, token_lists), np.int64, len(token_lists))
    return np.asarray(ids, dtype=np.int64), lengths


def _stable_argsort(codes: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(codes, kind="stable")`` of integers in [0, bound), one 16-bit digit at a time
    (least significant first): numpy sorts uint16 by radix, ~12x faster than int64."""
    order = None
    shift = 0
    while order is None or (bound - 1) >> shift > 0:
        digit = ((codes >> shift) & 0xFFFF).astype(np.uint16)
        order = np.argsort(digit, kind="stable") if order is None else order[np.argsort(digit[order], kind="stable")]
        shift += 16
    return order


@dataclass
class _Order:
    """The k-grams of one order: where each starts, its dense id, the sorted unique codes, and the
    occurrences sorted by (id, position) with the id of each (`rank`) and where a new id begins."""

    start: np.ndarray
    inv: np.ndarray
    uniq: np.ndarray
    order: np.ndarray
    rank: np.ndarray
    new: np.ndarray


def _ngrams(ids: np.ndarray, lengths: np.ndarray, n_words: int) -> list[_Order]:
    """The k-grams of each order k=1..n (see `_Order`).

    The code of a k-gram is ``id of its (k-1)-gram prefix * n_words + last word`` (the prefix of a
    unigram has id 0), so ids of order k are built from those of order k-1.
    """
    ends = np.repeat(np.cumsum(lengths), lengths)
    positions = np.arange(len(ids))
    prefix = np.zeros(len(ids), dtype=np.int64)
    n_prefix = 1
    orders = []
    for k in range(1, NGRAM_N + 1):
        start = positions[positions + k <= ends]
        codes = prefix[start] * n_words + ids[start + k - 1]
        order = _stable_argsort(codes, max(n_prefix * n_words, 1))
        ranked = codes[order]
        new = np.ones(len(order), dtype=bool)
        np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
        rank = np.cumsum(new) - 1
        inv = np.empty(len(order), dtype=np.int64)
        inv[order] = rank
        uniq = ranked[new]
        orders.append(_Order(start, inv, uniq, order, rank, new))
        prefix = np.zeros(len(ids), dtype=np.int64)
        prefix[start] = inv
        n_prefix = max(len(uniq), 1)
    return orders


def _single_spaced(lines: list[str]) -> bool:
    """Whether every line splits on " " into the tokens it splits into on any whitespace: none is
    empty or holds a leading, trailing or doubled space, or whitespace other than the space.
    (Lines hold no line break. Substring tests over one joined string: ~20x one regex.)"""
    if "" in lines:
        return False
    joined = "\n".join(lines)
    return not (joined.startswith(" ") or joined.endswith(" ") or "  " in joined or "\n " in joined
                or " \n" in joined or _OTHER_WHITESPACE.search(joined))


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair."""
    lens = ends - starts
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return offsets + np.arange(lens.sum())


def _small_int(a: np.ndarray) -> np.ndarray:
    return a.astype(np.min_scalar_type(int(a.max()) if a.size else 0))


def _index_int(a: np.ndarray, bound: int) -> np.ndarray:
    return a.astype(np.int32 if bound < 2**31 else np.int64)


@dataclass(eq=False)
class TextReference:
    """Tokenized references and their n-gram statistics, computed once (picklable).

    Independent of any dataset identity: cache it under the dataset fingerprint.
    """

    ids: list[str]
    refs: list[list[str]]              # tokenized references per image
    ref_start: np.ndarray              # (n_images + 1,) offsets into the flattened references
    ref_len: np.ndarray                # (n_refs,) number of whitespace tokens
    words: dict[str, int]              # vocabulary of whitespace tokens
    codes: list[np.ndarray]            # per order: sorted unique n-gram codes (see _ngrams)
    offsets: np.ndarray                # (5,) global n-gram id = offsets[k-1] + index in codes[k-1]
    ent_start: np.ndarray              # (n_refs + 1,) offsets of each reference's n-gram entries
    ent_gid: np.ndarray                # (n_entries,) global n-gram id
    ent_tf: np.ndarray                 # (n_entries,) count in that reference
    ent_img_entry: np.ndarray          # (n_entries,) index of the (image, n-gram) entry
    img_key: np.ndarray                # (n_img_entries,) sorted image index * n_ngrams + n-gram id
    img_max: np.ndarray                # (n_img_entries,) max count over the image's references
    rouge_vocab: dict[str, int]        # vocabulary of ROUGE tokens (split on " ")
    rouge_ids: np.ndarray              # flattened ROUGE token ids of all references
    rouge_len: np.ndarray              # (n_refs,)
    df_all: np.ndarray | None = None   # (n_ngrams,) document frequency over every image (kept: IDF of a full run)
    version: str = TEXT_METRICS_VERSION
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.ids)}

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_index", None)
        return state

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._index = {k: i for i, k in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    @property
    def n_ngrams(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def build(cls, refs: Mapping[str, str | Sequence[str]], *, pretokenized: bool = False) -> TextReference:
        """From ``{id: reference or [references]}``; one Java call unless ``pretokenized``."""
        if not refs:
            raise ValueError("no references given")
        raw = {str(k): [v] if isinstance(v, str) else list(v) for k, v in refs.items()}
        empty = [k for k, v in raw.items() if not v]
        if empty:
            raise ValueError(f"{len(empty)} image(s) without any reference, e.g. {empty[:5]}")
        if pretokenized:
            tokenized = {k: [_check_pretokenized(c) for c in v] for k, v in raw.items()}
        else:
            tokenized = tokenize(raw)
        ids = list(tokenized)
        ref_lists = [tokenized[k] for k in ids]
        ref_counts = np.array([len(r) for r in ref_lists], dtype=np.int64)
        ref_start = np.concatenate([[0], np.cumsum(ref_counts)])
        flat = [r for rs in ref_lists for r in rs]
        ref_img = np.repeat(np.arange(len(ids)), ref_counts)

        words: dict[str, int] = {}
        tok, ref_len = _encode([r.split() for r in flat], words)
        orders = _ngrams(tok, ref_len, max(len(words), 1))
        offsets = np.concatenate([[0], np.cumsum([len(g.uniq) for g in orders])]).astype(np.int64)
        n_ngrams = int(offsets[-1])
        sent = np.repeat(np.arange(len(flat)), ref_len)
        keys = np.concatenate([sent[g.start] * n_ngrams + offsets[k] + g.inv for k, g in enumerate(orders)])
        ent_key, ent_tf = np.unique(keys, return_counts=True)
        ent_ref, ent_gid = np.divmod(ent_key, n_ngrams) if n_ngrams else (ent_key, ent_key)
        ent_start = np.searchsorted(ent_ref, np.arange(len(flat) + 1))
        img_key, ent_img_entry = np.unique(ref_img[ent_ref] * n_ngrams + ent_gid, return_inverse=True)
        img_max = np.zeros(len(img_key), dtype=np.int64)
        np.maximum.at(img_max, ent_img_entry.reshape(-1), ent_tf)

        rouge_vocab: dict[str, int] = {}
        rouge_ids, rouge_len = _encode([r.split(" ") for r in flat], rouge_vocab)
        out = cls(
            ids=ids, refs=ref_lists, ref_start=ref_start, ref_len=ref_len, words=words,
            codes=[g.uniq for g in orders], offsets=offsets, ent_start=ent_start,
            ent_gid=_index_int(ent_gid, n_ngrams), ent_tf=_small_int(ent_tf),
            ent_img_entry=_index_int(ent_img_entry.reshape(-1), len(img_key)), img_key=img_key,
            img_max=_small_int(img_max), rouge_vocab=rouge_vocab, rouge_ids=rouge_ids.astype(np.int32),
            rouge_len=rouge_len,
        )
        out.df_all = out.document_frequency()
        out.df_all.setflags(write=False)
        return out

    def document_frequency(self, images: np.ndarray | None = None) -> np.ndarray:
        """Number of images (all, or those given by index) whose references hold each n-gram."""
        mask = None
        if images is not None:
            mask = np.zeros(len(self.ids), dtype=bool)
            mask[images] = True
        if self.df_all is not None and (mask is None or mask.all()):
            return self.df_all
        img = self.img_key // max(self.n_ngrams, 1)
        gid = self.img_key - img * self.n_ngrams
        if mask is not None:
            gid = gid[mask[img]]
        return np.bincount(gid, minlength=self.n_ngrams).astype(np.float64)


def _check_pretokenized(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"captions must be str, got {type(text).__name__}")
    if "\n" in text or "\r" in text:
        raise ValueError("a pre-tokenized caption must be a single line")
    return text


# ------------------------------------------------------------------------------------- scores
@dataclass
class TextScores:
    """Corpus metrics plus per-image values aligned with ``ids`` (for resampling images)."""

    ids: list[str]
    metrics: dict[str, float]          # bleu_1..4, rouge_l, cider[, meteor]; pycocoevalcap's scale
    per_image: dict[str, np.ndarray]   # cider, rouge_l[, meteor]: corpus value = mean (METEOR: see below)
    bleu_stats: np.ndarray             # (n, 10) int64, columns BLEU_STAT_COLUMNS
    tokenized: list[str]               # PTB-tokenized hypotheses (re-usable with pretokenized=True)

    def bleu_per_image(self) -> np.ndarray:
        """pycocoevalcap's per-image BLEU-1..4 ``(n, 4)`` (not averaged into corpus BLEU)."""
        return bleu_from_totals(self.bleu_stats)


def score_captions(
    reference: TextReference,
    hypotheses: Mapping[str, str | Sequence[str]],
    ids: Sequence[str] | None = None,
    *,
    meteor: bool = True,
    idf: Literal["scored", "all"] = "scored",
    pretokenized: bool = False,
) -> TextScores:
    """Score one hypothesis per image against ``reference``.

    ``ids``: the images to score (default: every image of ``reference``); each needs a hypothesis.
    ``idf="scored"``: CIDEr-D document frequencies from the references of the scored images only,
    as pycocoevalcap computes them when given that subset; ``"all"``: from every reference image.
    METEOR's corpus value is the jar's aggregate, not the mean of its per-segment scores.
    """
    if idf not in ("scored", "all"):
        raise ValueError(f"idf must be 'scored' or 'all', got {idf!r}")
    ids = list(reference.ids if ids is None else ids)
    if not ids:
        raise ValueError("no images to score")
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate ids to score")
    unknown = [k for k in ids if k not in reference]
    if unknown:
        raise KeyError(f"{len(unknown)} id(s) not in the reference, e.g. {unknown[:5]}")
    missing = [k for k in ids if k not in hypotheses]
    if missing:
        raise ValueError(f"{len(missing)} id(s) without a hypothesis, e.g. {missing[:5]}")
    raw = [_single(hypotheses[k], k) for k in ids]
    hyps = [_check_pretokenized(h) for h in raw] if pretokenized else ptb_tokenize_lines(raw)

    img = np.array([reference._index[k] for k in ids], dtype=np.int64)
    stats, cider, rouge = _score_arrays(reference, img, hyps, idf)
    bleu = bleu_from_stats(stats)
    metrics = {f"bleu_{k + 1}": float(bleu[k]) for k in range(NGRAM_N)}
    metrics["rouge_l"] = float(np.mean(rouge))
    metrics["cider"] = float(np.mean(cider))
    per_image = {"cider": cider, "rouge_l": rouge}
    if meteor:
        total, segments = meteor_score([reference.refs[i] for i in img], hyps)
        metrics["meteor"] = total
        per_image["meteor"] = segments
    return TextScores(ids=ids, metrics=metrics, per_image=per_image, bleu_stats=stats, tokenized=hyps)


def _single(value: str | Sequence[str], key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise ValueError(f"{key}: exactly one hypothesis (a str) per image is scored, got {value!r:.80}")


def _score_arrays(ref: TextReference, img: np.ndarray, hyps: list[str], idf: str):
    """BLEU statistics (n, 10), per-image CIDEr-D (n,) and ROUGE-L (n,)."""
    n, n_ngrams = len(img), ref.n_ngrams
    # scored references, grouped by scored image
    n_refs = ref.ref_start[img + 1] - ref.ref_start[img]
    refs = _ranges(ref.ref_start[img], ref.ref_start[img + 1])
    owner = np.repeat(np.arange(n), n_refs)
    group = np.concatenate([[0], np.cumsum(n_refs)[:-1]])

    # hypothesis tokens -> n-grams, mapped to reference n-gram ids (-1: in no reference)
    vocab = dict(ref.words)
    tok, hyp_len = _encode(list(map(str.split, hyps)), vocab)
    n_words, n_ref_words = max(len(vocab), 1), len(ref.words)
    hyp_sent = np.repeat(np.arange(n), hyp_len)
    ref_prefix = np.zeros(1, dtype=np.int64)     # the (empty) prefix of unigrams is id 0 on both sides
    entries = []                                 # per order: (hyp index, global id or -1, count)
    for k, grams in enumerate(_ngrams(tok, hyp_len, n_words)):
        uniq = grams.uniq
        prefix, word = np.divmod(uniq, n_words)
        rp = ref_prefix[prefix]
        code = rp * max(n_ref_words, 1) + word
        known = np.flatnonzero((rp >= 0) & (word < n_ref_words))
        pos = np.searchsorted(ref.codes[k], code[known])
        pos_ok = pos < len(ref.codes[k])
        hit = np.zeros(len(known), dtype=bool)
        hit[pos_ok] = ref.codes[k][pos[pos_ok]] == code[known][pos_ok]
        ref_prefix = np.full(len(uniq), _OOV, dtype=np.int64)
        ref_prefix[known[hit]] = pos[hit]
        # (sentence, k-gram) pairs and their counts: occurrences sorted by (k-gram, position) are
        # sorted by (k-gram, sentence), so a pair begins where either changes
        sent_sorted = hyp_sent[grams.start][grams.order]
        pair = grams.new.copy()
        pair[1:] |= sent_sorted[1:] != sent_sorted[:-1]
        first = np.flatnonzero(pair)
        tf = np.diff(np.append(first, len(pair)))
        sent, local = sent_sorted[first], grams.rank[first]
        by_sent = _stable_argsort(sent, max(n, 1))   # (sentence, k-gram) order: the lookups below
        sent, local, tf = sent[by_sent], local[by_sent], tf[by_sent]   # then walk the tables in order
        gid = ref_prefix[local]
        entries.append((sent, np.where(gid >= 0, gid + ref.offsets[k], _OOV), tf))

    # IDF
    if idf == "scored":
        df, log_n = ref.document_frequency(img), math.log(float(n))
    else:
        df, log_n = ref.document_frequency(), math.log(float(len(ref.ids)))
    weight = log_n - np.log(np.maximum(1.0, df))

    stats = np.zeros((n, 10), dtype=np.int64)
    hyp_norm = np.zeros((n, NGRAM_N))
    hyp_tf_at_img_entry = np.zeros(len(ref.img_key))
    for k, (sent, gid, tf) in enumerate(entries):
        known = np.flatnonzero(gid >= 0)
        w = np.full(len(gid), log_n)
        w[known] = weight[gid[known]]
        hyp_norm[:, k] = np.sqrt(np.bincount(sent, (tf * w) ** 2, minlength=n))
        query = img[sent[known]] * n_ngrams + gid[known]
        u = np.searchsorted(ref.img_key, query)
        hit = u < len(ref.img_key)
        hit[hit] = ref.img_key[u[hit]] == query[hit]   # known n-gram, but in this image's references?
        found, u = known[hit], u[hit]
        hyp_tf_at_img_entry[u] = tf[found]
        stats[:, k] = np.bincount(sent[found], np.minimum(tf[found], ref.img_max[u]), minlength=n)
        stats[:, 4 + k] = np.maximum(0, hyp_len - k)

    # BLEU lengths: hypothesis length and the closest reference length (ties: the shorter)
    stats[:, 8] = hyp_len
    rlen = ref.ref_len[refs]
    scale = int(rlen.max()) + 1
    closest = np.minimum.reduceat(np.abs(rlen - hyp_len[owner]) * scale + rlen, group)
    stats[:, 9] = closest % scale

    # CIDEr-D: clipped tf-idf cosine per n, Gaussian penalty on the bigram-count difference
    ents = _ranges(ref.ent_start[refs], ref.ent_start[refs + 1])
    ent_owner = np.repeat(np.arange(len(refs)), ref.ent_start[refs + 1] - ref.ent_start[refs])
    gid = ref.ent_gid[ents]
    order = np.zeros(len(gid), dtype=np.int64)   # the n-gram order of each id (offsets[k] <= id)
    for bound in ref.offsets[1:-1]:
        order += gid >= bound
    w = weight[gid]
    vec_ref = ref.ent_tf[ents] * w
    vec_hyp = hyp_tf_at_img_entry[ref.ent_img_entry[ents]] * w
    slot = ent_owner * NGRAM_N + order
    size = len(refs) * NGRAM_N
    dot = np.bincount(slot, np.minimum(vec_hyp, vec_ref) * vec_ref, minlength=size)
    dot = dot.astype(np.float64).reshape(-1, NGRAM_N)
    ref_norm = np.sqrt(np.bincount(slot, vec_ref ** 2, minlength=size)).reshape(-1, NGRAM_N)
    denom = hyp_norm[owner] * ref_norm
    val = np.divide(dot, denom, out=dot.copy(), where=denom != 0)
    delta = (np.maximum(hyp_len - 1, 0)[owner] - np.maximum(rlen - 1, 0)).astype(np.float64)
    val *= (np.e ** (-(delta ** 2) / (2 * CIDER_SIGMA ** 2)))[:, None]
    per_img = np.zeros((n, NGRAM_N))
    np.add.at(per_img, owner, val)
    cider = per_img.mean(axis=1) / n_refs * 10.0

    # ROUGE-L (tokens split on " ", as pycocoevalcap does)
    rget = ref.rouge_vocab.get
    if _single_spaced(hyps):
        # the usual case (PTB output): the same tokens as above, mapped to ROUGE's vocabulary
        h_ids = np.array([rget(t, _OOV) for t in vocab], dtype=np.int32)[tok]
        h_len = hyp_len
    else:
        hyp_rouge = [h.split(" ") for h in hyps]
        h_ids = np.array([rget(t, _OOV) for toks in hyp_rouge for t in toks], dtype=np.int32)
        h_len = np.array([len(t) for t in hyp_rouge], dtype=np.int64)
    h_start = np.concatenate([[0], np.cumsum(h_len)[:-1]])
    r_start = np.concatenate([[0], np.cumsum(ref.rouge_len)[:-1]])
    lcs = _lcs_lengths(ref.rouge_ids, r_start[refs], ref.rouge_len[refs],
                       h_ids, h_start[owner], h_len[owner])
    prec = np.maximum.reduceat(lcs / h_len[owner], group)
    rec = np.maximum.reduceat(lcs / ref.rouge_len[refs], group)
    both = (prec != 0) & (rec != 0)
    rouge = np.zeros(n)
    p, r = prec[both], rec[both]
    rouge[both] = ((1 + ROUGE_BETA ** 2) * p * r) / (r + ROUGE_BETA ** 2 * p)
    return stats, cider, rouge


def _pad(flat: np.ndarray, start: np.ndarray, length: np.ndarray, width: int, fill: int) -> np.ndarray:
    col = np.arange(width)
    idx = np.minimum(start[:, None] + col, max(len(flat) - 1, 0))
    vals = flat[idx] if len(flat) else np.zeros(idx.shape, dtype=np.int32)
    return np.where(col < length[:, None], vals, fill)


def _lcs_lengths(a_flat, a_start, a_len, b_flat, b_start, b_len, chunk: int = 4096) -> np.ndarray:
    """Longest common subsequence length of many token-id sequence pairs.

    Row update of the classic table, vectorized over pairs: ``L_i = max(L_{i-1}, cummax_j(
    L_{i-1}[j-1] + [a_i == b_j]))`` (rows of the table are non-decreasing).
    """
    out = np.zeros(len(a_len), dtype=np.int64)
    order = np.argsort(a_len * (int(b_len.max()) + 1) + b_len, kind="stable")
    for c in range(0, len(order), chunk):
        sel = order[c:c + chunk]
        la, lb = a_len[sel], b_len[sel]
        wa, wb = int(la.max()), int(lb.max())
        if wa == 0 or wb == 0:
            continue
        dtype = np.int16 if max(wa, wb) < 32000 else np.int32
        a = _pad(a_flat, a_start[sel], la, wa, _ROUGE_PAD_REF)
        b = _pad(b_flat, b_start[sel], lb, wb, _ROUGE_PAD_HYP)
        table = np.zeros((len(sel), wb + 1), dtype=dtype)
        for i in range(wa):
            cand = table[:, :-1] + (b == a[:, i:i + 1])
            np.maximum.accumulate(cand, axis=1, out=cand)
            np.maximum(table[:, 1:], cand, out=table[:, 1:])
        out[sel] = table[np.arange(len(sel)), lb]
    return out


# ------------------------------------------------------------------------------ registry entries
from benchmark.metrics.registry import Inputs, Metric, Scored, Scorer, Statistic, mean_statistic, register  # noqa: E402


def _ptb_run(inputs: Inputs) -> PTBRun:
    """The Java tokenizer over the captions, started once for all the text scorers."""
    return inputs.shared("ptb", lambda: PTBRun(inputs.captions))


def _tokens(inputs: Inputs) -> tuple[TextReference, np.ndarray, list[str]]:
    """(reference, image rows, PTB-tokenized captions), shared by every text scorer: one Java call."""
    def make():
        reference = inputs.truth.text_reference()
        img = np.array([reference._index[k] for k in inputs.ids], dtype=np.int64)
        return reference, img, _ptb_run(inputs).result()
    return inputs.shared("tokens", make)


def _text_pass(inputs: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BLEU stats, CIDEr-D, ROUGE-L), shared by the BLEU, ROUGE-L and CIDEr scorers: one n-gram pass."""
    def make():
        reference, img, hyps = _tokens(inputs)
        return _score_arrays(reference, img, hyps, "all" if inputs.strict else "scored")
    return inputs.shared("text_pass", make)


def _bleu_fn(order: int):
    return lambda sums: bleu_from_totals(sums)[..., order - 1]


class _TextScorer(Scorer):
    """A scorer of PTB-tokenized explanations: the tokenizer starts as soon as they are read."""

    task = "interpretation"

    def start(self, inputs: Inputs) -> None:
        _ptb_run(inputs)


class BleuScorer(_TextScorer):
    name = "bleu"
    official = True
    help = "corpus BLEU-1..4 (pycocoevalcap Bleu(4), closest reference length)"
    metrics = tuple(Metric(f"bleu_{k}", f"BLEU-{k}", f"corpus BLEU-{k} of the explanations (pycocoevalcap)",
                           "text", "corpus", headline=True, brief=(k == NGRAM_N)) for k in range(1, NGRAM_N + 1))

    def score(self, inputs: Inputs) -> Scored:
        stats = _text_pass(inputs)[0]
        bleu = bleu_from_stats(stats)
        out = Scored(values={f"bleu_{k}": float(bleu[k - 1]) for k in range(1, NGRAM_N + 1)},
                     samples={"bleu_stats": stats})
        rows = stats.astype(np.float64)
        out.stats = {f"bleu_{k}": Statistic(rows, _bleu_fn(k)) for k in range(1, NGRAM_N + 1)}
        return out

    def statistic_from_samples(self, samples, key: str) -> Statistic | None:
        stats = samples.get("bleu_stats")
        if stats is None:
            return None
        return Statistic(np.asarray(stats, dtype=np.float64), _bleu_fn(int(key.rsplit("_", 1)[1])))


class RougeScorer(_TextScorer):
    name = "rouge"
    official = True
    help = "ROUGE-L (pycocoevalcap Rouge: LCS F-measure, beta 1.2)"
    metrics = (Metric("rouge_l", "ROUGE-L", "ROUGE-L of the explanations (COCO, LCS F-measure with beta 1.2), "
                      "mean over images", "text", "mean", headline=True, brief=True, per_image="rouge_l"),)

    def score(self, inputs: Inputs) -> Scored:
        rouge = _text_pass(inputs)[2]
        return Scored(values={"rouge_l": float(np.mean(rouge))}, samples={"rouge_l": rouge},
                      stats={"rouge_l": mean_statistic(rouge)})


class CiderScorer(_TextScorer):
    name = "cider"
    official = True
    help = "CIDEr-D (pycocoevalcap Cider)"
    metrics = (Metric("cider", "CIDEr", "CIDEr-D of the explanations, IDF from the scored references (strict: the "
                      "whole split's); intervals and breakdowns hold the IDF fixed", "text", "mean",
                      headline=True, brief=True, primary=True, per_image="cider"),)

    def score(self, inputs: Inputs) -> Scored:
        cider = _text_pass(inputs)[1]
        return Scored(values={"cider": float(np.mean(cider))}, samples={"cider": cider},
                      stats={"cider": mean_statistic(cider)})


class MeteorScorer(_TextScorer):
    name = "meteor"
    help = "METEOR 1.5 (pycocoevalcap's jar; Java, the slowest metric)"
    metrics = (Metric("meteor", "METEOR", "METEOR 1.5 of the explanations (the jar's aggregate; intervals and "
                      "breakdowns use the mean of its segment scores)", "text", "mean", headline=True, brief=True,
                      per_image="meteor"),)

    lead = True   # the longest: sent to the JVM as soon as the tokens are ready

    def warm_up(self, n_items: int) -> MeteorProcess:
        return MeteorProcess()

    def score(self, inputs: Inputs) -> Scored:
        reference, img, hyps = _tokens(inputs)
        total, segments = meteor_score([reference.refs[i] for i in img], hyps, cancel=inputs.cancel,
                                       process=inputs.warm.get(self.name))
        return Scored(values={"meteor": total}, samples={"meteor": segments},
                      stats={"meteor": mean_statistic(segments)})


for _scorer in (CiderScorer(), BleuScorer(), RougeScorer(), MeteorScorer()):
    register(_scorer)
