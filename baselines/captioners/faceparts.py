"""Where the face parts are in an aligned MMTT crop: normalised (x0, y0, x1, y1) boxes.

The embedded mini-MMTT generator publishes the boxes of its mean face (`CANONICAL_PART_BOXES`);
real MMTT images are FFHQ / CelebA-HQ aligned crops with the same layout, so the same boxes
serve both. The fallback below is the layout of such an aligned crop, used only when the
generator package is unavailable.
"""

from __future__ import annotations

FALLBACK: dict[str, tuple[float, float, float, float]] = {
    "eye": (0.33, 0.43, 0.67, 0.50), "pupil": (0.35, 0.45, 0.65, 0.49), "eyebrow": (0.31, 0.38, 0.69, 0.43),
    "nose": (0.44, 0.46, 0.56, 0.61), "mouth": (0.42, 0.63, 0.58, 0.72), "lip": (0.43, 0.64, 0.57, 0.71),
    "ear": (0.20, 0.44, 0.80, 0.61), "cheek": (0.29, 0.50, 0.71, 0.67), "forehead": (0.31, 0.25, 0.69, 0.40),
    "chin": (0.43, 0.71, 0.57, 0.85), "jaw": (0.26, 0.58, 0.74, 0.86), "skin": (0.25, 0.25, 0.75, 0.95),
    "hair": (0.18, 0.04, 0.82, 0.40),
}


def part_boxes() -> dict[str, tuple[float, float, float, float]]:
    try:
        from benchmark.data.synth import CANONICAL_PART_BOXES
    except ImportError:
        return dict(FALLBACK)
    return {k: tuple(float(x) for x in v) for k, v in CANONICAL_PART_BOXES.items()}
