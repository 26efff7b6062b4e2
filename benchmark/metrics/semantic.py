"""Semantic similarity of explanations: cosine of sentence embeddings, prediction vs truth.

n-gram metrics reward wording; explainable-forensics papers also report how close in *meaning*
an explanation is to the human one. Each explanation is embedded with a transformers encoder
loaded from a local folder (`--embed-model DIR`; the metric is off without one): token states of
the last layer, mean-pooled over the attention mask and L2-normalised (the sentence-transformers
recipe), so the per-image score is the cosine of the two vectors and the corpus score its mean.

The truth embeddings are computed once per (split, model) and kept with the truth cache; the
model is identified by a hash of its files, so another model (or changed weights) never reuses
them. An empty prediction embeds like any text (the tokenizer's special tokens alone).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmark.metrics.registry import Inputs, Metric, Scored, Scorer, mean_statistic, register

BATCH = 64
MAX_TOKENS = 256


def model_digest(folder: Path) -> str:
    """sha256 over the names and bytes of every file of the model folder (16 hex digits)."""
    h = hashlib.sha256(b"mmtt-embed-model-v1\0")
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


@lru_cache(maxsize=2)
def _load(folder: str):
    """(tokenizer, model) from a local folder, on CPU, in eval mode (kept warm between jobs)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return tokenizer, model


def embed(texts: list[str], folder: Path | str, *, batch: int = BATCH) -> np.ndarray:
    """(len(texts), d) float32 unit vectors: mean-pooled last hidden states."""
    import torch

    tokenizer, model = _load(str(Path(folder).resolve()))
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = tokenizer(list(texts[start:start + batch]), padding=True, truncation=True,
                            max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**enc).last_hidden_state                                # (b, t, d)
            keep = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
    width = int(getattr(model.config, "hidden_size", 0))
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def cosine(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) matrices of unit vectors."""
    return np.einsum("ij,ij->i", pred.astype(np.float64), truth.astype(np.float64))


class SemanticScorer(Scorer):
    name = "semantic"
    task = "interpretation"
    help = "cosine of sentence embeddings of the explanation and the truth (needs --embed-model DIR)"
    metrics = (Metric("semantic", "Semantic sim.", "cosine similarity of mean-pooled sentence embeddings of the "
                      "explanation and the truth (model from --embed-model), mean over images", "semantic",
                      "mean", per_image="semantic"),)

    def available(self, options) -> str | None:
        folder = getattr(options, "embed_model", None)
        if folder is None:
            return "it needs a local encoder folder (--embed-model DIR)"
        if not Path(folder).is_dir():
            return f"--embed-model {folder}: not a folder"
        return None

    def score(self, inputs: Inputs) -> Scored:
        folder = Path(inputs.options.embed_model)
        digest = model_digest(folder)
        records = inputs.truth.split.records
        truth_all = inputs.truth.cached(f"embed-{digest}.pkl",
                                        lambda: embed([r.caption for r in records], folder))
        truth = truth_all[[inputs.truth.index[i] for i in inputs.ids]]
        values = cosine(embed(list(inputs.captions), folder), truth)
        return Scored(values={"semantic": float(values.mean())}, samples={"semantic": values},
                      stats={"semantic": mean_statistic(values)},
                      notes={"semantic_model": f"{folder.name} (files sha256 {digest})"})


register(SemanticScorer())
