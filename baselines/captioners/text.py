"""Caption similarity for choosing representative explanations (the consensus idea behind CIDEr).

Captions are compared as TF-IDF vectors of their 1- to 4-grams — what CIDEr weighs — so the
caption "closest to all the others" is the one CIDEr rewards most on average.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

SENTENCE = re.compile(r"(?<=[.!?])\s+")


def vectorizer(corpus: list[str]) -> TfidfVectorizer:
    """A TF-IDF model of word 1-4-grams fitted on `corpus` (lower-cased, punctuation dropped)."""
    vec = TfidfVectorizer(ngram_range=(1, 4), lowercase=True, token_pattern=r"(?u)\b\w+\b", sublinear_tf=True)
    vec.fit(corpus)
    return vec


def consensus_index(texts: list[str], vec: TfidfVectorizer | None = None, weights: np.ndarray | None = None,
                    max_n: int = 4000, seed: int = 0) -> int:
    """Index of the text with the highest (weighted) mean similarity to the others: the medoid.

    Above `max_n` texts the similarities are taken against a fixed random sample of `max_n`.
    """
    if len(texts) == 1:
        return 0
    vec = vec or vectorizer(texts)
    X = vec.transform(texts)
    ref = np.arange(len(texts))
    if len(texts) > max_n:
        ref = np.sort(np.random.default_rng(seed).choice(len(texts), max_n, replace=False))
    sims = (X @ X[ref].T).toarray()
    w = np.ones(len(ref)) if weights is None else np.asarray(weights, dtype=float)[ref]
    sims[ref, np.arange(len(ref))] = 0.0  # not itself
    score = sims @ w
    return int(np.argmax(score))


def sentences(caption: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(caption.strip()) if s.strip()]
