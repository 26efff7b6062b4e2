"""A sample card: the image, the image with its forged region marked, and the explanation.

Used for the README and for eyeballing a dataset; works on any data root in the official layout
(the generated mini-MMTT or the real release).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmark.data.record import method_of
from benchmark.data.regions import mentioned_regions
from benchmark.data.synth.raster import box_dilate

SPLIT_FILES = ("test-mutilabel.json", "eval-mutilabel.json", "train-mutilabel.json")


def _find(data_dir: Path, image_id: str | None) -> dict:
    for name in SPLIT_FILES:
        path = data_dir / name
        if not path.is_file():
            continue
        for rec in json.loads(path.read_text(encoding="utf-8")):
            if image_id is None or rec["image_id"] == image_id:
                return rec
    where = f"image_id {image_id!r}" if image_id else "any record"
    raise FileNotFoundError(f"{data_dir}: {where} not found in {', '.join(SPLIT_FILES)}")


def _resolve(data_dir: Path, rel: str) -> Path:
    p = data_dir / rel
    return p if p.exists() or rel.startswith("dataset/") else data_dir / "dataset" / rel


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_sample_card(data_dir: Path, image_id: str | None, out_png: Path, *, panel: int = 384) -> None:
    """Draw image | image with the mask (red tint and outline) side by side, the explanation
    wrapped below, and save it as a PNG. `image_id=None` takes the first test record."""
    data_dir = Path(data_dir)
    rec = _find(data_dir, image_id)
    img = Image.open(_resolve(data_dir, rec["img_path"])).convert("RGB")
    mask = np.asarray(Image.open(_resolve(data_dir, rec["mask_path"])).convert("L")) > 127
    img = img.resize((panel, panel), Image.LANCZOS)
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((panel, panel), Image.NEAREST)) > 127
    arr = np.asarray(img).astype(np.float32)
    over = arr.copy()
    over[mask] = over[mask] * 0.55 + np.array([255.0, 20.0, 20.0]) * 0.45
    edge = mask & box_dilate(~mask, 2)  # a 2-px outline just inside the region
    over[edge] = (255, 230, 0)
    pad, gap = 16, 12
    head_font, text_font = _font(18), _font(16)
    width = 2 * panel + gap + 2 * pad
    chars = max(20, int((width - 2 * pad) / max(1.0, text_font.getlength("abcdefghij") / 10)))
    lines = textwrap.wrap(rec["caption"], width=chars)
    regions = ", ".join(sorted(mentioned_regions(rec["caption"]))) or "none"
    title = f"{rec['image_id']}  |  {method_of(rec['image_id'])}  |  forged area {mask.mean():.1%}"
    line_h = 22
    height = pad + 26 + panel + pad + line_h * (len(lines) + 2) + pad
    card = Image.new("RGB", (width, height), (250, 250, 247))
    draw = ImageDraw.Draw(card)
    draw.text((pad, pad), title, fill=(30, 30, 30), font=head_font)
    top = pad + 26
    card.paste(img, (pad, top))
    card.paste(Image.fromarray(np.clip(over, 0, 255).astype(np.uint8)), (pad + panel + gap, top))
    y = top + panel + pad
    for line in lines:
        draw.text((pad, y), line, fill=(20, 20, 20), font=text_font)
        y += line_h
    draw.text((pad, y + 6), f"regions named: {regions}", fill=(110, 110, 110), font=text_font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    card.save(out_png)
