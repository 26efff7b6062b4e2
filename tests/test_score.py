"""The scorer end to end: exact metric values, both protocols, breakdowns, CIs, the CLI contract."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score, jaccard_score

from benchmark.data.split import load_split
from benchmark.scoring.reference import as_metrics, reference_official
from benchmark.scoring.score import ScoreOptions, score_submission
from tests.conftest import assert_close, write_png, write_submission

FAST = ScoreOptions(skip=("meteor",), n_boot=200)


def test_mask_metrics_equal_sklearn_per_image(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    out = score_submission(write_submission(tmp_path / "sub", recs, pred_size=48), split, FAST)
    for i, rec in enumerate(recs):
        truth = np.asarray(Image.open(root / rec["mask_path"]).convert("L")) > 127
        pred_file = tmp_path / "sub/masks" / Path(rec["img_path"]).with_suffix(".png")
        pred = np.asarray(Image.open(pred_file).convert("L").resize(truth.shape[::-1], Image.NEAREST)) > 127
        assert out.per_sample["image_id"][i] == rec["image_id"]
        if truth.any() or pred.any():
            assert out.per_sample["iou"][i] == pytest.approx(jaccard_score(truth.ravel(), pred.ravel()), abs=1e-12)
            assert out.per_sample["f1"][i] == pytest.approx(f1_score(truth.ravel(), pred.ravel()), abs=1e-12)
        else:
            assert out.per_sample["iou"][i] == 1.0
    m = out.summary["metrics"]
    assert m["iou"] == pytest.approx(np.mean(out.per_sample["iou"]), abs=1e-12)
    assert 0 <= m["auc"] <= 1 and 0 <= m["iou_micro"] <= 1


def test_text_metrics_equal_pycocoevalcap(random_root, tmp_path):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs)
    out = score_submission(sub, split, ScoreOptions(n_boot=100))
    preds = [json.loads(line) for line in (sub / "predictions.jsonl").read_text().splitlines()]
    tok = PTBTokenizer()
    gts = tok.tokenize({r["image_id"]: [{"caption": r["caption"]}] for r in recs})
    res = tok.tokenize({p["image_id"]: [{"caption": p["caption"]}] for p in preds})
    m = out.summary["metrics"]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for j in range(4):
        assert m[f"bleu_{j + 1}"] == pytest.approx(bleu[j], abs=1e-9)
    assert m["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-9)
    assert m["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-9)
    assert m["meteor"] == pytest.approx(Meteor().compute_score(gts, res)[0], abs=1e-9)


def test_official_protocol_equals_the_plain_reference(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    # the official harness's own output: captions JSONL with img_path + a mask folder, partial,
    # with unknown ids, a missing mask, an unreadable one and an RGB one of another size
    sub = write_submission(tmp_path / "sub", recs[:-4], official=True, pred_size=40, extra_lines=[
        json.dumps({"image_id": "sd_77777", "img_path": "dataset/x.png", "caption": "unknown id"})])
    masks = sub / "test_masks"
    (masks / Path(recs[0]["img_path"]).with_suffix(".png")).unlink()
    (masks / Path(recs[1]["img_path"]).with_suffix(".png")).write_bytes(b"broken")
    Image.fromarray(np.full((30, 50, 3), 200, np.uint8)).save(masks / Path(recs[2]["img_path"]).with_suffix(".png"))
    ours = score_submission(sub, split, ScoreOptions(protocol="official", skip=("meteor",), n_boot=50)).summary
    ref = reference_official(split.json_path, sub / "test_captions.jsonl", root, masks)
    for k, v in as_metrics(ref).items():
        assert ours["metrics"][k] == pytest.approx(v, abs=1e-6), k
    assert ours["n_scored"] == ref["metadata"]["evaluated_samples"] == len(recs) - 4
    assert ours["n_mask_scored"] == ref["metadata"]["matched_masks"] == len(recs) - 4 - 2
    assert ours["n_missing"] == 4
    # the same submission is rejected by the strict protocol, with every reason
    from submissions.reader import SubmissionError
    with pytest.raises(SubmissionError) as info:
        score_submission(sub, split, FAST)
    report = info.value.report()
    assert "unknown image_id 'sd_77777'" in report and "have no prediction" in report
    assert "mask file not found" in report and "not a readable image" in report and "mode RGB" in report


def test_official_subset_changes_cider_idf(random_root, tmp_path):
    """Scoring a subset under `official` uses that subset's IDF (as the official script does),
    so its CIDEr differs from the same images' mean under `strict` --allow-missing."""
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs[: len(recs) // 2], masks=False)
    official = score_submission(sub, split, ScoreOptions(protocol="official", skip=("meteor",), n_boot=20))
    strict = score_submission(sub, split, ScoreOptions(allow_missing=True, skip=("meteor",), n_boot=20))
    k = len(recs) // 2
    strict_subset_mean = float(np.mean(strict.per_sample["cider"][:k]))
    assert official.summary["metrics"]["cider"] != pytest.approx(strict_subset_mean, abs=1e-6)


def test_breakdowns_cis_and_stamps(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    out = score_submission(write_submission(tmp_path / "sub", recs), split, FAST).summary
    methods = out["breakdown"]["method"]
    assert set(methods) == {"diffusion-inpainting", "transformer-inpainting", "gan-faceswap", "attribute-editing"}
    assert sum(g["n"] for g in methods.values()) == len(recs)
    # per-image-mean metrics: the n-weighted mean of the groups is the overall value
    for key in ("iou", "cider", "clue_f1"):
        weighted = sum(g["n"] * g["metrics"][key] for g in methods.values()) / len(recs)
        assert weighted == pytest.approx(out["metrics"][key], abs=1e-12)
    for key in ("iou", "f1", "bleu_4", "rouge_l", "cider", "clue_f1"):
        low, high = out["ci95"][key]
        assert low <= out["metrics"][key] <= high, key
    assert out["metric_version"] and out["dataset_fingerprint"] == split.fingerprint
    assert out["submission_hash"].startswith("sha256:") and "empty" in out["mask_policy"]
    again = score_submission(write_submission(tmp_path / "sub", recs), split, FAST).summary
    assert_close(again["ci95"], out["ci95"])  # seeded


def test_truth_cache_is_reused_and_gives_identical_numbers(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs)
    cache = tmp_path / "cache"
    first = score_submission(sub, split, ScoreOptions(skip=("meteor",), n_boot=50, cache_dir=cache)).summary
    files = sorted(p.name for p in next(cache.glob("truth-*")).iterdir())
    assert files == ["blocks-224x224", "blocks-48x48", "masks.pkl", "meta.pkl", "regions.pkl", "text.pkl"]
    second = score_submission(sub, load_split(root, "test"), ScoreOptions(skip=("meteor",), n_boot=50, cache_dir=cache)).summary
    assert_close(first["metrics"], second["metrics"])


def _mmtt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=300)


def test_cli_score_json_contract_and_located_errors(random_root, tmp_path):
    root, recs = random_root
    sub = write_submission(tmp_path / "sub", recs)
    done = _mmtt("score", str(sub), "--data", str(root), "--split", "test", "--json", "--no-meteor", "--n-boot", "50")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for key in ("protocol", "split", "n_truth", "n_scored", "n_missing", "metrics"):
        assert key in out
    for key in ("iou", "precision", "recall", "f1", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"):
        assert isinstance(out["metrics"][key], float)
    assert (out["protocol"], out["split"], out["n_truth"], out["n_missing"]) == ("strict", "test", len(recs), 0)
    text = _mmtt("score", str(sub), "--data", str(root), "--no-meteor", "--n-boot", "50")
    assert text.returncode == 0 and "95% CI" in text.stdout and "by method" in text.stdout

    (sub / "predictions.jsonl").write_text('{"image_id": \n')
    bad = _mmtt("score", str(sub), "--data", str(root), "--json")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert "predictions.jsonl:1: invalid JSON" in bad.stderr.splitlines()[0]
    missing = _mmtt("score", str(tmp_path / "nope"), "--data", str(root))
    assert missing.returncode == 2 and "submission not found" in missing.stderr


def test_parallel_mask_pass_equals_serial(random_root, tmp_path, monkeypatch):
    import benchmark.scoring.maskpass as maskpass

    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs, pred_size=40)
    bad = sub / "masks" / Path(recs[3]["img_path"]).with_suffix(".png")
    bad.write_bytes(b"junk")
    opts = dict(protocol="official", skip=("meteor",), n_boot=50)
    serial = score_submission(sub, split, ScoreOptions(workers=1, **opts))
    monkeypatch.setattr(maskpass, "CHUNK", 5)  # several chunks on 2 worker processes
    parallel = score_submission(sub, split, ScoreOptions(workers=2, **opts))
    assert_close(parallel.summary["metrics"], serial.summary["metrics"])
    assert parallel.summary["n_mask_skipped"] == serial.summary["n_mask_skipped"] == 1
    assert parallel.summary["submission_hash"] == serial.summary["submission_hash"]
    np.testing.assert_allclose(parallel.per_sample["iou"], serial.per_sample["iou"], rtol=1e-12)


def test_fingerprint_memo_follows_every_truth_change(random_root, tmp_path):
    """The remembered fingerprint is reused only while the split file and every truth mask file
    are untouched; a rewritten mask (even with its old mtime put back) is hashed afresh."""
    import os

    from benchmark.scoring.truth import fingerprint

    root, recs = random_root
    cache = tmp_path / "cache"
    first = fingerprint(load_split(root, "test"), cache)
    assert first == load_split(root, "test").fingerprint
    assert len(list((cache / "fingerprints").iterdir())) == 1
    assert fingerprint(load_split(root, "test"), cache) == first
    mask = root / recs[0]["mask_path"]
    st = os.stat(mask)
    truth = np.asarray(Image.open(mask).convert("L")).copy()
    truth[0, 0] = 255 - truth[0, 0]
    write_png(mask, truth)
    os.utime(mask, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size class, old mtime: ctime still moves
    changed = fingerprint(load_split(root, "test"), cache)
    assert changed != first and changed == load_split(root, "test").fingerprint


def test_region_breakdown_counts_an_image_in_every_region_it_names(random_root, tmp_path):
    from benchmark.data.regions import REGIONS

    root, recs = random_root
    split = load_split(root, "test")
    out = score_submission(write_submission(tmp_path / "sub", recs), split, FAST)
    by_region = out.breakdown["region"]
    named = {r: [i for i, rec in enumerate(recs) if rec["multilabel"][j]] for j, r in enumerate(REGIONS)}
    assert set(by_region) == {r for r, members in named.items() if members}
    for region, group in by_region.items():
        members = named[region]
        assert group["n"] == len(members)
        assert group["metrics"]["iou"] == pytest.approx(np.mean(out.per_sample["iou"][members]), abs=1e-12)
        assert group["metrics"]["cider"] == pytest.approx(np.mean(out.per_sample["cider"][members]), abs=1e-12)
    assert sum(g["n"] for g in by_region.values()) >= len([r for r in recs if any(r["multilabel"])])
    assert "region" in out.to_json()["breakdown"]


def test_metric_selection_is_one_generic_mechanism(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs)
    only = score_submission(sub, split, ScoreOptions(metrics=("iou", "cider"), n_boot=20))
    assert only.scorers == ("mask", "cider")
    assert {"iou", "f1", "cider"} <= set(only.metrics) and not {"bleu_4", "meteor", "clue_f1"} & set(only.metrics)
    assert set(only.ci95) <= set(only.metrics)
    skipped = score_submission(sub, split, ScoreOptions(skip=("meteor", "bleu"), n_boot=20))
    assert "bleu_1" not in skipped.metrics and "clue_f1" in skipped.metrics and "meteor" not in skipped.metrics
    official = score_submission(sub, split, ScoreOptions(protocol="official"))
    assert set(official.scorers) == {"mask", "cider", "bleu", "rouge"} and official.ci95 == {}
    bad = _mmtt("score", str(sub), "--data", str(root), "--skip", "nonsense")
    assert bad.returncode == 2 and "unknown metric 'nonsense'" in bad.stderr and "Traceback" not in bad.stderr


def test_meteor_jar_started_early_is_used_and_killed_when_scoring_is_refused(random_root, tmp_path, monkeypatch):
    """METEOR's jar starts with scoring (it loads its tables while the rest runs), scores the
    explanations, and is closed at the end; when the submission is refused it is killed at once
    (no wait for a JVM still loading)."""
    import signal

    from benchmark.metrics.meteor import METEOR_OPTIONS
    from submissions.reader import SubmissionError

    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def recording_popen(cmd, *args, **kwargs):
        proc = real_popen(cmd, *args, **kwargs)
        if tuple(cmd[-len(METEOR_OPTIONS):]) == METEOR_OPTIONS:
            started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    root, recs = random_root
    split = load_split(root, "test")
    good = score_submission(write_submission(tmp_path / "good", recs), split, ScoreOptions(n_boot=20))
    assert "meteor" in good.metrics and len(started) == 1 and started[0].poll() is not None
    bad = write_submission(tmp_path / "bad", recs)
    (bad / "predictions.jsonl").write_text("not json\n")
    with pytest.raises(SubmissionError):
        score_submission(bad, split, ScoreOptions(n_boot=20))
    assert len(started) == 2 and started[1].poll() == -signal.SIGKILL   # killed, not waited for


def test_shared_work_is_computed_once_when_two_threads_ask():
    """Scorers run on two threads (the explanation thread and, after the mask pass, the main one):
    the n-gram pass they share is made once, the second asker waiting for it."""
    import threading
    import time

    from benchmark.metrics.registry import Inputs

    inputs = Inputs(ids=[], truth=None, strict=True)
    calls: list[int] = []

    def make():
        calls.append(1)
        time.sleep(0.2)
        return object()

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(inputs.shared("text_pass", make))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(g is got[0] for g in got)
