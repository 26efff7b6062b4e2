"""The entry page's sample gallery: truth from the data root, predictions from the kept files.

The store never holds truth, so images, truth masks and truth explanations come from the data
root given to the app (`--data`); an entry's predicted masks and explanations come from its
submission as the store kept it (content-addressed, `benchmark.store.filestore`), resolved the
way the scorer resolves them (an explicit `"mask"` path, else `masks/<img_path as .png>`).
Callers must have checked that the split is public: nothing here knows about hidden splits.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import streamlit as st
from PIL import Image

from benchmark.store.filestore import FileStore, FileStoreError
from submissions.format import MASKS_DIR, PREDICTIONS

THUMB = 256
TRUTH_RGB = (230, 57, 70)    # red: forged pixels in the truth
PRED_RGB = (29, 161, 242)    # blue: pixels the entry marked forged


@dataclass(frozen=True)
class KeptPrediction:
    caption: str | None
    mask_digest: str | None


@st.cache_resource(show_spinner="Loading the split…", max_entries=4)
def load_truth(data_root: str, split: str):
    """The split as released (records + file paths); its fingerprint is checked by the caller."""
    from benchmark.data.split import load_split

    return load_split(Path(data_root), split)


@st.cache_data(show_spinner=False, max_entries=8)
def truth_fingerprint(data_root: str, split: str) -> str:
    return load_truth(data_root, split).fingerprint


def _object_path(store: FileStore, digest: str) -> Path:
    return store._object(digest)   # noqa: SLF001 - the store's own digest -> path rule


def _read_object(store: FileStore, digest: str) -> bytes:
    path = _object_path(store, digest)
    if not path.is_file():
        raise FileStoreError(f"kept file {digest[:19]}... is missing under {store.root}")
    return path.read_bytes()


@st.cache_data(show_spinner="Reading the kept predictions…", max_entries=16)
def kept_predictions(files_root: str, tree_hash: str, pred_mask_paths: dict[str, str]) -> dict[str, KeptPrediction]:
    """{image_id: caption and mask object} of a kept submission (immutable: cached by its hash)."""
    store = FileStore(files_root)
    files = {rel: digest for rel, digest, _ in store.read_tree(tree_hash)}
    top_jsonl = [rel for rel in files if "/" not in rel and rel.endswith(".jsonl")]
    pred_file = PREDICTIONS if PREDICTIONS in files else (top_jsonl[0] if len(top_jsonl) == 1 else None)
    if pred_file is None:
        raise FileStoreError(f"kept submission {tree_hash[:19]}... has no {PREDICTIONS}")
    top_dirs = sorted({rel.split("/", 1)[0] for rel in files if "/" in rel and not rel.startswith(".")})
    mask_dir = MASKS_DIR if MASKS_DIR in top_dirs else (top_dirs[0] if len(top_dirs) == 1 else MASKS_DIR)
    out: dict[str, KeptPrediction] = {}
    for line in _read_object(store, files[pred_file]).decode("utf-8", "replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("image_id"), str):
            continue
        iid = obj["image_id"]
        explicit = obj.get("mask") if isinstance(obj.get("mask"), str) else None
        rel = _normalise(explicit) if explicit else (
            f"{mask_dir}/{pred_mask_paths[iid]}" if iid in pred_mask_paths else None)
        caption = obj.get("caption") if isinstance(obj.get("caption"), str) else None
        out[iid] = KeptPrediction(caption=caption, mask_digest=files.get(rel) if rel else None)
    return out


def _normalise(rel: str) -> str | None:
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        return None
    return str(p)


def _tint(image: Image.Image, mask: np.ndarray, rgb: tuple[int, int, int], alpha: float = 0.5) -> Image.Image:
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if mask.shape != base.shape[:2]:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
            (base.shape[1], base.shape[0]), Image.NEAREST)) > 127
    out = base.copy()
    out[mask] = (1 - alpha) * base[mask] + alpha * np.array(rgb, dtype=np.float32)
    # a 1-px outline keeps the region's edge readable on any background
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = rgb
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=512)
def panels(image_file: str, truth_file: str, files_root: str,
           mask_digest: str | None) -> tuple[bytes, bytes, bytes | None]:
    """PNG thumbnails: the image, the truth overlay, the predicted-mask overlay (None: no mask)."""
    image = Image.open(image_file).convert("RGB")
    image.thumbnail((THUMB, THUMB))
    truth = np.asarray(Image.open(truth_file).convert("L")) > 127
    pred_png = None
    if mask_digest:
        try:
            data = _read_object(FileStore(files_root), mask_digest)
            pred = np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 127
            pred_png = _png(_tint(image, pred, PRED_RGB))
        except (OSError, ValueError, FileStoreError, Image.DecompressionBombError):
            pred_png = None
    return _png(image), _png(_tint(image, truth, TRUTH_RGB)), pred_png
