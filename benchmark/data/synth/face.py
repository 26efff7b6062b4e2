"""Procedural aligned face photographs with known part geometry.

A face is an `Identity` (who: skin, shape, features, hair, marks), a `Pose` (the small jitter of
an FFHQ/CelebA-HQ alignment) and a `Scene` (background, light, camera). `render_face` draws the
clean picture and, for every region label that applies, the boolean mask of the pixels showing
that part; `camera` turns the clean picture into a photograph (optics blur, sensor noise, a JPEG
round-trip), whose grain and compression history the forgeries later fail to reproduce.

Textures draw from random streams keyed by (texture_seed, part), so a face re-rendered with one
part changed differs from the original only where that part is: attribute edits and diffusion
re-synthesis rely on this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from benchmark.data.regions import REGIONS
from benchmark.data.synth.raster import (
    F32, Frame, Layer, _ramp, between, between_alpha, blur, blur_lines, ellipse, ellipse_alpha, jpeg_roundtrip,
    paint, rgb, shade, smooth_noise, stroke, stroke_alpha, superellipse, superellipse_alpha,
)

# --------------------------------------------------------------------------------------------
# Palettes (RGB in [0, 1])

SKIN_TONES = np.array([
    (0.98, 0.87, 0.78), (0.96, 0.80, 0.69), (0.92, 0.73, 0.60), (0.85, 0.64, 0.50),
    (0.76, 0.55, 0.40), (0.64, 0.44, 0.31), (0.52, 0.35, 0.24), (0.40, 0.26, 0.18),
    (0.30, 0.20, 0.14),
], F32)

HAIR_COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0.07, 0.06, 0.06), "dark brown": (0.17, 0.11, 0.08), "brown": (0.32, 0.21, 0.13),
    "light brown": (0.50, 0.36, 0.22), "blond": (0.80, 0.66, 0.42), "platinum": (0.90, 0.85, 0.72),
    "auburn": (0.45, 0.18, 0.09), "red": (0.66, 0.30, 0.13), "grey": (0.58, 0.57, 0.56),
    "white": (0.86, 0.85, 0.83),
}
IRIS_COLOURS: dict[str, tuple[float, float, float]] = {
    "dark": (0.16, 0.09, 0.05), "brown": (0.34, 0.19, 0.09), "hazel": (0.44, 0.34, 0.15),
    "green": (0.30, 0.44, 0.25), "blue": (0.30, 0.46, 0.66), "grey": (0.46, 0.51, 0.55),
}
CLOTH_COLOURS = np.array([
    (0.12, 0.13, 0.16), (0.85, 0.85, 0.83), (0.18, 0.25, 0.45), (0.55, 0.12, 0.14),
    (0.25, 0.40, 0.28), (0.60, 0.55, 0.45), (0.35, 0.35, 0.38), (0.75, 0.60, 0.30),
    (0.45, 0.30, 0.55), (0.20, 0.45, 0.55),
], F32)
HAIR_STYLES = ("bald", "buzz", "short", "medium", "long", "bun")

# Every region label of benchmark.data.regions can be shown by a rendered face (teeth and tongue
# with an open mouth, beard, scar ... when the person has them); `region_masks` gives the masks.
FACE_REGIONS: tuple[str, ...] = REGIONS

# Normalised (x0, y0, x1, y1) boxes of the main parts in the aligned frame (image fractions, y
# down): the median over sampled faces. Paired parts (eyes, brows, ears, cheeks) give the box
# around both; for hair, the crown (long hair also falls beside the face and neck).
# tests/test_synth.py checks them against freshly rendered faces.
CANONICAL_PART_BOXES: dict[str, tuple[float, float, float, float]] = {
    "eye": (0.32, 0.43, 0.68, 0.49),
    "pupil": (0.36, 0.45, 0.64, 0.48),
    "eyebrow": (0.32, 0.39, 0.68, 0.42),
    "nose": (0.45, 0.45, 0.55, 0.62),
    "mouth": (0.41, 0.64, 0.59, 0.71),
    "lip": (0.43, 0.66, 0.57, 0.70),
    "ear": (0.22, 0.48, 0.77, 0.61),
    "cheek": (0.30, 0.51, 0.70, 0.67),
    "forehead": (0.29, 0.28, 0.71, 0.41),
    "chin": (0.43, 0.74, 0.57, 0.84),
    "jaw": (0.25, 0.57, 0.75, 0.86),
    "skin": (0.25, 0.28, 0.75, 1.00),
    "hair": (0.19, 0.05, 0.81, 0.36),
}

_STREAMS = {n: i for i, n in enumerate((
    "background", "skin", "hair", "brow", "eye", "beard", "mustache", "freckle", "wrinkle",
    "scar", "cloth", "mouth",
))}


# --------------------------------------------------------------------------------------------
# Parameters

@dataclass(frozen=True)
class Identity:
    """Who is in the picture: everything a face swap changes and an attribute edit tweaks."""

    texture_seed: int
    tone: float
    skin: tuple[float, float, float]
    masc: float
    age: float
    # head outline
    head_w: float = 0.25
    head_top: float = 0.40
    head_bot: float = 0.36
    jaw_n: float = 2.2
    chin_taper: float = 0.2
    # eyes
    eye_y: float = -0.035
    eye_sep: float = 0.115
    eye_w: float = 0.046
    eye_top: float = 0.021
    eye_bot: float = 0.012
    eye_tilt: float = 0.0
    iris_r: float = 0.019
    iris: tuple[float, float, float] = IRIS_COLOURS["brown"]
    gaze: tuple[float, float] = (0.0, 0.0)
    lash: float = 0.5
    eye_shadow: tuple[float, float, float] | None = None
    # brows
    brow_gap: float = 0.058
    brow_th: float = 0.013
    brow_arch: float = 0.010
    brow_tilt: float = 0.0
    brow_colour: tuple[float, float, float] = (0.15, 0.1, 0.07)
    # nose
    nose_y: float = 0.085
    nose_w: float = 0.034
    # mouth
    mouth_y: float = 0.175
    mouth_w: float = 0.062
    lip_up: float = 0.013
    lip_lo: float = 0.018
    smile: float = 0.0
    mouth_open: float = 0.0
    teeth: bool = True
    lip_colour: tuple[float, float, float] = (0.7, 0.38, 0.38)
    # ears
    ear_y: float = 0.03
    ear_size: float = 1.0
    # hair
    hair_style: str = "short"  # one of HAIR_STYLES
    hair_colour: tuple[float, float, float] = HAIR_COLOURS["brown"]
    hairline: float = -0.23
    fringe: float = 0.0
    part_x: float = 0.05
    hair_volume: float = 0.03
    hair_length: float = 0.35
    curl: float = 0.0
    side_curtain: bool = False
    # facial hair and marks
    beard: str = "none"  # none | stubble | goatee | full
    mustache: bool = False
    beard_colour: tuple[float, float, float] = (0.15, 0.1, 0.07)
    freckles: int = 0
    wrinkles: float = 0.0
    dimple: int = 0  # 0 none, -1 left, +1 right
    scar: tuple[float, float, float, float] | None = None  # x, y, angle, length
    blush: float = 0.25
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  # local skin colour shift (edits)
    tint_region: str = "none"


@dataclass(frozen=True)
class Pose:
    """Alignment jitter: centre (image fractions), scale and in-plane rotation (radians)."""

    cx: float = 0.5
    cy: float = 0.5
    scale: float = 1.0
    angle: float = 0.0


@dataclass(frozen=True)
class Scene:
    """Background, clothing, light and camera of one photograph."""

    seed: int = 0
    bg_style: str = "gradient"
    bg_a: tuple[float, float, float] = (0.6, 0.65, 0.7)
    bg_b: tuple[float, float, float] = (0.3, 0.35, 0.4)
    cloth: tuple[float, float, float] = (0.2, 0.25, 0.45)
    light: tuple[float, float, float] = (-0.3, -0.35, 0.88)
    ambient: float = 0.55
    warmth: float = 0.0
    blur_px: float = 0.6
    noise: float = 3.0  # sensor noise, in 8-bit levels
    jpeg_q: int = 90


@dataclass
class FaceRender:
    """A clean rendered face, its region masks and the geometry that produced them."""

    planar: np.ndarray  # float32 3xHxW in [0, 1]
    parts: dict[str, np.ndarray]
    frame: Frame
    identity: Identity
    pose: Pose
    scene: Scene
    head: np.ndarray = field(repr=False, default=None)  # the head outline (bool)

    @property
    def image(self) -> np.ndarray:
        """The picture as HxWx3 float32 in [0, 1]."""
        return self.planar.transpose(1, 2, 0)

    def crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """An HxWx3 copy of a (row0, row1, col0, col1) box."""
        return np.ascontiguousarray(self.planar[:, box[0]:box[1], box[2]:box[3]].transpose(1, 2, 0))

    def part(self, name: str) -> np.ndarray:
        """The visible pixels of one region (all False when the face does not show it)."""
        m = self.parts.get(name)
        return m if m is not None else np.zeros(self.planar.shape[1:], bool)


def region_masks(face: FaceRender) -> dict[str, np.ndarray]:
    """Each of the 21 region labels -> the boolean mask of its visible pixels in this face.
    Eyes, lips, teeth, hair ... are the painted parts; cheeks, forehead, chin and jaw are areas
    of the visible skin defined by position; wrinkles, freckles, scar and dimple the areas of
    those marks."""
    return {r: face.part(r) for r in REGIONS}


# --------------------------------------------------------------------------------------------
# Sampling

def _pick(rng: np.random.Generator, options: dict[str, float]) -> str:
    keys = list(options)
    p = np.asarray([options[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _jit(rng: np.random.Generator, c, amount: float) -> tuple[float, float, float]:
    c = np.asarray(c, float) * (1.0 + rng.normal(0, amount, 3))
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))


def skin_colour(tone: float) -> np.ndarray:
    """The skin palette interpolated at tone in [0, 1] (light -> dark)."""
    t = float(np.clip(tone, 0, 1)) * (len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    return SKIN_TONES[i] + (SKIN_TONES[i + 1] - SKIN_TONES[i]) * (t - i)


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random, plausible person: proportions stay within human ranges, colours co-vary
    (dark skin mostly with dark hair and eyes; older people greyer and more wrinkled)."""
    tone = float(rng.uniform(0.0, 1.0) ** 1.15)
    skin = skin_colour(tone) * (1 + rng.normal(0, 0.025, 3))
    skin[0] += rng.normal(0.0, 0.015)  # redness
    skin = tuple(float(v) for v in np.clip(skin, 0.05, 1.0))
    masc = float(np.clip(rng.choice([0.1, 0.9]) + rng.normal(0, 0.12), 0, 1))
    age = float(18 + 57 * rng.beta(1.4, 2.6))
    old = np.clip((age - 35) / 35, 0, 1)

    if tone > 0.55:
        hair_name = _pick(rng, {"black": 6, "dark brown": 3, "brown": 1})
    else:
        hair_name = _pick(rng, {"black": 2, "dark brown": 3, "brown": 3, "light brown": 2,
                                "blond": 1.6, "platinum": 0.4, "auburn": 0.8, "red": 0.5})
    if rng.random() < 0.9 * old ** 1.5:
        hair_name = _pick(rng, {"grey": 2, "white": 1})
    if hair_name in ("grey", "white", "black", "platinum"):  # keep them neutral: vary brightness only
        hair = tuple(float(v) for v in np.clip(np.asarray(HAIR_COLOURS[hair_name]) * rng.uniform(0.9, 1.08), 0, 1))
    else:
        hair = _jit(rng, HAIR_COLOURS[hair_name], 0.06)
    if masc > 0.5:
        style = _pick(rng, {"bald": 0.05 + 0.35 * old, "buzz": 0.15, "short": 0.5, "medium": 0.2, "long": 0.07})
    else:
        style = _pick(rng, {"short": 0.12, "medium": 0.28, "long": 0.5, "bun": 0.1})
    iris_name = (_pick(rng, {"dark": 4, "brown": 5, "hazel": 1}) if tone > 0.5 else
                 _pick(rng, {"dark": 1, "brown": 4, "hazel": 2, "green": 1.5, "blue": 2.5, "grey": 1}))
    head_w = float(rng.uniform(0.232, 0.272) + 0.01 * masc)
    shape = rng.random()  # 0 round .. 1 long
    head_bot = float(0.33 + 0.07 * shape + rng.normal(0, 0.006))
    jaw_n = float(np.clip(1.9 + 0.7 * masc * rng.random() + rng.normal(0, 0.12), 1.75, 2.9))
    eye_w = float(rng.uniform(0.046, 0.056))
    eye_top = float(rng.uniform(0.016, 0.025) * (1 - 0.15 * old))
    lip_colour = np.asarray(skin) * np.array([0.88, 0.62, 0.62]) + np.array([0.12, 0.02, 0.04])
    lip_colour = tuple(float(v) for v in np.clip(lip_colour * rng.uniform(0.85, 1.0), 0, 1))
    mouth_open = float(rng.uniform(0.006, 0.02)) if rng.random() < 0.28 else 0.0
    beard = "none"
    mustache = False
    if masc > 0.5:
        beard = _pick(rng, {"none": 6, "stubble": 1.5, "goatee": 0.8, "full": 1.5})
        mustache = beard in ("goatee", "full") or rng.random() < 0.1
    brow_colour = np.asarray(hair) * (0.55 if hair_name not in ("grey", "white") else 0.75)
    if hair_name in ("blond", "platinum"):
        brow_colour = np.asarray(hair) * 0.6
    beard_colour = tuple(float(v) for v in np.clip(np.asarray(hair) * 0.85, 0, 1))
    scar = None
    if rng.random() < 0.07:
        where = rng.integers(0, 3)
        sx, sy = [(0.12, 0.08), (0.05, -0.15), (0.04, 0.27)][where]
        scar = (float(sx * rng.choice([-1, 1]) + rng.normal(0, 0.01)), float(sy + rng.normal(0, 0.01)),
                float(rng.uniform(-1.2, 1.2)), float(rng.uniform(0.035, 0.07)))
    hairline = float(rng.uniform(-0.25, -0.2) - 0.03 * masc * old)
    nose_y = float(rng.uniform(0.07, 0.1))
    return Identity(
        texture_seed=int(rng.integers(0, 2**31 - 1)), tone=tone, skin=skin, masc=masc, age=age,
        head_w=head_w, head_top=float(rng.uniform(0.38, 0.42)), head_bot=head_bot, jaw_n=jaw_n,
        chin_taper=float(rng.uniform(0.08, 0.26) - 0.06 * masc),
        eye_y=float(rng.normal(-0.035, 0.006)), eye_sep=float(rng.uniform(0.108, 0.13)),
        eye_w=eye_w, eye_top=eye_top, eye_bot=float(rng.uniform(0.010, 0.014)),
        eye_tilt=float(rng.normal(0.0, 0.08)), iris_r=float(eye_w * rng.uniform(0.38, 0.44)),
        iris=_jit(rng, IRIS_COLOURS[iris_name], 0.08),
        gaze=(float(rng.normal(0, 0.004)), float(rng.normal(0, 0.002))),
        lash=float(np.clip(1.0 - masc + rng.normal(0, 0.15), 0.1, 1.0)),
        brow_gap=float(rng.uniform(0.05, 0.066)), brow_th=float(rng.uniform(0.009, 0.016) + 0.004 * masc),
        brow_arch=float(rng.uniform(0.004, 0.016)), brow_tilt=float(rng.normal(0, 0.004)),
        brow_colour=tuple(float(v) for v in np.clip(brow_colour, 0, 1)),
        nose_y=nose_y, nose_w=float(rng.uniform(0.028, 0.04) + 0.004 * masc),
        mouth_y=float(nose_y + rng.uniform(0.078, 0.1)), mouth_w=float(rng.uniform(0.064, 0.084)),
        lip_up=float(rng.uniform(0.011, 0.018) * (1 - 0.2 * old)),
        lip_lo=float(rng.uniform(0.015, 0.025) * (1 - 0.2 * old)),
        smile=float(rng.normal(0.002, 0.004)), mouth_open=mouth_open, teeth=bool(rng.random() < 0.9),
        lip_colour=lip_colour, ear_y=float(rng.normal(0.03, 0.006)), ear_size=float(rng.uniform(0.9, 1.1)),
        hair_style=style, hair_colour=hair, hairline=hairline,
        fringe=float(rng.uniform(0.06, 0.11)) if (style in ("short", "medium", "long") and rng.random() < 0.3) else 0.0,
        part_x=float(rng.choice([-1, 1]) * rng.uniform(0.0, 0.1)), hair_volume=float(rng.uniform(0.015, 0.05)),
        hair_length=float(rng.uniform(0.25, 0.6)), curl=float(rng.random() ** 3),
        side_curtain=bool(style in ("long", "medium") and rng.random() < 0.5),
        beard=beard, mustache=bool(mustache), beard_colour=beard_colour,
        freckles=int(rng.integers(60, 180)) if rng.random() < (0.25 if tone < 0.45 else 0.05) else 0,
        wrinkles=float(np.clip((age - 38) / 30, 0, 1) * rng.uniform(0.5, 1.0)),
        dimple=int(rng.choice([-1, 1])) if rng.random() < 0.1 else 0, scar=scar,
        blush=float(rng.uniform(0.1, 0.45)),
    )


def sample_pose(rng: np.random.Generator, source: str = "celeb512") -> Pose:
    """FFHQ crops are looser around the face than CelebA-HQ ones; both are roughly aligned."""
    base = 0.96 if source == "FFHQ512" else 1.02
    return Pose(cx=float(0.5 + rng.normal(0, 0.012)), cy=float(0.5 + rng.normal(0, 0.012)),
                scale=float(base * rng.uniform(0.94, 1.06)), angle=float(rng.normal(0, 0.05)))


def sample_scene(rng: np.random.Generator, source: str = "celeb512") -> Scene:
    """Studio-like plain backdrops are more frequent in CelebA-HQ, outdoor blur in FFHQ."""
    outdoor = rng.random() < (0.65 if source == "FFHQ512" else 0.3)
    hue = rng.random(3)
    if outdoor:
        a = np.clip(0.3 + 0.45 * hue + 0.15 * rng.random(), 0, 1)
        a = a + (a.mean() - a) * rng.uniform(0.2, 0.6)
        b = np.clip(a * rng.uniform(0.4, 0.9, 3) + rng.normal(0, 0.1, 3), 0, 1)
        style = "blobs"
    else:
        g = rng.uniform(0.25, 0.9)
        a = np.clip(g + 0.15 * (hue - 0.5), 0, 1)
        b = np.clip(a * rng.uniform(0.5, 0.85), 0, 1)
        style = "gradient"
    lx = float(rng.uniform(-0.7, 0.7))
    ly = float(rng.uniform(-0.55, 0.05))
    lz = math.sqrt(max(0.05, 1 - lx * lx - ly * ly))
    return Scene(
        seed=int(rng.integers(0, 2**31 - 1)), bg_style=style,
        bg_a=tuple(float(v) for v in a), bg_b=tuple(float(v) for v in b),
        cloth=tuple(float(v) for v in np.clip(CLOTH_COLOURS[rng.integers(len(CLOTH_COLOURS))]
                                               * rng.uniform(0.8, 1.15), 0, 1)),
        light=(lx, ly, lz), ambient=float(rng.uniform(0.45, 0.7)), warmth=float(rng.normal(0, 0.03)),
        blur_px=float(rng.uniform(0.45, 0.85)), noise=float(rng.uniform(2.0, 4.5)),
        jpeg_q=int(rng.integers(78, 94)),
    )


def mean_identity() -> Identity:
    """An average-looking face: the parameter means of `sample_identity`."""
    return Identity(texture_seed=0, tone=0.35, skin=tuple(float(v) for v in skin_colour(0.35)), masc=0.5,
                    age=35.0, head_w=0.257, head_bot=0.365, chin_taper=0.14, eye_sep=0.119, eye_w=0.051,
                    iris_r=0.021, mouth_w=0.074, lip_up=0.0145, lip_lo=0.02, nose_w=0.036, mouth_y=0.174)


# --------------------------------------------------------------------------------------------
# Rendering

class _Parts:
    """Region masks, updated in painting order (a part painted over another hides it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.m: dict[str, np.ndarray] = {}

    def add(self, name: str, layer: Layer | None, thr: float = 0.5) -> None:
        if layer is None:
            return
        m = self.m.get(name)
        if m is None:
            m = self.m[name] = np.zeros((self.size, self.size), bool)
        m[layer.win] |= layer.a > thr

    def add_mask(self, name: str, mask: np.ndarray) -> None:
        if name in self.m:
            self.m[name] |= mask
        else:
            self.m[name] = mask.copy()

    def cover(self, layer: Layer | None, names, thr: float = 0.5) -> None:
        if layer is None:
            return
        hide = layer.a > thr
        for n in names:
            if n in self.m:
                self.m[n][layer.win] &= ~hide


def _orm(mask: np.ndarray, layer: Layer | None, thr: float = 0.25) -> None:
    if layer is not None:
        mask[layer.win] |= layer.a > thr


_MEMO: dict[tuple, object] = {}


def _memo(key: tuple, make):
    """Per-process memo of pure, position-only fields (backdrop, grain, mottling): the second
    render of a face in a forgery reuses them instead of recomputing. Values are read-only."""
    hit = _MEMO.get(key)
    if hit is None:
        if len(_MEMO) > 48:
            _MEMO.clear()
        hit = _MEMO[key] = make()
        for a in hit if isinstance(hit, tuple) else (hit,):
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
    return hit


def _srng(ident: Identity, stream: str) -> np.random.Generator:
    return np.random.default_rng([ident.texture_seed, _STREAMS[stream]])


class _Painter:
    """Paints one face into a planar (3, H, W) float image, part by part, back to front."""

    def __init__(self, ident: Identity, pose: Pose, scene: Scene, size: int,
                 clip: tuple[int, int, int, int] | None = None) -> None:
        self.id = ident
        self.scene = scene
        self.size = size
        self.fr = Frame(size, pose.cx, pose.cy, pose.scale, pose.angle, clip=clip)
        self.u = size / 256.0  # pixel distances below are given for 256 px
        self.img = np.zeros((3, size, size), F32)
        self.parts = _Parts(size)
        self.skin = np.asarray(ident.skin, F32)
        lx, ly, lz = scene.light
        self.light = (F32(lx), F32(ly), F32(lz))
        self.head_layer: Layer | None = None
        self.head_d: np.ndarray | None = None
        self._head_geo: tuple | None = None

    def s(self, px: float) -> float:
        return px * self.u

    def visible(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Whether a face-frame box reaches the area being drawn (skips parts a clipped
        re-render does not need)."""
        return self.fr.clip is None or self.fr.window(x0, y0, x1, y1, pad=4) is not None

    # ---- scene ------------------------------------------------------------------------------
    def background(self) -> None:
        sc = self.scene  # keyed on what the backdrop depends on: a relit scene shares it
        full = _memo(("bg", sc.seed, sc.bg_style, sc.bg_a, sc.bg_b, self.size), self._background)
        r, c = self.fr.area()
        self.img[:, r, c] = full[:, r, c]

    def _background(self) -> np.ndarray:
        """Backdrop, computed at quarter resolution (it is smooth)."""
        sc = self.scene
        n = max(16, self.size // 4)
        rng = np.random.default_rng([sc.seed, _STREAMS["background"]])
        a = rgb(sc.bg_a)
        b = rgb(sc.bg_b)
        y = np.linspace(0, 1, n, dtype=F32)[:, None]
        x = np.linspace(-1, 1, n, dtype=F32)[None, :]
        ang = rng.uniform(-0.6, 0.6)
        t = np.clip(y * math.cos(ang) + x * math.sin(ang) * 0.5, 0, 1)
        img = a + (b - a) * t
        if sc.bg_style == "blobs":
            field_ = smooth_noise(rng, (n, n), int(rng.integers(4, 7)), channels=3)
            col = rng.uniform(0.15, 0.85, 3).astype(F32)
            col = rgb(col + (col.mean() - col) * F32(0.4))
            w = np.clip(smooth_noise(rng, (n, n), 4) * 0.6 + 0.2, 0, 1)
            img = img + (col - img) * w * F32(0.6) + field_ * F32(0.06)
        else:
            r = np.sqrt((x * 0.9) ** 2 + (y - 0.45) ** 2)
            img = img * (F32(1.08) - F32(0.18) * r)  # studio vignette/spot
        small = np.clip(img, 0, 1)
        full = np.empty((3, self.size, self.size), F32)
        for c in range(3):
            full[c] = np.asarray(Image.fromarray(small[c]).resize((self.size, self.size), Image.BILINEAR))
        return full

    def _grain(self, stream: str) -> np.ndarray:
        """Per-pixel grain in [0, 1] for hairy textures (same in every re-render)."""
        return _memo(("grain", self.id.texture_seed, stream, self.size), lambda: self._make_grain(stream))

    def _make_grain(self, stream: str) -> np.ndarray:
        g = np.random.default_rng([self.id.texture_seed, _STREAMS[stream], 1]).random(
            (self.size, self.size), dtype=F32)
        if self.u > 1.2:
            g = blur(g, 0.5 * self.u)
            g = (g - g.mean()) / (g.std() + F32(1e-6)) * F32(0.29) + F32(0.5)
        return g

    def clothes(self) -> None:
        fr, idt = self.fr, self.id
        rng = np.random.default_rng([self.scene.seed, _STREAMS["cloth"]])
        cloth = rgb(self.scene.cloth)
        body = superellipse(fr, 0.0, 0.7 + idt.head_bot - 0.36, 0.56 + 0.08 * idt.masc, 0.26, n=4.0)
        if body is not None:
            x, y = fr.coords(body.win)
            lx = self.light[0]
            sh = F32(0.8) + F32(0.25) * np.clip(-x * lx * 2 + 0.5, 0, 1)
            fold = _memo(("fold", self.scene.seed, self.size),
                         lambda: F32(1) + F32(0.05) * smooth_noise(rng, (self.size, self.size), 8))[body.win]
            paint(self.img, body, cloth * (sh * fold))
        neck_col = rgb(self.skin * F32(0.86))
        chin = idt.head_bot - 0.02
        neck = superellipse(fr, 0.0, chin + 0.16, idt.head_w * (0.56 + 0.1 * idt.masc), 0.3, n=4.0)
        if neck is not None:
            x, y = fr.coords(neck.win)
            f = F32(0.62) + F32(0.38) * np.clip((y - chin + 0.02) / 0.14, 0, 1)
            f = f * (F32(0.9) + F32(0.1) * np.clip(1 - np.abs(x) / (idt.head_w * 0.55), 0, 1))
            paint(self.img, neck, neck_col * f)
            self.parts.add("skin", neck)

    # ---- hair -------------------------------------------------------------------------------
    def _hair_colour(self, win, need: np.ndarray | None = None) -> np.ndarray:
        """Hair colour (3, h, w) on a window, evaluated only where `need` is set (zero
        elsewhere): a function of position alone, so that back hair, fringe and locks match and
        a clipped re-render reproduces it."""
        x, y = self.fr.coords(win)
        wave = self._hair_profile_memo()[1][win]
        if need is None:
            return self._hair_values(x, y, wave)
        out = np.zeros((3,) + x.shape, F32)
        out[:, need] = self._hair_values(x[need], y[need], wave[need])
        return out

    def _hair_profile_memo(self):
        idt = self.id
        return _memo(("hair", idt.texture_seed, idt.hair_style, idt.curl, self.size), self._hair_profile)

    def _hair_values(self, x: np.ndarray, y: np.ndarray, wave: np.ndarray) -> np.ndarray:
        """Strands radiate from the parting: brightness is a random 1-D profile over the angle
        (no periodic pattern, so no moire), warped by a smooth field for waves and curls."""
        idt = self.id
        table, _, phase = self._hair_profile_memo()
        px, py = F32(idt.part_x), F32(-0.62)
        dx, dy = x - px, y - py
        a = np.arctan2(dx, dy)
        a += wave
        r = np.sqrt(dx * dx + dy * dy)
        if idt.curl > 0.05:
            a += F32(0.02 * idt.curl) * np.sin(r * F32(55.0) + F32(phase))
        n = len(table)
        idx = (a * F32(n / (2 * math.pi)) + F32(4.5 * n)).astype(np.int32)
        np.bitwise_and(idx, n - 1, out=idx)
        lx, ly, _ = self.light
        t = (r - F32(0.4)) * F32(1 / 0.07)
        sheen = np.exp(-t * t)
        sheen *= np.clip(F32(0.6) - (x * lx + (y + F32(0.3)) * ly) * F32(2.5), 0, 1)
        f = table[idx]
        # strands converge towards the parting: soften them there instead of a starburst
        near = np.clip((r - F32(0.12)) * F32(8.0), 0, 1)
        f -= F32(1)
        f *= near
        f += F32(1)
        f += F32(0.55) * sheen
        f *= F32(0.62) + F32(0.38) * np.clip(F32(1.1) - np.abs(x) / F32(idt.head_w + 0.06), 0, 1)
        lift = F32(0.06) * sheen + F32(0.02)
        col = np.asarray(idt.hair_colour, F32).reshape((3,) + (1,) * f.ndim) * f
        col += lift
        return np.clip(col, 0, 1, out=col)

    def _hair_profile(self):
        """Brightness over the strand angle: fine strands (2-3 samples wide) on broad locks."""
        idt = self.id
        rng = _srng(idt, "hair")
        n = 2048 if idt.hair_style != "buzz" else 4096
        prof = rng.standard_normal(n).astype(F32)
        prof = (prof + np.roll(prof, 1) + np.roll(prof, -1)) / F32(1.7)
        coarse = rng.standard_normal(128).astype(F32)
        locks = np.interp(np.arange(n) * (128 / n), np.arange(129), np.append(coarse, coarse[0])).astype(F32)
        wave = smooth_noise(rng, (self.size, self.size), 6) * F32(0.02 + 0.05 * idt.curl)
        return F32(1.0) + F32(0.16) * prof + F32(0.14) * locks, wave, float(rng.uniform(0, 6))

    def back_hair(self) -> None:
        idt = self.id
        if idt.hair_style not in ("medium", "long", "bun", "short"):
            return
        fr = self.fr
        extra = idt.hair_volume + (0.045 if idt.hair_style in ("medium", "long") else 0.015)
        below = {"short": 0.1, "bun": 0.12, "medium": 0.3, "long": 0.3 + idt.hair_length}[idt.hair_style]
        lay = superellipse(fr, 0.0, -0.02, idt.head_w + extra, idt.head_top + idt.hair_volume,
                           n=2.0, ry_below=below, n_below=2.6 if idt.hair_style in ("medium", "long") else 2.0,
                           taper=0.25 if idt.hair_style == "long" else 0.0, soft=self.s(1.5))
        if lay is None:
            return
        # the head is drawn over the inside of the back hair: colour only what stays visible
        hidden = self.head_d[lay.win] > F32(3 * fr.px)
        lay.a[hidden] = 0.0
        paint(self.img, lay, self._hair_colour(lay.win, lay.a > 0))
        self.parts.add("hair", lay)
        if idt.hair_style == "bun":
            bun = ellipse(fr, idt.part_x * 0.3, -idt.head_top - 0.05, 0.09, 0.075)
            if bun is not None:
                paint(self.img, bun, self._hair_colour(bun.win))
                self.parts.add("hair", bun)

    def front_hair(self) -> None:
        idt = self.id
        if idt.hair_style == "bald":
            return
        fr = self.fr
        w = idt.head_w + 0.02 + idt.hair_volume * 0.6
        top = idt.head_top + idt.hair_volume
        win = fr.window(-w, -0.02 - top, w, 0.12 + 0.2 * idt.hair_length)
        if win is None:
            return
        x, y = fr.coords(win)
        ax = np.abs(x) / F32(idt.head_w)
        hl = F32(idt.hairline) + F32(0.22) * np.minimum(ax, F32(1.2)) ** 3
        if idt.fringe:
            centre = np.exp(-((x - F32(idt.part_x * 0.5)) / F32(0.16)) ** 2)
            jag = F32(0.01) * np.sin(x * F32(95.0) + F32(idt.texture_seed % 7))
            hl = np.maximum(hl, F32(idt.hairline + idt.fringe + 0.02) * centre + hl * (1 - centre) + jag * centre)
        outer = (np.abs(x) / F32(w)) ** 2 + (np.maximum(-(y + F32(0.02)), 0) / F32(top)) ** 2
        d_outer = (F32(1) - np.sqrt(outer)) * F32(w)
        d_line = hl - y
        edge = F32(fr.px * self.s(1.5))
        a = np.clip(np.minimum(d_outer, d_line) / edge + F32(0.5), 0, 1) * (y < 0.12)
        if idt.side_curtain:
            # locks falling over the sides of the face, thinning out towards their ends
            y_end = F32(0.04 + 0.2 * idt.hair_length)
            cov = F32(0.045) * np.clip((y_end - y) / F32(0.12), 0, 1) ** F32(0.7)
            face_in = superellipse_alpha(fr, x, y, 0.0, -0.02, F32(idt.head_w) - cov, idt.head_top, n=2.0,
                                         ry_below=idt.head_bot, n_below=idt.jaw_n, taper=idt.chin_taper,
                                         soft=self.s(1.5))
            a = np.maximum(a, (F32(1) - face_in) * np.clip(d_outer / F32(fr.px) + 0.5, 0, 1) * (y < y_end))
        col = self._hair_colour(win, a > 0)
        # ragged edge: strands thin out where the alpha ramps
        tex = np.clip(col.mean(0) / max(1e-3, float(np.mean(idt.hair_colour)) * 1.2), 0, 1)
        full = F32(1.0 if idt.hair_style != "buzz" else 0.75)
        a = np.where(a >= 0.999, full, np.clip(a * (F32(0.75) + F32(0.5) * tex), 0, 1) * full).astype(F32)
        lay = Layer(win, a)
        # the hair casts a soft shadow on the forehead just below the hairline
        sh = np.clip((y - hl) / F32(0.025), 0, 1)
        shadow = Layer(win, ((F32(1) - sh) * (d_outer > 0) * (F32(1) - a)).astype(F32))
        shade(self.img, shadow, 0.82)
        paint(self.img, lay, col)
        self.parts.add("hair", lay)
        self.parts.cover(lay, ("skin", "eyebrow", "ear", "eye", "pupil", "wrinkle", "scar", "freckle"))

    # ---- head -------------------------------------------------------------------------------
    def ears(self) -> None:
        idt = self.id
        fr = self.fr
        for side in (-1, 1):
            ex = side * (idt.head_w * 0.985)
            ey = idt.ear_y
            s = idt.ear_size
            if not self.visible(ex - 0.08 * s, ey - 0.08 * s, ex + 0.08 * s, ey + 0.08 * s):
                continue
            ear = ellipse(fr, ex, ey, 0.034 * s, 0.07 * s, angle=side * 0.12)
            if ear is None:
                continue
            x, y = fr.coords(ear.win)
            f = F32(0.83) + F32(0.1) * np.clip(F32(side) * (x - F32(ex)) / F32(0.03), -1, 1)
            paint(self.img, ear, rgb(self.skin * np.array([0.95, 0.86, 0.84], F32)) * f)
            inner = ellipse(fr, ex + side * 0.008 * s, ey + 0.006, 0.016 * s, 0.045 * s, angle=side * 0.12,
                            soft=self.s(3))
            shade(self.img, inner, 0.72)
            self.parts.add("ear", ear)
            self.parts.cover(ear, ("hair",))

    def head_shape(self, grow: float = 0.0, grow_below: float | None = None, soft: float = 1.2) -> Layer | None:
        idt = self.id
        gb = grow if grow_below is None else grow_below
        return superellipse(self.fr, 0.0, -0.02, idt.head_w + grow, idt.head_top + grow, n=2.0,
                            ry_below=idt.head_bot + gb, n_below=idt.jaw_n, taper=idt.chin_taper, soft=soft)

    def head_outline(self) -> None:
        """One signed-distance field (face units, positive inside) for the head outline: it
        shapes the head, hides the back hair behind it, bounds the beard and the jaw band."""
        idt = self.id
        fr = self.fr
        hy = -0.02
        self.head_d = np.full((self.size, self.size), -1.0, F32)
        m = 0.03
        win = fr.window(-idt.head_w - m, hy - idt.head_top - m, idt.head_w + m, hy + idt.head_bot + m)
        if win is None:
            return
        x, y = fr.coords(win)
        below = y > F32(hy)
        ry = np.where(below, F32(idt.head_bot), F32(idt.head_top))
        t = np.clip((y - F32(hy)) / ry, 0, 1)
        rx = F32(idt.head_w) * (F32(1) - F32(idt.chin_taper) * t * t)
        ax, ay = np.abs(x) / rx, np.abs(y - F32(hy)) / ry
        n = F32(idt.jaw_n)
        rad = np.where(below, (ax ** n + ay ** n) ** (F32(1) / n), np.sqrt(ax * ax + ay * ay))
        d = (F32(1) - rad) * np.minimum(rx, ry)
        self.head_d[win] = d
        self._head_geo = (win, ry)

    def head(self) -> None:
        idt = self.id
        fr = self.fr
        rng = _srng(idt, "skin")
        hy = -0.02
        if self._head_geo is None:
            return
        win, ry = self._head_geo
        x, y = fr.coords(win)
        lay = Layer(win, _ramp(self.head_d[win], 1.2 * fr.px))
        self.head_layer = lay
        nx = x / F32(idt.head_w)
        ny = (y - F32(hy)) / ry
        nz = np.sqrt(np.clip(F32(1) - F32(0.8) * (nx * nx + ny * ny), 0.02, 1))
        lx, ly, lz = self.light
        lam = np.clip(nx * lx * F32(0.9) + ny * ly * F32(0.9) + nz * lz, 0, 1)
        amb = F32(self.scene.ambient)
        sh = (amb + (1 - amb) * lam) / (amb + (1 - amb) * lz)
        # cheekbone light and the hollow below it
        ax = np.abs(x)
        cx = F32(idt.eye_sep + 0.035)
        sh = sh * (F32(1) + F32(0.05) * np.exp(-((ax - cx) ** 2 / F32(0.0025) + (y - F32(0.02)) ** 2 / F32(0.0012)))
                   - F32(0.05) * np.exp(-((ax - cx * F32(1.1)) ** 2 / F32(0.002) + (y - F32(0.12)) ** 2 / F32(0.003))))
        mottling = _memo(("mottle", idt.texture_seed, self.size),
                         lambda: F32(1) + F32(0.03) * smooth_noise(rng, (self.size, self.size), 12, channels=3))
        mottling = mottling[:, lay.win[0], lay.win[1]]
        col = rgb(self.skin) * mottling * sh
        # a warmer, redder centre (cheeks, nose) and cooler temples
        cheeks = np.exp(-((ax - F32(idt.eye_sep)) ** 2 / F32(0.004) + (y - F32(0.06)) ** 2 / F32(0.003)))
        col = col * (F32(1) + rgb((0.0, -0.09, -0.07)) * F32(idt.blush) * cheeks)
        if idt.tint_region != "none":
            col = col + rgb(idt.tint) * self._tint_weight(x, y)
        paint(self.img, lay, np.clip(col, 0, 1))
        self.parts.add("skin", lay)
        self.parts.cover(lay, ("hair", "ear"))

    def _tint_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        idt = self.id
        r = idt.tint_region
        if r == "face":
            return np.ones_like(x)
        if r == "cheek":
            d = ((np.abs(x) - F32(idt.eye_sep)) / F32(0.085)) ** 2 + ((y - F32(0.07)) / F32(0.08)) ** 2
        elif r == "forehead":
            d = (x / F32(0.17)) ** 2 + ((y - F32(idt.eye_y - 0.13)) / F32(0.08)) ** 2
        else:  # lower face
            d = (x / F32(0.2)) ** 2 + ((y - F32(idt.mouth_y + 0.03)) / F32(0.14)) ** 2
        w = np.clip(F32(1.3) - d, 0, 1)
        return w * w

    def nose(self) -> None:
        idt = self.id
        fr = self.fr
        nt, nw, ey = idt.nose_y, idt.nose_w, idt.eye_y
        if not self.visible(-nw - 0.03, ey - 0.01, nw + 0.03, nt + 0.04):
            return
        lx = self.light[0]
        for side in (-1, 1):
            dark = 0.86 if side * lx > 0 else 0.74
            bridge = stroke(fr, [(side * 0.019, ey + 0.012), (side * 0.021, (ey + nt) / 2),
                                 (side * (nw * 0.8), nt - 0.012)], [0.012, 0.014, 0.018], soft=self.s(5))
            shade(self.img, bridge, dark + 0.05)
        tip = ellipse(fr, -0.004 * np.sign(lx), nt - 0.012, 0.016, 0.022, soft=self.s(6))
        shade(self.img, tip, 1.1)
        for side in (-1, 1):
            ala = ellipse(fr, side * (nw - 0.011), nt + 0.002, 0.016, 0.013, soft=self.s(3))
            shade(self.img, ala, 0.92 if side * lx > 0 else 0.84)
            crease = stroke(fr, [(side * (nw - 0.019), nt - 0.016), (side * (nw + 0.001), nt - 0.004),
                                 (side * (nw - 0.002), nt + 0.01), (side * (nw - 0.012), nt + 0.015)],
                            [0.0035, 0.004, 0.004, 0.0025], soft=self.s(1.6))
            shade(self.img, crease, 0.72)
            nos = ellipse(fr, side * nw * 0.42, nt + 0.012, 0.011, 0.0055, angle=side * 0.35, soft=self.s(1.4))
            paint(self.img, nos, self.skin * F32(0.28))
        under = ellipse(fr, 0.0, nt + 0.024, 0.027, 0.008, soft=self.s(5))
        shade(self.img, under, 0.8)
        region = superellipse(fr, 0.0, (ey + nt) / 2 + 0.008, nw + 0.012, (nt - ey) / 2 + 0.026, n=2.4)
        self.parts.add("nose", region)

    def eyes(self) -> None:
        """Both eyes at once: their shapes are mirror images, so they are drawn in |x| on one
        window; only the iris position (gaze) and the catch-light are per eye."""
        idt = self.id
        fr = self.fr
        lx = self.light[0]
        rng = _srng(idt, "eye")
        phase = rng.uniform(0, 6, 2)
        ex, ey, w = idt.eye_sep, idt.eye_y, idt.eye_w
        ht, hb, tilt = idt.eye_top, idt.eye_bot, idt.eye_tilt
        win = fr.window(-ex - 1.6 * w - 0.03, ey - 3 * ht - 0.035, ex + 1.6 * w + 0.03, ey + hb + 0.04)
        if win is None:
            return
        x, y = fr.coords(win)
        ax = np.abs(x)
        right = x > 0

        def top(xx):
            u = (xx - ex) / w + 0.15
            return ey - tilt * (xx - ex) - ht * np.clip(1 - u * u, 0, 1) ** 0.8

        def bottom(xx):
            u = (xx - ex) / w - 0.1
            return ey - tilt * (xx - ex) + hb * np.clip(1 - u * u, 0, 1) ** 0.9

        def layer(a: np.ndarray) -> Layer:
            return Layer(win, a)

        shade(self.img, layer(ellipse_alpha(fr, ax, y, ex, ey - 0.012, w * 1.5, ht * 2.4 + 0.01, soft=self.s(10))), 0.9)
        if idt.eye_shadow is not None:
            lid = ellipse_alpha(fr, ax, y, ex + 0.006, ey - ht - 0.004, w * 1.15, ht * 1.2 + 0.006, soft=self.s(5))
            paint(self.img, layer(lid), idt.eye_shadow, opacity=0.55)
        shade(self.img, layer(ellipse_alpha(fr, ax, y, ex, ey + hb + 0.011, w * 0.85, 0.011, soft=self.s(4))), 0.94)
        crease = stroke_alpha(fr, ax, y, [(ex - w * 0.75, ey - ht * 0.6 - 0.006), (ex, ey - ht - 0.011),
                                          (ex + w * 0.8, ey - ht * 0.5 - 0.006)], 0.004, soft=self.s(3))
        shade(self.img, layer(crease), 0.82)
        opening = layer(between_alpha(fr, ax, y, ex - w, ex + w, top, bottom, soft=1.0, end_soft=self.s(1.5)))
        self.parts.add("eye", layer(ellipse_alpha(fr, ax, y, ex, ey - (ht - hb) / 2, w * 1.18, (ht + hb) / 2 + 0.009)))
        self._eyeballs(opening, ax, y, right, top, phase, lx)
        # lashes / lid line, thicker towards the outer corner, with a small flick
        lw = 0.0025 + 0.004 * idt.lash

        def lash_w(xx):
            return lw * (0.45 + 0.9 * np.clip(((xx - ex) / w + 1) / 2, 0, 1))

        lash = between_alpha(fr, ax, y, ex - w, ex + w, lambda xx: top(xx) - 0.0008 - lash_w(xx),
                             lambda xx: top(xx) + 0.0006, soft=1.2, end_soft=1.5)
        corner = (ex + w, float(top(np.array(ex + w))) - 0.001)
        flick = (ex + w * (1.12 + 0.15 * idt.lash), corner[1] - 0.003 - 0.006 * idt.lash)
        lash = np.maximum(lash, stroke_alpha(fr, ax, y, [corner, flick], [lw * 1.2, lw * 0.4], soft=1.2))
        paint(self.img, layer(lash), (0.06, 0.045, 0.04), opacity=0.92)
        low = between_alpha(fr, ax, y, ex - w * 0.85, ex + w * 0.85, bottom, lambda xx: bottom(xx) + 0.0022,
                            soft=self.s(1.5), end_soft=self.s(4))
        shade(self.img, layer(low), 0.85)

    def _eyeballs(self, opening: Layer, ax, y, right, top, phase, lx) -> None:
        idt = self.id
        fr = self.fr
        ex, ey, w, ht = idt.eye_sep, idt.eye_y, idt.eye_w, idt.eye_top
        u = (ax - F32(ex)) / F32(w)
        paint(self.img, opening, rgb((0.94, 0.92, 0.89)) * (F32(0.78) + F32(0.22) * np.clip(1 - u * u, 0, 1)))
        side = np.where(right, F32(1), F32(-1))
        g = F32(idt.gaze[0])
        ix = F32(ex) + side * g  # the iris centre, in |x|
        iy = F32(ey + idt.gaze[1] + 0.002)
        dx, dy = ax - ix, y - iy
        rr = np.sqrt(dx * dx + dy * dy)
        r = F32(idt.iris_r)
        px = F32(fr.px)
        iris = Layer(opening.win, (np.clip((r - rr) / px + F32(0.5), 0, 1) * opening.a).astype(F32))
        q = rr / r
        th = np.arctan2(dy, dx)
        ph = np.where(right, F32(phase[1]), F32(phase[0]))
        f = (F32(0.72) + F32(0.5) * np.exp(-((q - F32(0.5)) / F32(0.22)) ** 2)
             + F32(0.1) * np.sin(th * F32(23.0) + ph) * q)
        f = f * (F32(1) - F32(0.45) * np.clip((q - F32(0.82)) / F32(0.18), 0, 1))
        paint(self.img, iris, rgb(idt.iris) * f)
        pupil = np.clip((r * F32(0.42) - rr) / px + F32(0.5), 0, 1) * opening.a
        paint(self.img, Layer(opening.win, pupil.astype(F32)), (0.03, 0.025, 0.025))
        # the upper lid shades the eyeball
        lidsh = np.clip((y - top(np.clip(ax, ex - w, ex + w))) / F32(ht * 0.7), 0, 1)
        shade(self.img, opening, F32(1) - F32(0.4) * (F32(1) - lidsh))
        # catch-light on the side of the light (the same side in both eyes)
        hx = F32(ex) + side * (g + F32(0.35) * r * F32(1 if lx > 0 else -1))
        hy = iy - F32(0.4) * r
        hl = np.clip((r * F32(0.22) - np.sqrt((ax - hx) ** 2 + (y - hy) ** 2)) / px + F32(0.5), 0, 1)
        paint(self.img, Layer(opening.win, (hl * opening.a).astype(F32)), (1.0, 1.0, 1.0), opacity=0.85)
        self.parts.add("pupil", iris)
        self.parts.cover(opening, ("skin",))

    def brows(self) -> None:
        idt = self.id
        fr = self.fr
        rng = _srng(idt, "brow")
        for side in (-1, 1):
            xi = side * (idt.eye_sep - idt.eye_w * 0.95)
            xo = side * (idt.eye_sep + idt.eye_w * 1.3)
            by = idt.eye_y - idt.brow_gap
            arch, th, tilt = idt.brow_arch, idt.brow_th, idt.brow_tilt

            def centre(x, xi=xi, xo=xo):
                t = np.clip((x - xi) / (xo - xi), 0, 1)
                return by - arch * np.sin(np.pi * t ** 0.75) + tilt * (2 * t - 1) + 0.004 * t

            def thick(x, xi=xi, xo=xo):
                t = np.clip((x - xi) / (xo - xi), 0, 1)
                return th * (1.0 - 0.6 * t ** 1.6) * (0.75 + 0.25 * np.clip(t * 6, 0, 1))

            x0, x1 = min(xi, xo), max(xi, xo)
            if not self.visible(x0, by - arch - th - 0.03, x1, by + th + 0.03):
                rng.uniform(size=2)  # keep the stream aligned with a full render
                continue
            lay = between(fr, x0, x1, lambda x: centre(x) - thick(x) / 2, lambda x: centre(x) + thick(x) / 2,
                          by - arch - th - abs(tilt) - 0.02, by + th + abs(tilt) + 0.02, soft=self.s(1.3),
                          end_soft=self.s(3))
            k = F32(rng.uniform(500, 650))
            ph = F32(rng.uniform(0, 6))
            if lay is None:
                continue
            x, y = fr.coords(lay.win)
            hairs = np.sin((x * F32(side) * F32(0.8) - y * F32(0.6)) * k + ph)
            lay.a = (lay.a * (F32(0.72) + F32(0.28) * hairs)).astype(F32)
            paint(self.img, lay, idt.brow_colour, opacity=0.95)
            self.parts.add("eyebrow", lay, thr=0.35)
            self.parts.cover(lay, ("skin",), thr=0.35)

    def mouth(self) -> None:
        idt = self.id
        fr = self.fr
        my, mw, ut, lt = idt.mouth_y, idt.mouth_w, idt.lip_up, idt.lip_lo
        gap = idt.mouth_open
        curv = idt.smile
        lip = rgb(idt.lip_colour)

        def ym(x):
            u = x / mw
            return my - curv * u * u

        def gapf(x):
            u = x / mw
            return gap * np.clip(1 - (u / 0.9) ** 2, 0, 1) ** 0.6

        def up_top(x):
            u = x / mw
            bow = 1 - 0.3 * np.exp(-(u / 0.17) ** 2)  # the dip of the cupid's bow
            return ym(x) - gapf(x) / 2 - ut * np.clip(1 - u * u, 0, 1) ** 0.55 * bow - 0.0006

        def lo_bot(x):
            u = x / mw
            return ym(x) + gapf(x) / 2 + lt * np.clip(1 - u * u, 0, 1) ** 0.6 + 0.0006

        ylo, yhi = my - ut - gap - abs(curv) - 0.02, my + lt + gap + abs(curv) + 0.02
        if not self.visible(-mw - 0.03, ylo - 0.01, mw + 0.03, yhi + 0.02):
            return
        shadow = ellipse(fr, 0.0, my + lt + gap / 2 + 0.012, mw * 0.55, 0.009, soft=self.s(5))
        shade(self.img, shadow, 0.88)
        upper = between(fr, -mw, mw, up_top, lambda x: ym(x) - gapf(x) / 2 + 0.001, ylo, yhi,
                        soft=self.s(1.1), end_soft=self.s(2))
        lower = between(fr, -mw, mw, lambda x: ym(x) + gapf(x) / 2 - 0.001, lo_bot, ylo, yhi,
                        soft=self.s(1.1), end_soft=self.s(2))
        if gap > 0:
            cav = between(fr, -mw * 0.95, mw * 0.95, lambda x: ym(x) - gapf(x) / 2, lambda x: ym(x) + gapf(x) / 2,
                          ylo, yhi, soft=1.0, end_soft=self.s(1.5))
            if cav is not None:
                paint(self.img, cav, (0.22, 0.06, 0.07))
                self.parts.add("mouth", cav)
                x, y = fr.coords(cav.win)
                if idt.teeth:
                    th = np.minimum(F32(0.013), gapf(x) * F32(0.75))
                    d = np.minimum(y - (ym(x) - gapf(x) / 2), (ym(x) - gapf(x) / 2 + th) - y)
                    ta = np.clip(d / F32(fr.px) + 0.5, 0, 1) * cav.a * (np.abs(x) < mw * 0.8)
                    sep = F32(1) - F32(0.3) * np.exp(-(np.sin(np.pi * x / F32(0.011)) / F32(0.16)) ** 2)
                    teeth = Layer(cav.win, ta.astype(F32))
                    paint(self.img, teeth, rgb((0.93, 0.9, 0.83)) * (sep * (F32(1) - F32(0.4) * (x / F32(mw)) ** 2)))
                    self.parts.add("tooth", teeth)
                ty = (y - F32(my + gap * 0.5)) / F32(gap * 0.5 + 1e-4)
                tg = np.clip(F32(1) - ((x / F32(mw * 0.55)) ** 2 + ty ** 2), 0, 1)
                tongue = Layer(cav.win, (np.clip(tg * 6, 0, 1) * cav.a).astype(F32))
                paint(self.img, tongue, (0.72, 0.33, 0.36))
                self.parts.add("tongue", tongue)
                self.parts.cover(tongue, ("tooth",))
        for lay, f in ((upper, 0.82), (lower, 1.0)):
            if lay is None:
                continue
            x, y = fr.coords(lay.win)
            v = F32(f) * (F32(0.9) + F32(0.1) * np.clip(1 - (x / F32(mw)) ** 2, 0, 1))
            paint(self.img, lay, lip * v)
            self.parts.add("lip", lay)
            self.parts.cover(lay, ("skin", "beard"))
        hl = ellipse(fr, 0.0, my + gap / 2 + lt * 0.45, mw * 0.35, lt * 0.25, soft=self.s(4))
        shade(self.img, hl, 1.15)
        if gap <= 0:
            line = between(fr, -mw * 0.98, mw * 0.98, lambda x: ym(x) - 0.0013, lambda x: ym(x) + 0.0013,
                           ylo, yhi, soft=self.s(1.4), end_soft=self.s(2))
            paint(self.img, line, lip * F32(0.45), opacity=0.85)
        for side in (-1, 1):
            corner = ellipse(fr, side * mw, float(ym(side * mw)), 0.005, 0.0035, soft=self.s(2))
            shade(self.img, corner, 0.75)
        region = ellipse(fr, 0.0, my + (lt - ut) / 2 + 0.002 - curv / 2, mw + 0.016,
                         (ut + lt + gap + abs(curv)) / 2 + 0.016)
        self.parts.add("mouth", region)

    def marks(self) -> None:
        idt = self.id
        fr = self.fr
        size = self.size
        if idt.freckles:
            key = ("freckles", idt.texture_seed, idt.freckles, idt.eye_sep, idt.nose_y, fr.cx, fr.cy, fr.scale,
                   fr.angle, size)
            shade_f, spots = _memo(key, self._freckles)
            self.img *= shade_f
            self.parts.add_mask("freckle", spots)
        if idt.wrinkles > 0.05:
            rng = _srng(idt, "wrinkle")
            k = idt.wrinkles
            wm = np.zeros((size, size), bool)
            fy0 = idt.eye_y - idt.brow_gap - 0.035
            for i in range(int(1 + 3 * k)):
                yy = fy0 - i * 0.02
                x0, x1 = -0.1 - 0.02 * rng.random(), 0.1 + 0.02 * rng.random()
                ph = rng.uniform(0, 6)

                def curve(x, yy=yy, ph=ph):
                    return yy + 0.004 * np.sin(x * 30 + ph) + 0.05 * x * x

                ln = between(fr, x0, x1, lambda x: curve(x) - 0.0016, lambda x: curve(x) + 0.0016,
                             yy - 0.01, yy + 0.012, soft=self.s(2.2), end_soft=self.s(6))
                shade(self.img, ln, 1 - 0.2 * k)
                _orm(wm, ln)
            for side in (-1, 1):
                cx0 = side * (idt.eye_sep + idt.eye_w + 0.008)
                for a in (-0.45, 0.0, 0.4)[: 1 + int(2 * k + 0.5)]:
                    L = 0.022 + 0.01 * rng.random()
                    pts = [(cx0, idt.eye_y), (cx0 + side * L * math.cos(a), idt.eye_y + L * math.sin(a))]
                    ln = stroke(fr, pts, [0.003, 0.0015], soft=self.s(2))
                    shade(self.img, ln, 1 - 0.22 * k)
                    _orm(wm, ln)
                nasolabial = stroke(fr, [(side * (idt.nose_w + 0.004), idt.nose_y - 0.003),
                                         (side * (idt.nose_w + 0.02), idt.nose_y + 0.04),
                                         (side * (idt.mouth_w + 0.012), idt.mouth_y + 0.015)],
                                    [0.004, 0.005, 0.003], soft=self.s(3))
                shade(self.img, nasolabial, 1 - 0.25 * k)
                _orm(wm, nasolabial)
            self.parts.add_mask("wrinkle", wm)
        if idt.dimple:
            sx = idt.dimple * (idt.mouth_w + 0.022)
            d = stroke(fr, [(sx, idt.mouth_y - 0.012), (sx + idt.dimple * 0.004, idt.mouth_y),
                            (sx, idt.mouth_y + 0.012)], [0.002, 0.0045, 0.002], soft=self.s(2.5))
            shade(self.img, d, 0.78)
            self.parts.add("dimple", d, thr=0.2)
        if idt.scar is not None:
            rng = _srng(idt, "scar")
            x, y, a, L = idt.scar
            ts = np.linspace(-0.5, 0.5, 7)
            pts = [(float(x + t * L * math.cos(a) + rng.normal(0, 0.0015)),
                    float(y + t * L * math.sin(a) + rng.normal(0, 0.0015))) for t in ts]
            edge = stroke(fr, pts, 0.0075, soft=self.s(2))
            shade(self.img, edge, 0.85)
            core = stroke(fr, pts, [0.002, 0.004, 0.005, 0.005, 0.005, 0.004, 0.002], soft=self.s(1.2))
            paint(self.img, core, np.clip(self.skin * np.array([1.12, 1.0, 1.0], F32) + F32(0.06), 0, 1), opacity=0.8)
            self.parts.add("scar", edge, thr=0.2)

    def _freckles(self) -> tuple[np.ndarray, np.ndarray]:
        """Freckles over the nose and cheeks: the darkening factor and the area they cover."""
        idt = self.id
        fr = self.fr
        size = self.size
        rng = _srng(idt, "freckle")
        n = idt.freckles
        side = rng.choice([-1, 1], n)
        fx = np.where(rng.random(n) < 0.25, rng.normal(0, 0.018, n), side * rng.normal(idt.eye_sep * 0.9, 0.035, n))
        fy = np.where(np.abs(fx) < 0.03, rng.normal(idt.nose_y - 0.03, 0.02, n), rng.normal(0.045, 0.025, n))
        c, s = math.cos(fr.angle), math.sin(fr.angle)
        u = (fr.cx + fr.scale * (c * fx - s * fy)) * size
        v = (fr.cy + fr.scale * (s * fx + c * fy)) * size
        ok = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        dots = np.zeros((size, size), F32)
        np.add.at(dots, (v[ok].astype(int), u[ok].astype(int)), rng.uniform(0.5, 1.0, int(ok.sum())).astype(F32))
        a = np.clip(blur(dots, 0.45 * self.u) * F32(2.0), 0, 0.7)
        return F32(1) - a * F32(0.28) * (F32(1) - rgb((0.0, 0.15, 0.3))), blur(dots, 2.5 * self.u) > 0.01

    def facial_hair(self) -> None:
        idt = self.id
        fr = self.fr
        if idt.beard != "none" and self.head_layer is not None:
            win = self.head_layer.win
            x, y = fr.coords(win)
            inside = np.clip((self.head_d[win] + F32(0.006)) / F32(fr.px * 1.5) + F32(0.5), 0, 1)
            t = np.clip((np.abs(x) - F32(idt.mouth_w)) / F32(idt.head_w - idt.mouth_w), 0, 1)
            if idt.beard == "goatee":
                yb = F32(idt.mouth_y - 0.005)
                inside = inside * np.clip((F32(idt.mouth_w + 0.02) - np.abs(x)) / F32(fr.px * 3), 0, 1)
            else:
                t7 = t ** F32(0.7)
                yb = F32(idt.mouth_y - idt.lip_up - 0.01) * (1 - t7) + F32(idt.ear_y + 0.035) * t7
            a = inside * np.clip((y - yb) / F32(fr.px * 3), 0, 1)
            grain = self._grain("beard")[win]
            dens = {"stubble": 0.35, "goatee": 0.85, "full": 0.92}[idt.beard]
            a = np.clip(a * (F32(dens) * F32(1.5) - F32(0.5) + grain * F32(0.6)), 0, 1)
            lay = Layer(win, a.astype(F32))
            paint(self.img, lay, np.clip(rgb(idt.beard_colour) * (F32(0.7) + F32(0.45) * grain), 0, 1),
                  opacity=0.6 if idt.beard == "stubble" else 0.95)
            self.parts.add("beard", lay, thr=0.2)
            if idt.beard != "stubble":
                self.parts.cover(lay, ("skin",), thr=0.5)
        if idt.mustache:
            mw, my, ut = idt.mouth_w, idt.mouth_y, idt.lip_up
            x0, x1 = -mw - 0.012, mw + 0.012

            def top(x):
                return idt.nose_y + 0.02 + 0.012 * (x / mw) ** 2

            def bottom(x):
                u = np.clip(x / mw, -1, 1)
                return my - ut * np.clip(1 - u * u, 0, 1) ** 0.55 + 0.002 + 0.02 * (np.abs(x) / mw) ** 3

            lay = between(fr, x0, x1, top, bottom, idt.nose_y, my + 0.04, soft=self.s(2), end_soft=self.s(4))
            if lay is not None:
                grain = blur(self._grain("mustache"), 0.6 * self.u)[lay.win]
                grain = (grain - F32(0.5)) * F32(2.5) + F32(0.5)
                lay.a = np.clip(lay.a * (F32(0.8) + grain * F32(0.3)), 0, 1).astype(F32)
                paint(self.img, lay, np.clip(rgb(idt.beard_colour) * (F32(0.75) + F32(0.35) * grain), 0, 1),
                      opacity=0.95)
                self.parts.add("mustache", lay, thr=0.3)
                self.parts.cover(lay, ("skin", "lip"), thr=0.5)

    # ---- regions defined by position --------------------------------------------------------
    def regions(self) -> None:
        """Regions defined by position rather than by a painted part (cheeks, forehead, chin,
        jaw), clipped to the skin that is actually visible."""
        idt = self.id
        fr = self.fr
        p = self.parts
        size = self.size
        zero = np.zeros((size, size), bool)
        head = self.head_d > 0 if self.head_d is not None else zero
        hair = p.m.get("hair", zero)
        face = head & ~hair
        features = zero.copy()
        for n in ("eye", "nose", "mouth", "eyebrow"):
            features |= p.m.get(n, zero)
        for side in (-1, 1):
            p.add("cheek", ellipse(fr, side * (idt.eye_sep + 0.01), (idt.eye_y + idt.mouth_y) / 2 + 0.02,
                                   0.072, 0.075))
        top = idt.hairline - 0.01
        p.add("forehead", between(fr, -idt.head_w, idt.head_w, lambda x: top + 0 * x,
                                  lambda x: idt.eye_y - idt.brow_gap - 0.004 + 0 * x, top - 0.01, idt.eye_y))
        chin_y = -0.02 + idt.head_bot
        p.add("chin", ellipse(fr, 0.0, chin_y - 0.045, idt.mouth_w * 0.95, 0.055))
        if self.head_d is not None:
            d = self.head_d
            p.add_mask("jaw", (d > -0.012) & (d < 0.045) & (fr.fy > idt.nose_y - 0.01))
        for n, keep in (("cheek", face & ~features), ("forehead", face & ~features),
                        ("chin", head & ~p.m.get("mouth", zero)), ("jaw", ~hair)):
            if n in p.m:
                p.m[n] &= keep
        if "jaw" in p.m:
            p.m["jaw"] &= ~p.m.get("chin", zero)

    def render(self) -> FaceRender:
        self.head_outline()
        self.background()
        self.back_hair()
        self.clothes()
        self.ears()
        self.head()
        self.marks()
        self.facial_hair()
        self.nose()
        self.eyes()
        self.brows()
        self.mouth()
        self.front_hair()
        self.regions()
        img = self.img
        if self.scene.warmth:
            img *= rgb((1 + self.scene.warmth, 1, 1 - self.scene.warmth))
        np.clip(img, 0, 1, out=img)
        parts = {k: v for k, v in self.parts.m.items() if v.any()}
        head = self.head_d > 0 if self.head_d is not None else np.zeros((self.size, self.size), bool)
        return FaceRender(img, parts, self.fr, self.id,
                          Pose(self.fr.cx, self.fr.cy, self.fr.scale, self.fr.angle), self.scene, head=head)


def render_face(identity: Identity, pose: Pose, scene: Scene, size: int = 256,
                clip: tuple[int, int, int, int] | None = None) -> FaceRender:
    """Draw the clean face and its region masks (deterministic in its arguments). With `clip`
    (row0, row1, col0, col1) only that box is drawn, identically to a full render there:
    re-synthesising one part costs a fraction of a whole face."""
    return _Painter(identity, pose, scene, size, clip).render()


_NOISE_BANK: dict[int, np.ndarray] = {}


def _noise_bank(size: int) -> np.ndarray:
    """A fixed bank of unit Gaussian noise (same in every process); photographs take crops of
    it at random offsets, which is much cheaper than drawing fresh normals per image."""
    bank = _NOISE_BANK.get(size)
    if bank is None:
        bank = np.random.default_rng(20240613).standard_normal((4, 2 * size, 2 * size), dtype=F32)
        _NOISE_BANK[size] = bank
    return bank


def camera(clean: np.ndarray, scene: Scene, rng: np.random.Generator, *, noise: float | None = None,
           jpeg_q: int | None = None, blur_px: float | None = None, scale: int | None = None) -> np.ndarray:
    """Clean planar (3, H, W) float render -> 8-bit HxWx3 photograph: optical blur,
    signal-dependent sensor noise (luma and some chroma), then one JPEG round-trip (skipped
    when jpeg_q is 0). For a crop, `scale` is the size of the whole picture (blur is given
    for 256 px)."""
    _, h, w = clean.shape
    size = max(h, w)
    sig = (scene.blur_px if blur_px is None else blur_px) * (scale or size) / 256
    # blurring along rows is fastest on contiguous lines: blur them, then work on the
    # transposed copy (3, W, H), which also sets up the HxWx3 output
    img = blur_lines(clean, sig)
    img = blur_lines(np.ascontiguousarray(img.transpose(0, 2, 1)), sig)
    h, w = w, h
    nz = (scene.noise if noise is None else noise) / 255.0
    if nz > 0:
        size = max(256, 1 << (size - 1).bit_length())  # crops share the bank of a standard size
        bank = _noise_bank(size)
        oy, ox = (int(v) for v in rng.integers(0, size, 2))
        k = int(rng.integers(0, 4))
        lum = bank[k, oy:oy + h, ox:ox + w]
        chroma = bank[:, size - oy:size - oy + h, size - ox:size - ox + w][(k + 1 + np.arange(3)) % 4]
        level = np.sqrt(np.clip(img[1], 0, 1))  # shot noise grows with brightness (green ~ luma)
        level *= F32(0.8 * nz)
        level += F32(0.6 * nz)
        chroma *= F32(0.45)
        chroma += lum * F32(0.8)
        chroma *= level
        img += chroma
    img *= F32(255.0)
    img += F32(0.5)
    np.clip(img, 0, 255, out=img)
    out = np.ascontiguousarray(img.astype(np.uint8).transpose(2, 1, 0))
    q = scene.jpeg_q if jpeg_q is None else jpeg_q
    return jpeg_roundtrip(out, q) if q else out
