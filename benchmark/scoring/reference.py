"""A plain implementation of the official `evaluate_metrics.py` protocol, for cross-checks.

It follows the protocol as documented (ids in both files; truth `convert('L') > 127`; prediction
`convert('L')` resized NEAREST to the truth size, `> 127`; the official zero-division rules;
unreadable or missing masks skipped; pycocoevalcap's PTBTokenizer, Bleu(4), Rouge and Cider run
fresh on the common ids; 6 decimals) in the most direct way: one PIL decode per file, one numpy
comparison per image, nothing cached. The fast scorer must agree with it; the speed benchmark
times against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.data.record import prediction_mask_path
from benchmark.data.split import resolve_data_path


def _mask_scores(pred_path: Path, truth_path: Path) -> tuple[float, float, float] | None:
    try:
        truth_img = Image.open(truth_path).convert("L")
        truth = np.array(truth_img) > 127
        pred = np.array(Image.open(pred_path).convert("L").resize(truth_img.size, Image.NEAREST)) > 127
    except Exception:  # the official rule: a mask that cannot be read is skipped
        return None
    inter = np.logical_and(pred, truth).sum()
    union = np.logical_or(pred, truth).sum()
    n_pred, n_truth = pred.sum(), truth.sum()
    iou = 1.0 if union == 0 else float(inter / union)
    precision = float(inter / n_pred) if n_pred > 0 else (1.0 if n_truth == 0 else 0.0)
    recall = float(inter / n_truth) if n_truth > 0 else (1.0 if n_pred == 0 else 0.0)
    return iou, precision, recall


def reference_official(truth_json: Path, predictions: Path, data_root: Path, pred_mask_dir: Path) -> dict[str, Any]:
    """The official protocol's output: {"metadata", "vision_metrics", "nlp_metrics"}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    truth = {item["image_id"]: item for item in json.loads(Path(truth_json).read_text(encoding="utf-8"))}
    text = Path(predictions).read_text(encoding="utf-8")
    items = [json.loads(line) for line in text.splitlines() if line.strip()] \
        if str(predictions).endswith(".jsonl") else json.loads(text)
    preds = {item["image_id"]: item for item in items}
    common = sorted(set(truth) & set(preds))

    totals = np.zeros(3)
    valid = 0
    gts, res = {}, {}
    for image_id in common:
        rec = truth[image_id]
        img_rel = rec.get("img_path") or rec.get("relative_path")
        truth_path = resolve_data_path(Path(data_root), rec["mask_path"])
        pred_path = Path(pred_mask_dir) / prediction_mask_path(img_rel)
        if truth_path is not None and pred_path.exists():
            scores = _mask_scores(pred_path, truth_path)
            if scores is not None:
                totals += scores
                valid += 1
        gts[image_id] = [{"caption": rec["caption"]}]
        res[image_id] = [{"caption": preds[image_id]["caption"]}]

    tokenizer = PTBTokenizer()
    gts_tok, res_tok = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    nlp: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    nlp.update({f"Bleu_{i}": float(b) for i, b in enumerate(bleu, start=1)})
    nlp["ROUGE_L"] = float(Rouge().compute_score(gts_tok, res_tok)[0])
    nlp["CIDEr"] = float(Cider().compute_score(gts_tok, res_tok)[0])
    means = totals / valid if valid else np.zeros(3)
    return {
        "metadata": {"evaluated_samples": len(common), "matched_masks": valid},
        "vision_metrics": {"mIoU": round(float(means[0]), 6), "precision": round(float(means[1]), 6),
                           "recall": round(float(means[2]), 6)},
        "nlp_metrics": {k: round(v, 6) for k, v in nlp.items()},
    }


OFFICIAL_KEYS = {"mIoU": "iou", "precision": "precision", "recall": "recall", "Bleu_1": "bleu_1",
                 "Bleu_2": "bleu_2", "Bleu_3": "bleu_3", "Bleu_4": "bleu_4", "ROUGE_L": "rouge_l", "CIDEr": "cider"}


def as_metrics(official: dict[str, Any]) -> dict[str, float]:
    """The official output under this project's metric names."""
    flat = {**official["vision_metrics"], **official["nlp_metrics"]}
    return {OFFICIAL_KEYS[k]: v for k, v in flat.items()}


if __name__ == "__main__":  # python -m benchmark.scoring.reference GT PRED DATA_ROOT MASK_DIR
    import sys

    print(json.dumps(reference_official(*map(Path, sys.argv[1:5])), indent=2))

