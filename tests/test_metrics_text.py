"""Caption metrics: equal to pycocoevalcap 1.2 (tokenization, BLEU, ROUGE-L, CIDEr-D, METEOR)."""

from __future__ import annotations

import collections
import gzip
import itertools
import math
import os
import pickle
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.meteor.meteor import Meteor  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: E402

from benchmark.metrics import meteor, ptb, text  # noqa: E402
from benchmark.metrics.ptb import pycocoevalcap_file  # noqa: E402
from benchmark.metrics.text import (  # noqa: E402
    BLEU_STAT_COLUMNS, TextReference, bleu_from_stats, bleu_from_totals, meteor_score,
    score_captions, tokenize,
)
from tests.conftest import assert_close  # noqa: E402

HF_MODULE = Path(text.__file__).resolve().parent / "hf_mmtt_text"
TOL = 1e-9

# --------------------------------------------------------------------------- random corpora
WORDS = ["the", "eye", "eyes", "nose", "lip", "lips", "skin", "cheek", "hair", "mouth", "looks",
         "blurry", "smooth", "left", "right", "and", "is", "a", "of", "with", "unnatural", "edge",
         "Teeth", "SHADOW", "too", "fake", "café", "naïve", "über", "日本語", "don't", "it's",
         "can't", "1 1/2", "3.5", "e-mail", "co-op", "U.S.", "Mr.", "(left)", "[x]", "{y}",
         "a&b", "50%", "$3", "x|||y", "😀", "naïve—skin"]
PUNCT = [",", ".", ";", ":", "!", "?", "-", "--", "—", "“", "”", '"', "'", "`", "(", ")",
         "...", "…", "/"]
SEPARATORS = [" "] * 12 + ["  ", "\t", "\xa0", "\n", " \n "]


def random_caption(rng: np.random.Generator, vocab: list[str]) -> str:
    n = int(rng.choice([0, 1, 1, 2, 3, 4, 6, 10, 15, 25, 40, 70]))
    parts = []
    for _ in range(n):
        w = vocab[int(rng.integers(len(vocab)))]
        if rng.random() < 0.15:
            w = w.capitalize()
        parts.append(w)
        if rng.random() < 0.12:
            parts.append(PUNCT[int(rng.integers(len(PUNCT)))])
    out = ""
    for p in parts:
        out += (SEPARATORS[int(rng.integers(len(SEPARATORS)))] if out else "") + p
    if rng.random() < 0.05:
        out = "  " + out + " "
    return out


def perturb(rng: np.random.Generator, caption: str, vocab: list[str]) -> str:
    words = caption.split()
    for _ in range(int(rng.integers(0, 4))):
        if words:
            words[int(rng.integers(len(words)))] = vocab[int(rng.integers(len(vocab)))]
    cut = int(rng.integers(0, len(words) + 1)) if rng.random() < 0.3 else len(words)
    return " ".join(words[:cut])


def random_corpus(seed: int, n: int, max_refs: int = 1) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    vocab = WORDS + [f"w{i}" for i in range(int(rng.integers(20, 200)))]
    refs, hyps = {}, {}
    for i in range(n):
        key = f"s{seed}_{i}"
        refs[key] = [random_caption(rng, vocab) for _ in range(int(rng.integers(1, max_refs + 1)))]
        kind = rng.random()
        if kind < 0.1:
            hyps[key] = refs[key][0]
        elif kind < 0.5:
            hyps[key] = perturb(rng, refs[key][int(rng.integers(len(refs[key])))], vocab)
        elif kind < 0.56:
            hyps[key] = ["", " ", "...", "the", "?!"][int(rng.integers(5))]
        else:
            hyps[key] = random_caption(rng, vocab)
    return refs, hyps


def coco_tokenize(captions: dict) -> dict[str, list[str]]:
    return PTBTokenizer().tokenize({k: [{"caption": c} for c in ([v] if isinstance(v, str) else v)]
                                    for k, v in captions.items()})


def coco_scores(gts: dict, res: dict) -> dict:
    bleu, bleu_img = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_img = Rouge().compute_score(gts, res)
    cider, cider_img = Cider().compute_score(gts, res)
    return {"bleu": np.array(bleu), "bleu_img": np.array(bleu_img).T, "rouge_l": rouge,
            "rouge_img": rouge_img, "cider": cider, "cider_img": cider_img}


def assert_matches_coco(ours: text.TextScores, coco: dict) -> None:
    np.testing.assert_allclose(bleu_from_stats(ours.bleu_stats), coco["bleu"], rtol=0, atol=TOL)
    for k in range(4):
        assert abs(ours.metrics[f"bleu_{k + 1}"] - coco["bleu"][k]) < TOL
    np.testing.assert_allclose(ours.bleu_per_image(), coco["bleu_img"], rtol=0, atol=TOL)
    assert abs(ours.metrics["rouge_l"] - coco["rouge_l"]) < TOL
    np.testing.assert_allclose(ours.per_image["rouge_l"], coco["rouge_img"], rtol=0, atol=TOL)
    assert abs(ours.metrics["cider"] - coco["cider"]) < TOL
    np.testing.assert_allclose(ours.per_image["cider"], coco["cider_img"], rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def corpus():
    """Two random corpora (one reference per image; 1-3 references), tokenized both ways.

    Four Java calls in all: pycocoevalcap's PTBTokenizer and ours, on references and hypotheses.
    """
    single_refs, single_hyps = random_corpus(1, 400)
    multi_refs, multi_hyps = random_corpus(2, 250, max_refs=3)
    refs, hyps = {**single_refs, **multi_refs}, {**single_hyps, **multi_hyps}
    coco_gts, coco_res = coco_tokenize(refs), coco_tokenize(hyps)
    ours_gts, ours_res = tokenize(refs), tokenize(hyps)
    return {"single": (list(single_refs), refs, hyps), "multi": (list(multi_refs), refs, hyps),
            "coco": (coco_gts, coco_res), "ours": (ours_gts, ours_res)}


def _split(corpus, name):
    ids = corpus[name][0]
    gts, res = corpus["coco"]
    return {k: gts[k] for k in ids}, {k: res[k] for k in ids}


# ------------------------------------------------------------------------------ tokenization
def test_tokenize_equals_ptbtokenizer(corpus):
    coco_gts, coco_res = corpus["coco"]
    ours_gts, ours_res = corpus["ours"]
    assert ours_gts == coco_gts
    assert ours_res == coco_res
    joined = [c for v in coco_gts.values() for c in v]
    assert "" in joined and any(not c.isascii() for c in joined)   # the corpus is not trivial
    assert any(c == "" for v in coco_res.values() for c in v)


def test_tokenize_line_breaks_empty_and_unicode():
    captions = {"a": "Left eye\rblurry.", "b": "nose\r\nlip", "c": "x\x0by\x0cz",
                "d": "p\u2028q\u2029r", "e": "", "f": "Café “naïve” — 日本語, isn't it?",
                "g": ["", "The END."], "h": "last\n"}
    out = tokenize(captions)
    assert out == {"a": ["left eye blurry"], "b": ["nose lip"], "c": ["x y z"], "d": ["p q r"],
                   "e": [""], "f": ["café naïve 日本語 is n't it"], "g": ["", "the end"], "h": ["last"]}
    assert ptb.ptb_tokenize_lines([]) == []


def test_tokenizer_never_writes_into_site_packages(monkeypatch, tmp_path):
    package_dir = ptb.pycocoevalcap_file("tokenizer", "stanford-corenlp-3.4.1.jar").parent
    used = []
    real = ptb.tempfile.TemporaryDirectory

    def recording(*args, **kwargs):
        tmp = real(*args, dir=tmp_path, **kwargs)
        used.append(Path(tmp.name))
        return tmp

    monkeypatch.setattr(ptb.tempfile, "TemporaryDirectory", recording)
    assert ptb.ptb_tokenize_lines(["The nose."]) == ["the nose"]
    assert len(used) == 1 and package_dir not in used[0].parents and not used[0].exists()


def test_tokenizer_started_early_and_dropped_leaves_nothing(tmp_path, monkeypatch):
    """The scorer starts the Java tokenizer as soon as the captions are read; a scoring that
    fails before collecting it leaves no process and no file behind."""
    import gc

    monkeypatch.setattr(ptb.tempfile, "tempdir", str(tmp_path))
    started = ptb.PTBRun(["The nose is blurry."] * 20000)
    pid = started._proc.pid
    assert list(tmp_path.iterdir())
    del started
    gc.collect()
    assert not list(tmp_path.iterdir())
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)   # killed and reaped
    again = ptb.PTBRun(["The Nose, blurry!", "x"])
    assert again.result() == ["the nose blurry", "x"] and again.result() is again.result()


# -------------------------------------------------------------------- BLEU, ROUGE-L, CIDEr-D
@pytest.mark.parametrize("name", ["single", "multi"])
def test_scores_equal_pycocoevalcap(corpus, name):
    gts, res = _split(corpus, name)
    reference = TextReference.build(gts, pretokenized=True)
    ours = score_captions(reference, {k: v[0] for k, v in res.items()}, meteor=False, pretokenized=True)
    assert ours.ids == list(gts)
    assert_matches_coco(ours, coco_scores(gts, res))
    assert ours.bleu_stats.shape == (len(gts), len(BLEU_STAT_COLUMNS))
    assert set(ours.metrics) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"}


def test_subset_idf(corpus):
    gts, res = _split(corpus, "single")
    reference = TextReference.build(gts, pretokenized=True)
    hyps = {k: v[0] for k, v in res.items()}
    rng = np.random.default_rng(5)
    ids = [k for k in gts if rng.random() < 0.4]
    sub = score_captions(reference, hyps, ids, meteor=False, pretokenized=True)
    assert sub.ids == ids
    assert_matches_coco(sub, coco_scores({k: gts[k] for k in ids}, {k: res[k] for k in ids}))
    # idf="all": the per-image CIDEr-D of a run over every image, averaged over the subset
    full = coco_scores(gts, res)
    every = score_captions(reference, hyps, ids, meteor=False, pretokenized=True, idf="all")
    position = {k: i for i, k in enumerate(gts)}
    expected = full["cider_img"][[position[k] for k in ids]]
    np.testing.assert_allclose(every.per_image["cider"], expected, rtol=0, atol=TOL)
    assert abs(every.metrics["cider"] - sub.metrics["cider"]) > 1e-3
    assert every.metrics["bleu_4"] == pytest.approx(sub.metrics["bleu_4"], rel=1e-12)


def test_bleu_from_stats_bootstrap_replicate(corpus):
    gts, res = _split(corpus, "multi")
    reference = TextReference.build(gts, pretokenized=True)
    ours = score_captions(reference, {k: v[0] for k, v in res.items()}, meteor=False, pretokenized=True)
    np.testing.assert_allclose(bleu_from_stats(ours.bleu_stats),
                               Bleu(4).compute_score(gts, res, verbose=0)[0], rtol=0, atol=TOL)
    # a resample with repeats == pycocoevalcap on the resampled corpus
    rng = np.random.default_rng(7)
    pick = rng.integers(0, len(ours.ids), len(ours.ids))
    keys = [ours.ids[i] for i in pick]
    boot_gts = {f"{k}#{j}": gts[k] for j, k in enumerate(keys)}
    boot_res = {f"{k}#{j}": res[k] for j, k in enumerate(keys)}
    np.testing.assert_allclose(bleu_from_stats(ours.bleu_stats[pick]),
                               Bleu(4).compute_score(boot_gts, boot_res, verbose=0)[0], rtol=0, atol=TOL)
    # many replicates at once from summed rows
    counts = np.stack([np.bincount(rng.integers(0, len(pick), len(pick)), minlength=len(pick))
                       for _ in range(3)])
    totals = counts @ ours.bleu_stats
    assert bleu_from_totals(totals).shape == (3, 4)
    repeated = np.repeat(ours.bleu_stats, counts[1], axis=0)
    np.testing.assert_allclose(bleu_from_totals(totals)[1], bleu_from_stats(repeated), rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        bleu_from_stats(ours.bleu_stats[0])


def test_hand_computed_examples():
    ref = TextReference.build({"a": ["the cat sat on the mat"], "b": ["a b"], "c": ["a b c d"],
                               "d": ["x y z w"]}, pretokenized=True)
    hyps = {"a": "the cat sat on a mat", "b": "a b", "c": "a b", "d": "x y z w"}
    s = score_captions(ref, hyps, meteor=False, pretokenized=True)
    bleu = s.bleu_per_image()
    # a: clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths; LCS 5 of 6 words
    np.testing.assert_allclose(bleu[0], [5 / 6, math.sqrt(1 / 2), (1 / 4) ** (1 / 3), (1 / 12) ** (1 / 4)],
                               atol=1e-8)
    assert s.per_image["rouge_l"][0] == pytest.approx(5 / 6, abs=1e-12)
    # b: identical 2-word caption: no 3-/4-grams, pycocoevalcap's epsilons give (1e-15/1e-9)^(1/n)
    np.testing.assert_allclose(bleu[1], [1, 1, 1e-2, 1e-3], rtol=1e-6)
    # c: half the length: brevity penalty exp(1 - 4/2)
    assert bleu[2][0] == pytest.approx(math.exp(-1), rel=1e-8)
    # d: identical 4-word caption: BLEU 1, ROUGE-L 1
    np.testing.assert_allclose(bleu[3], 1.0, atol=1e-8)
    assert s.per_image["rouge_l"][3] == 1.0
    # CIDEr-D with two images, each hypothesis = its reference: uni/bigram cosines 1, no 3/4-grams
    two = TextReference.build({"p": ["a b"], "q": ["c d"]}, pretokenized=True)
    t = score_captions(two, {"p": "a b", "q": "c d"}, meteor=False, pretokenized=True)
    np.testing.assert_allclose(t.per_image["cider"], [5.0, 5.0], atol=1e-12)
    # a single image always scores CIDEr-D 0 (all document frequencies = 1 = number of images)
    one = score_captions(two, {"p": "a b"}, ["p"], meteor=False, pretokenized=True)
    assert one.metrics["cider"] == 0.0
    assert Cider().compute_score({"p": ["a b"]}, {"p": ["a b"]})[0] == 0.0
    # empty hypothesis scores 0 everywhere
    e = score_captions(two, {"p": "", "q": "c d"}, meteor=False, pretokenized=True)
    assert e.per_image["cider"][0] == 0.0 and e.per_image["rouge_l"][0] == 0.0
    assert e.bleu_stats[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 2]


def test_pickle_and_errors(corpus):
    gts, res = _split(corpus, "multi")
    reference = TextReference.build(gts, pretokenized=True)
    hyps = {k: v[0] for k, v in res.items()}
    again = pickle.loads(pickle.dumps(reference))
    a = score_captions(reference, hyps, meteor=False, pretokenized=True)
    b = score_captions(again, hyps, meteor=False, pretokenized=True)
    assert_close(a.metrics, b.metrics)
    assert np.array_equal(a.bleu_stats, b.bleu_stats)
    first = next(iter(gts))
    with pytest.raises(ValueError, match="without a hypothesis"):
        score_captions(reference, {first: "x"}, meteor=False, pretokenized=True)
    with pytest.raises(KeyError):
        score_captions(reference, hyps, ["nope"], meteor=False, pretokenized=True)
    with pytest.raises(ValueError, match="duplicate"):
        score_captions(reference, hyps, [first, first], meteor=False, pretokenized=True)
    with pytest.raises(ValueError, match="one hypothesis"):
        score_captions(reference, {**hyps, first: ["x", "y"]}, meteor=False, pretokenized=True)
    with pytest.raises(ValueError, match="single line"):
        score_captions(reference, {**hyps, first: "x\ny"}, meteor=False, pretokenized=True)
    with pytest.raises(ValueError):
        TextReference.build({"a": []})
    assert first in reference and len(reference) == len(gts)


# -------------------------------------------------- end to end through Java, with METEOR
@pytest.fixture
def started(monkeypatch) -> list[subprocess.Popen]:
    """Every process the text metrics start (to check each one is closed)."""
    procs: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        if "jdk.compiler/com.sun.tools.javac.Main" not in proc.args:   # compiling METEOR's driver
            procs.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    return procs


def test_end_to_end_with_meteor(corpus, started):
    ids, refs, hyps = corpus["single"]
    ids = ids[:120]
    gts, res = _split(corpus, "single")
    gts, res = {k: gts[k] for k in ids}, {k: res[k] for k in ids}
    reference = TextReference.build({k: refs[k] for k in ids})          # Java: PTB on references
    ours = score_captions(reference, hyps, ids, meteor=True)             # Java: PTB + METEOR
    java = list(started)
    assert reference.refs == [gts[k] for k in ids]
    assert ours.tokenized == [res[k][0] for k in ids]
    assert_matches_coco(ours, coco_scores(gts, res))
    meteor = Meteor()
    try:
        total, segments = meteor.compute_score(gts, res)
    finally:
        del meteor
    assert abs(ours.metrics["meteor"] - total) < TOL
    np.testing.assert_allclose(ours.per_image["meteor"], segments, rtol=0, atol=TOL)
    assert len(java) == 3 and all(p.poll() is not None for p in java)  # PTB x2, METEOR: closed
    again = score_captions(reference, dict(zip(ours.ids, ours.tokenized)), meteor=False, pretokenized=True)
    assert_close(again.metrics, {k: v for k, v in ours.metrics.items() if k != "meteor"})


def _meteor_jvms(procs: list[subprocess.Popen]) -> list[subprocess.Popen]:
    """The METEOR processes among `procs` (not the PTB tokenizer, not the driver's compiler)."""
    return [p for p in procs if tuple(p.args[-len(meteor.METEOR_OPTIONS):]) == meteor.METEOR_OPTIONS]


def test_meteor_on_threads_equals_pycocoevalcap(corpus, started):
    """The driver (on three threads sharing one copy of the tables, and on one) gives
    pycocoevalcap's corpus score and segment scores (multi-reference images included), and each
    process is closed."""
    ids, _, _ = corpus["multi"]
    gts, res = corpus["coco"]
    refs, hyps = [gts[i] for i in ids], [res[i][0] for i in ids]
    meteor_ = Meteor()
    try:
        expected_total, expected_segments = meteor_.compute_score({i: gts[i] for i in ids}, {i: res[i] for i in ids})
    finally:
        del meteor_
    started.clear()   # pycocoevalcap's own jar
    for threads in (3, 1):
        process = meteor.MeteorProcess(threads)
        assert process.threads == threads and "MeteorPool" in process.proc.args
        total, segments = meteor.meteor_score(refs, hyps, process=process)
        assert abs(total - expected_total) < TOL
        np.testing.assert_allclose(segments, expected_segments, rtol=0, atol=TOL)
    jvms = _meteor_jvms(started)
    assert len(jvms) == 2 and all(p.poll() is not None for p in jvms)


def _paraphrase_rich(n: int, seed: int = 0) -> tuple[list[list[str]], list[str]]:
    """References and hypotheses built around entries of METEOR's own paraphrase table (one in
    200 of its first 600,000; phrase on one side, paraphrase on the other; shared and unshared
    filler, some upper case and punctuation; one in four with a second reference): nearly every
    segment's score depends on paraphrase matches."""
    rng = random.Random(seed)
    entries = []
    with gzip.open(pycocoevalcap_file("meteor", "data", "paraphrase-en.gz"), "rb") as fh:
        while len(entries) < 3000 and (entry := list(itertools.islice(fh, 3))):
            entries.append(tuple(line.decode().strip() for line in entry[1:]))
            collections.deque(itertools.islice(fh, 3 * 199), maxlen=0)   # skip the next 199 entries
    fill = "the face looks edited , and The Nose is blurry ; it's obviously fake ( see left-eye ) !".split()
    refs, hyps = [], []
    for i in range(n):
        a, b, c = rng.sample(entries, 3)
        ref = " ".join([*rng.sample(fill, 4), a[0], rng.choice(fill), b[0], *rng.sample(fill, 2)])
        hyp = " ".join([*rng.sample(fill, 3), a[1], c[1], rng.choice(fill), b[1].upper() if i % 3 == 0 else b[1]])
        refs.append([ref, f"{c[0]} {' '.join(rng.sample(fill, 3))}"] if i % 4 == 0 else [ref])
        hyps.append(hyp)
    return refs, hyps


def test_meteor_driver_with_its_cut_paraphrase_table_equals_the_jar(monkeypatch):
    """The driver keeps only the paraphrase entries whose words occur in its batch; on text where
    nearly every score hangs on paraphrase matches, its corpus and segment scores are the jar's
    own mode's (with the whole table), and paraphrases did count."""
    refs, hyps = _paraphrase_rich(300)
    driver = meteor.meteor_score(refs, hyps, threads=2)
    with monkeypatch.context() as m:   # as where the driver cannot be compiled: the jar's own mode
        m.setattr(meteor, "driver_classes", lambda: None)
        process = meteor.MeteorProcess(2)
    assert process.threads == 1 and "-jar" in process.proc.args and not process.batched
    with_jar = meteor.meteor_score(refs, hyps, process=process)
    assert abs(driver[0] - with_jar[0]) < TOL
    np.testing.assert_allclose(driver[1], with_jar[1], rtol=0, atol=TOL)
    exact_only = meteor.meteor_score([[" ".join(r.split()[:4]) for r in rs] for rs in refs], hyps, threads=2)
    assert (np.abs(driver[1] - exact_only[1]) > 1e-3).mean() > 0.5   # the text is not trivially matched


def test_meteor_driver_compiled_once_into_the_cache(monkeypatch, tmp_path):
    """The driver is compiled on first use into the cache folder and reused from there; a cache
    that cannot be written compiles into a temporary folder; a runtime that cannot compile it
    runs the jar's own mode."""
    compiles: list[Path] = []
    real_javac = meteor._javac

    def counting_javac(source, jar, out):
        compiles.append(out)
        return real_javac(source, jar, out)

    monkeypatch.setattr(meteor, "_javac", counting_javac)
    monkeypatch.setenv("MMTT_CACHE_DIR", str(tmp_path / "cache"))
    first = meteor.driver_classes()
    assert first is not None and first.parent == tmp_path / "cache" / "java"
    assert (first / "MeteorPool.class").is_file() and len(compiles) == 1
    meteor._compiled.cache_clear()   # a new process
    assert meteor.driver_classes() == first and len(compiles) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]   # no build folder left behind

    (tmp_path / "blocked").write_text("a file where the cache folder would be")
    monkeypatch.setenv("MMTT_CACHE_DIR", str(tmp_path / "blocked"))
    scratch = meteor.driver_classes()
    assert scratch is not None and (scratch / "MeteorPool.class").is_file() and len(compiles) == 2
    assert meteor.meteor_score([["a b c"]] * 3, ["a b"] * 3, threads=2)[0] > 0

    monkeypatch.setenv("MMTT_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setattr(meteor, "_javac", lambda source, jar, out: False)
    assert meteor.driver_classes() is None
    process = meteor.MeteorProcess(2)
    assert process.threads == 1 and "-jar" in process.proc.args
    with_jar = meteor.meteor_score([["a b c"]] * 3, ["a b"] * 3, process=process)
    assert abs(with_jar[0] - meteor.meteor_score([["a b c"]] * 3, ["a b"] * 3, threads=2)[0]) < TOL
    meteor._compiled.cache_clear()


def test_meteor_driver_refuses_what_it_cannot_read():
    """A line the driver cannot answer ends it with a message naming the line, not a hang."""
    refused = {
        b"SCORE ||| a b ||| a\n": "input line 1 (SCORE ||| a b ||| a): not a BATCH line",
        b"BATCH two\n": "input line 1 (BATCH two): not a line count",
        b"BATCH 2\nSCORE ||| a b ||| a\nEVAL ||| 1 2\n": "input line 3 (EVAL ||| 1 2): a BATCH holds SCORE lines",
        b"BATCH 2\nSCORE ||| a\n": "input line 2 (SCORE ||| a): a BATCH holds SCORE lines with a reference",
        b"BATCH 3\nSCORE ||| a b ||| a\n": "input ended after line 2, inside a BATCH of 3 lines",
        b"BATCH 0\nHELLO ||| x\n": "input line 2 (HELLO ||| x): java.lang.IllegalArgumentException: not an EVAL line",
        b"BATCH 0\nEVAL ||| 1 2 x\n": "input line 2 (EVAL ||| 1 2 x): java.util.InputMismatchException",
        b"BATCH 1\nSCORE ||| a b ||| a\nSCORE ||| a b ||| b\n":
            "input line 3 (SCORE ||| a b ||| b): java.lang.IllegalArgumentException: a SCORE line after the BATCH",
    }
    for sent, message in refused.items():
        with meteor.MeteorProcess(2) as process:
            process.proc.stdin.write(sent)
            process.proc.stdin.close()
            process.proc.wait(timeout=120)
            assert process.proc.returncode == 1 and message in process.error_tail(), process.error_tail()
    with meteor.MeteorProcess(2) as process:
        with pytest.raises(ValueError, match="ended early"):
            process.evaluate(["1 2 x"])   # an EVAL with no BATCH before it
        process.proc.wait()
        assert "input line 1 (EVAL ||| 1 2 x): not a BATCH line" in process.error_tail()


def test_meteor_failure_or_cancel_stops_the_process(monkeypatch, started):
    """A failure while reading (or a cancel) kills the JVM at once instead of letting it finish."""
    real = meteor._read_line
    calls = []

    def breaks_later(proc):
        calls.append(1)
        if len(calls) == 20:
            raise ValueError("simulated")
        return real(proc)

    monkeypatch.setattr(meteor, "_read_line", breaks_later)
    with pytest.raises(RuntimeError, match="METEOR failed: simulated"):
        meteor_score([["a b c"]] * 50, ["a b"] * 50, threads=2)
    monkeypatch.setattr(meteor, "_read_line", real)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RuntimeError, match="cancelled"):
        meteor_score([["a b c"]] * 50, ["a b"] * 50, threads=2, cancel=cancel)
    jvms = _meteor_jvms(started)
    assert len(jvms) == 2 and all(p.poll() is not None for p in jvms)


def test_meteor_process_closed_on_failure(monkeypatch, started):
    def broken(proc):
        raise ValueError("simulated")

    monkeypatch.setattr(meteor, "_read_line", broken)
    with pytest.raises(RuntimeError, match="METEOR failed"):
        meteor_score([["a b"]], ["a b"])
    jvms = _meteor_jvms(started)
    assert len(jvms) == 1 and jvms[0].poll() is not None
    with pytest.raises(ValueError):
        meteor_score([["a"]], ["a", "b"])


# ----------------------------------------------------------------------- evaluate module
def test_evaluate_module(corpus):
    import evaluate

    ids, refs, hyps = corpus["multi"]
    ids = ids[:80]
    metric = evaluate.load(str(HF_MODULE))
    multi = metric.compute(predictions=[hyps[k] for k in ids], references=[refs[k] for k in ids])
    expected = score_captions(TextReference.build({str(i): refs[k] for i, k in enumerate(ids)}),
                              {str(i): hyps[k] for i, k in enumerate(ids)}, meteor=False)
    assert_close(multi, expected.metrics)
    single = metric.compute(predictions=[hyps[k] for k in ids], references=[refs[k][0] for k in ids])
    gts, res = _split(corpus, "multi")
    coco = coco_scores({k: gts[k][:1] for k in ids}, {k: res[k] for k in ids})
    assert abs(single["cider"] - coco["cider"]) < TOL and abs(single["bleu_4"] - coco["bleu"][3]) < TOL
    assert abs(single["rouge_l"] - coco["rouge_l"]) < TOL


@pytest.mark.slow
def test_evaluate_module_meteor_in_fresh_process(tmp_path):
    code = ("import evaluate; m = evaluate.load(%r); "
            "print(m.compute(predictions=['the nose is blurred'], "
            "references=[['The nose looks blurred.']], meteor=True))" % str(HF_MODULE))
    env = {**os.environ, "HF_EVALUATE_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - a dict literal we printed
    expected = score_captions(TextReference.build({"0": ["The nose looks blurred."]}),
                              {"0": "the nose is blurred"}, meteor=True).metrics
    assert result == pytest.approx(expected, abs=1e-12)


def test_rouge_tokens_of_plain_and_irregular_hypotheses(corpus):
    """ROUGE-L splits hypotheses on " ", the other metrics on any whitespace: for the usual PTB
    output (single spaces, none empty) the tokens are shared; any other hypothesis (empty, or
    with doubled, leading, trailing or non-space whitespace) keeps ROUGE's own split. Both ways
    equal pycocoevalcap."""
    gts, res = _split(corpus, "single")
    plain = {k: v for k, v in res.items() if v[0].split(" ") == v[0].split()}
    assert 0 < len(plain) < len(res)   # the corpus has both kinds
    ids = list(plain)
    reference = TextReference.build(gts, pretokenized=True)
    ours = score_captions(reference, {k: v[0] for k, v in plain.items()}, ids, meteor=False, pretokenized=True)
    assert_matches_coco(ours, coco_scores({k: gts[k] for k in ids}, plain))
    odd = {k: [v] for k, v in {ids[0]: "the  nose", ids[1]: " lips", ids[2]: "skin ", ids[3]: "a\u00a0b"}.items()}
    mixed = {**plain, **odd}
    ours = score_captions(reference, {k: v[0] for k, v in mixed.items()}, ids, meteor=False, pretokenized=True)
    assert_matches_coco(ours, coco_scores({k: gts[k] for k in ids}, {k: mixed[k] for k in ids}))
    assert text._single_spaced([v[0] for v in plain.values()])
    for line in ("", "the  nose", " lips", "skin ", "a\u00a0b", "a\tb", "a\x1cb"):
        assert not text._single_spaced(["the nose", line]) and not text._single_spaced([line])


@pytest.mark.parametrize("bound", [1, 7, 65536, 65537, 2**32 + 5, 2**47])
def test_stable_argsort_by_16_bit_digits_equals_numpy(bound):
    rng = np.random.default_rng(bound % 1000)
    for n in (0, 1, 1000):
        codes = rng.integers(0, bound, n)
        codes[: n // 3] = codes[n // 3: 2 * (n // 3)]   # ties, whose order must be kept
        assert np.array_equal(text._stable_argsort(codes, bound), np.argsort(codes, kind="stable"))
