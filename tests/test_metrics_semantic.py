"""The semantic-similarity metric: one registry module, a local transformers encoder, cached truth.

The encoder is a tiny random-config BERT with a word-level vocabulary, saved to a temp folder
offline; the reference embeds each sentence alone (no batching, no padding) with plain torch.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.data.split import load_split
from benchmark.metrics import registry
from benchmark.scoring.score import ScoreOptions, score_submission
from tests.conftest import write_submission


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("encoder")
    words = sorted({w for line in open(__file__).read().split() for w in [line.strip(".,:;()\"'").lower()] if w.isalpha()})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reference_embedding(folder, text: str) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        enc = tokenizer(text, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**enc).last_hidden_state[0].numpy().astype(np.float64)
    vec = hidden.mean(axis=0)
    return vec / np.linalg.norm(vec)


def test_registered_once_and_off_without_a_model():
    assert registry.metric("semantic").family == "semantic"
    assert registry.owner("semantic") == "semantic"
    assert "semantic" not in {s.name for s in registry.select(None)}
    with pytest.raises(ValueError, match="--embed-model"):
        registry.select(["semantic"])


def test_cosine_equals_direct_computation_and_truth_is_cached(random_root, tmp_path, encoder, monkeypatch):
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs)
    options = ScoreOptions(skip=("meteor",), n_boot=50, embed_model=encoder, cache_dir=tmp_path / "cache")
    out = score_submission(sub, split, options)
    preds = {json.loads(line)["image_id"]: json.loads(line)["caption"]
             for line in (sub / "predictions.jsonl").read_text().splitlines()}
    expected = np.array([reference_embedding(encoder, preds[r["image_id"]]) @ reference_embedding(encoder, r["caption"])
                         for r in recs])
    assert out.per_sample["semantic"] == pytest.approx(expected, abs=1e-5)
    assert out.metrics["semantic"] == pytest.approx(expected.mean(), abs=1e-5)
    lo, hi = out.ci95["semantic"]
    assert lo <= out.metrics["semantic"] <= hi
    assert all("semantic" in group["metrics"] for group in out.breakdown["method"].values())
    assert list((tmp_path / "cache").glob("truth-*/embed-*.pkl")), "truth embeddings are kept with the truth"

    # a second scoring embeds only the predictions: the truth comes from the cache
    import benchmark.metrics.semantic as semantic

    calls = []
    real = semantic.embed
    monkeypatch.setattr(semantic, "embed", lambda texts, folder, **kw: calls.append(len(texts)) or real(texts, folder, **kw))
    again = score_submission(sub, split, options)
    assert calls == [len(recs)]
    assert again.per_sample["semantic"] == pytest.approx(out.per_sample["semantic"], abs=1e-6)


def test_cli_refuses_semantic_without_a_model(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs)
    run = subprocess.run([sys.executable, "-m", "benchmark", "score", str(sub), "--data", str(root),
                          "--metrics", "semantic"], capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "--embed-model" in run.stderr
