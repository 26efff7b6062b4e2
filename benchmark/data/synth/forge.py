"""The four manipulation families of MMTT, applied to a rendered photograph.

Every family produces new content for a region and blends it in with a soft alpha; the mask is
then *exactly* the set of pixels whose value changed: blend weights below a small threshold are
dropped (those pixels keep their authentic value) and the rare pixel inside the region that the
blend left unchanged is moved by one level. Each family leaves the traces its real counterpart
is known for, and records them (`cues`) so the explanation can describe what was really done:

- `sd` (diffusion inpainting): a dilated part region re-synthesised smoothly — a plausible but
  slightly different part, over-smooth, off-colour, without the camera noise and JPEG history of
  the rest, softly blended.
- `mat` (MAT transformer inpainting): a part or a free-form brush-stroke hole filled from the
  surroundings — the structure rebuilt smooth and slightly warped, texture from patch copies
  that repeat (and sit off the JPEG grid), colours smeared in from the border, a hard edge.
- `e4s` (GAN face swap): the inner face or a part taken from another person rendered in the same
  pose — different skin tone and shape, partial colour correction, another noise level, maybe
  other lighting, a blending seam.
- attribute editing (`smiling`, `surprised`, ...): the same person re-rendered with the
  attribute changed; the edited area comes from a generator (smooth, no sensor noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from benchmark.data.synth.face import (
    FACE_REGIONS, HAIR_COLOURS, IRIS_COLOURS, FaceRender, Identity, Pose, camera, render_face,
    sample_identity, sample_pose, sample_scene,
)
from benchmark.data.synth.raster import F32, blur, disk_dilate, smooth_noise

FAMILIES: dict[str, str] = {"sd": "diffusion-inpainting", "mat": "transformer-inpainting", "e4s": "gan-faceswap"}
ATTRIBUTES: tuple[str, ...] = ("smiling", "surprised", "angry", "sad", "aged", "makeup", "pale", "tanned",
                               "bearded", "blond")
MIN_FRACTION, MAX_FRACTION = 0.015, 0.42  # share of the image a forged region may cover

Box = tuple[int, int, int, int]  # row0, row1, col0, col1


@dataclass
class Forgery:
    """One manipulated photograph and the facts an explanation may draw on."""

    method: str                   # "sd" | "mat" | "e4s" | an attribute name
    authentic: np.ndarray         # HxWx3 uint8, the photograph before manipulation
    forged: np.ndarray            # HxWx3 uint8
    mask: np.ndarray              # HxW bool, exactly the pixels that differ
    targets: tuple[str, ...]      # regions the manipulation aimed at, most important first
    touched: frozenset[str]       # every region whose visible pixels the mask covers substantially
    cues: tuple[str, ...]         # artefacts actually produced (see explain.py)
    side: str | None = None       # "left" / "right" (as seen in the image) for one of a pair
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())


# --------------------------------------------------------------------------------------------
# Shared machinery

def _box(mask: np.ndarray, margin: int) -> Box:
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    h, w = mask.shape
    if len(rows) == 0:
        return 0, h, 0, w
    return (max(0, int(rows[0]) - margin), min(h, int(rows[-1]) + 1 + margin),
            max(0, int(cols[0]) - margin), min(w, int(cols[-1]) + 1 + margin))


def _crop(a: np.ndarray, b: Box) -> np.ndarray:
    return a[b[0]:b[1], b[2]:b[3]]


def _feather(region: np.ndarray, sigma: float, gain: float = 1.8) -> np.ndarray:
    """Soft blend weights: 1 well inside the region, fading out over ~2 sigma outside it."""
    return np.clip(blur(region.astype(F32), sigma) * F32(gain), 0, 1)


def composite(authentic: np.ndarray, content: np.ndarray, alpha: np.ndarray, box: Box,
              thr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Blend float content (HxWx3 crop in [0, 1]) into the photograph through alpha (crop) and
    return (forged, mask) with mask == (forged != authentic).any(-1) exactly.

    Weights below `thr` are dropped, so the mask is a clean region rather than a speckled
    fringe of 1-level changes; a pixel inside it that blending happened to leave unchanged is
    moved by one level towards the content."""
    forged = authentic.copy()
    auth = _crop(authentic, box).astype(F32)
    a = alpha[..., None]
    out = auth + (content * F32(255.0) - auth) * a
    new = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    inside = alpha >= thr
    crop = _crop(forged, box)
    crop[inside] = new[inside]
    same = inside & np.all(crop == _crop(authentic, box), axis=-1)
    if same.any():
        g = crop[..., 1]
        want = content[..., 1] * 255.0 >= auth[..., 1]
        step = np.where((want & (g < 255)) | (g == 0), 1, -1).astype(np.int16)
        g[same] = (g[same].astype(np.int16) + step[same]).astype(np.uint8)
    mask = np.zeros(authentic.shape[:2], bool)
    _crop(mask, box)[:] = inside
    return forged, mask


def touched_regions(faces: list[FaceRender], mask: np.ndarray) -> frozenset[str]:
    """Regions whose visible pixels the mask covers substantially: a third of the part, or a
    sizeable share of the mask itself (large parts such as skin or hair)."""
    n_mask = int(mask.sum())
    out = set()
    unit = (mask.shape[0] / 256.0) ** 2
    box = _box(mask, 0)
    inner = _crop(mask, box)
    for name in FACE_REGIONS:
        part = None
        for f in faces:
            m = f.parts.get(name)
            if m is not None:
                part = m if part is None else part | m
        if part is None:
            continue
        inter = int(np.count_nonzero(_crop(part, box) & inner))
        if inter < 12 * unit:
            continue
        n_part = int(np.count_nonzero(part))
        if inter >= 0.3 * n_part or inter >= 0.15 * n_mask:
            out.add(name)
    return frozenset(out)


def _side_mask(face: FaceRender, side: int) -> np.ndarray:
    """Pixels on one side of the face's midline (-1: the image's left, +1: its right)."""
    return face.frame.fx * side > 0.0


def _region(face: FaceRender, names, side: int = 0) -> np.ndarray:
    m = np.zeros(face.image.shape[:2], bool)
    for n in names:
        p = face.parts.get(n)
        if p is not None:
            m |= p
    if side:
        m &= _side_mask(face, side)
    return m


def dilate(region: np.ndarray, r: float) -> np.ndarray:
    """Round dilation by r px, computed on the region's bounding box only."""
    if r <= 0 or not region.any():
        return region.copy()
    b = _box(region, int(math.ceil(2 * r)) + 2)
    out = np.zeros_like(region)
    _crop(out, b)[:] = disk_dilate(_crop(region, b), r)
    return out


def _clean(region: np.ndarray, size: int) -> np.ndarray:
    """Close small gaps so a region reads as one area (dilate then erode by ~2 px)."""
    r = 2.0 * size / 256
    grown = dilate(region, r)
    b = _box(grown, int(2 * r) + 2)
    closed = np.zeros_like(region)
    _crop(closed, b)[:] = ~disk_dilate(~_crop(grown, b), r)
    return closed | region


def _colour_jitter(rng: np.random.Generator, c, amount: float) -> tuple[float, float, float]:
    v = np.asarray(c, float) * (1 + rng.normal(0, amount, 3)) + rng.normal(0, amount / 3, 3)
    return tuple(float(x) for x in np.clip(v, 0, 1))


def _shade_jitter(rng: np.random.Generator, c, amount: float) -> tuple[float, float, float]:
    """Lighter or darker with a slight hue drift: hair and brows stay hair-coloured."""
    v = np.asarray(c, float) * (1 + rng.normal(0, amount)) * (1 + rng.normal(0, amount / 6, 3))
    return tuple(float(x) for x in np.clip(v, 0, 1))


def _side_name(side: int) -> str | None:
    return {-1: "left", 1: "right"}.get(side)


# --------------------------------------------------------------------------------------------
# Re-synthesis of parts: what an inpainting model "imagines" in a hole

def perturb(idt: Identity, regions, rng: np.random.Generator, strength: float = 1.0) -> Identity:
    """The same person with the given parts re-imagined (shape and colour nudged)."""
    s = strength
    kw: dict[str, Any] = {}
    regions = set(regions)
    if regions & {"eye", "pupil"}:
        kw.update(eye_w=idt.eye_w * rng.uniform(1 - 0.12 * s, 1 + 0.14 * s),
                  eye_top=idt.eye_top * rng.uniform(1 - 0.2 * s, 1 + 0.3 * s),
                  iris=_colour_jitter(rng, idt.iris if rng.random() < 0.6 else IRIS_COLOURS[
                      str(rng.choice(list(IRIS_COLOURS)))], 0.12 * s),
                  iris_r=idt.iris_r * rng.uniform(0.9, 1.1),
                  gaze=(float(rng.normal(0, 0.006)), float(rng.normal(0, 0.003))))
    if "eyebrow" in regions:
        kw.update(brow_th=idt.brow_th * rng.uniform(1 - 0.3 * s, 1 + 0.3 * s),
                  brow_arch=max(0.0, idt.brow_arch + rng.normal(0, 0.005 * s)),
                  brow_colour=_shade_jitter(rng, idt.brow_colour, 0.25 * s))
    if "nose" in regions:
        kw.update(nose_w=idt.nose_w * rng.uniform(1 - 0.15 * s, 1 + 0.2 * s),
                  nose_y=idt.nose_y + float(rng.normal(0, 0.005 * s)))
    if regions & {"mouth", "lip", "tooth", "tongue"}:
        kw.update(mouth_w=idt.mouth_w * rng.uniform(1 - 0.1 * s, 1 + 0.12 * s),
                  lip_up=idt.lip_up * rng.uniform(1 - 0.2 * s, 1 + 0.25 * s),
                  lip_lo=idt.lip_lo * rng.uniform(1 - 0.2 * s, 1 + 0.25 * s),
                  smile=idt.smile + float(rng.normal(0, 0.004 * s)),
                  lip_colour=_colour_jitter(rng, idt.lip_colour, 0.1 * s))
    if regions & {"cheek", "skin", "jaw", "chin", "forehead"}:
        kw.update(blush=float(np.clip(idt.blush + rng.normal(0, 0.2 * s), 0, 0.8)))
    if "forehead" in regions or "wrinkle" in regions:
        kw.update(wrinkles=float(idt.wrinkles * rng.uniform(0.0, 0.6)))
    if "hair" in regions:
        kw.update(hair_colour=_shade_jitter(rng, idt.hair_colour, 0.15 * s),
                  part_x=idt.part_x + float(rng.normal(0, 0.03)))
    if "ear" in regions:
        kw.update(ear_size=idt.ear_size * rng.uniform(0.85, 1.15), ear_y=idt.ear_y + float(rng.normal(0, 0.006)))
    if "beard" in regions or "mustache" in regions:
        kw.update(beard_colour=_shade_jitter(rng, idt.beard_colour, 0.2 * s))
    if regions & {"freckle", "scar", "dimple"}:
        kw.update(freckles=0 if "freckle" in regions else idt.freckles,
                  scar=None if "scar" in regions else idt.scar,
                  dimple=0 if "dimple" in regions else idt.dimple)
    return replace(idt, **kw)


# Part choices for inpainting: (regions, weight, may be one-sided)
_PART_CHOICES: tuple[tuple[tuple[str, ...], float, bool], ...] = (
    (("eye",), 3.0, True), (("nose",), 3.0, False), (("mouth", "lip"), 3.0, False), (("eyebrow",), 1.5, True),
    (("eye", "eyebrow"), 1.5, True), (("cheek",), 1.5, True), (("forehead",), 1.0, False), (("chin",), 1.0, False),
    (("nose", "mouth", "lip"), 1.0, False), (("hair",), 0.8, False), (("ear",), 0.4, True),
    (("jaw", "chin"), 0.6, False), (("eye", "nose"), 0.6, False),
)


def _choose_parts(rng: np.random.Generator, face: FaceRender) -> tuple[tuple[str, ...], int]:
    opts = [c for c in _PART_CHOICES if all(face.parts.get(r) is not None and face.parts[r].sum() > 30
                                           for r in c[0])]
    w = np.array([c[1] for c in opts])
    regions, _, sided = opts[int(rng.choice(len(opts), p=w / w.sum()))]
    side = int(rng.choice([-1, 1])) if sided and rng.random() < 0.55 else 0
    return regions, side


def _hair_patch(rng: np.random.Generator, face: FaceRender) -> np.ndarray:
    """A blob of the hair (inpainting all of it would be too large)."""
    fr = face.frame
    cx = float(rng.uniform(-0.15, 0.15))
    cy = float(rng.uniform(-0.38, -0.22))
    r = float(rng.uniform(0.09, 0.15))
    blob = ((fr.fx - cx) / r) ** 2 + ((fr.fy - cy) / (r * 0.8)) ** 2 < 1
    return blob & face.part("hair")


# --------------------------------------------------------------------------------------------
# Families

def _photo(rng: np.random.Generator, source: str, size: int):
    idt = sample_identity(rng)
    pose = sample_pose(rng, source)
    scene = sample_scene(rng, source)
    face = render_face(idt, pose, scene, size)
    photo = camera(face.planar, scene, rng)
    return idt, pose, scene, face, photo


def _fit_fraction(region: np.ndarray, size: int) -> np.ndarray:
    """Grow a too-small region (dilating it) so that masks stay within realistic sizes."""
    n = region.size
    r = 2.0 * size / 256
    while region.sum() < MIN_FRACTION * n * 0.8 and r < 0.12 * size:
        region = dilate(region, r)
        r *= 1.5
    return region


def forge_sd(rng: np.random.Generator, source: str, size: int) -> Forgery:
    idt, pose, scene, face, photo = _photo(rng, source, size)
    u = size / 256
    for _ in range(4):
        regions, side = _choose_parts(rng, face)
        core = _hair_patch(rng, face) if regions == ("hair",) else _region(face, regions, side)
        region = dilate(core, float(rng.uniform(3, 8)) * u)
        region = _fit_fraction(region, size)
        if MIN_FRACTION <= region.mean() <= MAX_FRACTION * 0.9:
            break
    strength = float(rng.uniform(0.6, 1.3))
    new_id = perturb(idt, regions, rng, strength)
    box = _box(region, int(12 * u))
    alt = render_face(new_id, pose, scene, size, clip=box)
    smooth = float(rng.uniform(0.7, 1.6)) * u
    content = blur(alt.crop(box), smooth)
    gain = 1 + rng.normal(0, 0.035, 3) + rng.uniform(-0.05, 0.05)
    content = np.clip(content * gain.astype(F32), 0, 1)
    feather = float(rng.uniform(1.2, 3.5)) * u
    alpha = _feather(_crop(region, box), feather)
    forged, mask = composite(photo, content, alpha, box)
    cues = ["smooth", "texture"]
    if np.abs(gain - 1).max() > 0.045:
        cues.append("colour")
    if feather > 2.4 * u:
        cues.append("blur_edge")
    if strength > 0.95 and any(r in regions for r in ("eye", "nose", "mouth", "eyebrow", "ear")):
        cues.append("shape")
    if side and any(r in regions for r in ("eye", "eyebrow")):
        cues.append("asym")
    touched = touched_regions([face, alt], mask)
    return _finish("sd", photo, forged, mask, regions, touched, cues, side,
                   {"colour_shift": _shift_word(gain), "smooth_px": smooth})


def _strokes(rng: np.random.Generator, face: FaceRender, size: int) -> np.ndarray:
    """A free-form hole of thick brush strokes, as in inpainting benchmarks, over the face."""
    u = size / 256
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        fx, fy = float(rng.uniform(-0.18, 0.18)), float(rng.uniform(-0.15, 0.28))
        x, y = face.frame.to_pixel(fx, fy)
        width = int(rng.uniform(8, 22) * u)
        pts = [(x, y)]
        ang = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(2, 5))):
            ang += rng.normal(0, 0.9)
            step = rng.uniform(12, 32) * u
            x, y = x + step * math.cos(ang), y + step * math.sin(ang)
            pts.append((x, y))
        draw.line(pts, fill=255, width=width, joint="curve")
        for px, py in pts:
            r = width / 2
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
    return np.asarray(img) > 127


def _patch_fill(photo: np.ndarray, region: np.ndarray, box: Box, rng: np.random.Generator,
                size: int, source: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Texture for the hole copied from around it: a grid of patches, each from one of a few
    offsets — the repetition and seams that give patch-based filling away. Offsets whose
    source lies in the hole (or, given `source`, mostly outside it) are avoided."""
    u = size / 256
    r0, r1, c0, c1 = box
    h, w = r1 - r0, c1 - c0
    p = max(4, int(rng.uniform(7, 15) * u))
    k = int(rng.integers(1, 4))
    offs = []
    for _ in range(k):
        for _ in range(8):
            ang = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(0.6, 1.1) * max(h, w) * 0.6 + 6 * u
            dy, dx = int(dist * math.sin(ang)), int(dist * math.cos(ang))
            sr = np.clip(np.arange(r0, r1) + dy, 0, size - 1)
            sc = np.clip(np.arange(c0, c1) + dx, 0, size - 1)
            if region[np.ix_(sr, sc)].mean() < 0.25 and (source is None or source[np.ix_(sr, sc)].mean() > 0.7):
                break
        offs.append((dy, dx))
    gy = np.arange(h) // p
    gx = np.arange(w) // p
    choice = rng.integers(0, k, (gy[-1] + 1, gx[-1] + 1))
    pick = choice[gy[:, None], gx[None, :]]
    oy = np.array([o[0] for o in offs])[pick]
    ox = np.array([o[1] for o in offs])[pick]
    src_r = np.clip(np.arange(r0, r1)[:, None] + oy, 0, size - 1)
    src_c = np.clip(np.arange(c0, c1)[None, :] + ox, 0, size - 1)
    return photo[src_r, src_c].astype(F32) / F32(255.0), k


def _warp(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Resample an HxWx3 crop through a smooth random displacement of up to ~`amount` px."""
    h, w = img.shape[:2]
    if amount <= 0 or h < 4 or w < 4:
        return img
    dy = smooth_noise(rng, (h, w), 3) * F32(amount / 2)
    dx = smooth_noise(rng, (h, w), 3) * F32(amount / 2)
    yy = np.clip(np.arange(h, dtype=F32)[:, None] + dy, 0, h - 1.001)
    xx = np.clip(np.arange(w, dtype=F32)[None, :] + dx, 0, w - 1.001)
    y0 = yy.astype(np.int32)
    x0 = xx.astype(np.int32)
    fy = (yy - y0)[..., None]
    fx = (xx - x0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bot = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy).astype(F32)


def forge_mat(rng: np.random.Generator, source: str, size: int) -> Forgery:
    idt, pose, scene, face, photo = _photo(rng, source, size)
    u = size / 256
    free = rng.random() < 0.5
    for _ in range(4):
        if free:
            region = _strokes(rng, face, size)
            regions = tuple(r for r in ("eye", "nose", "mouth", "lip", "eyebrow", "cheek", "forehead", "chin",
                                        "jaw", "hair", "beard", "mustache", "skin")
                            if face.parts.get(r) is not None and (face.parts[r] & region).sum()
                            >= 0.25 * min(face.parts[r].sum(), region.sum()))
            side = 0
        else:
            regions, side = _choose_parts(rng, face)
            core = _hair_patch(rng, face) if regions == ("hair",) else _region(face, regions, side)
            region = dilate(core, float(rng.uniform(4, 10)) * u)
        region = _fit_fraction(region, size)
        if MIN_FRACTION <= region.mean() <= MAX_FRACTION * 0.9 and (regions or not free):
            break
        free = not free if not regions else free
    if not regions:
        regions = ("skin",)
    box = _box(region, int(10 * u))
    # the model rebuilds the structure from context: close to the original but smooth, and
    # warped a little (features inside the hole drift)
    warp = float(rng.uniform(0.5, 4.0)) * u
    structure = _warp(blur(face.crop(box), 1.2 * u), warp, rng)
    reg = _crop(region, box)
    known = (~reg).astype(F32)[..., None]
    auth = _crop(photo, box).astype(F32) / F32(255.0)
    hole = max(reg.shape)
    big = max(hole, 8) * 0.18
    lf = blur(auth * known, big) / np.maximum(blur(known, big), F32(1e-3))
    smear = float(rng.uniform(0.3, 0.9))
    base = structure + (lf - blur(structure, big)) * F32(smear)
    skin = face.head & ~face.part("hair")
    source = skin if (region & skin).sum() > 0.6 * region.sum() else None
    copy, k = _patch_fill(photo, region, box, rng, size, source)
    hp_gain = float(rng.uniform(0.6, 1.3))
    mix = float(rng.uniform(0.0, 0.35))
    content = (base + (copy - blur(copy, 1.5 * u)) * F32(hp_gain)) * F32(1 - mix) + copy * F32(mix)
    content = np.clip(content, 0, 1)
    alpha = _feather(reg, 0.6 * u, gain=2.2)
    forged, mask = composite(photo, content, alpha, box)
    cues = ["seam"]
    if k <= 2 and hp_gain > 0.8:
        cues.append("repeat")
    if smear > 0.55:
        cues.append("smear")
    if mix > 0.2:
        cues.append("patchy")
    if warp > 2.5 * u and any(r in regions for r in ("eye", "nose", "mouth", "eyebrow", "lip")):
        cues.append("structure")
    touched = touched_regions([face], mask)
    return _finish("mat", photo, forged, mask, regions, touched, cues, side,
                   {"free_form": free, "patch_sources": k, "hole_px": hole})


def forge_e4s(rng: np.random.Generator, source: str, size: int) -> Forgery:
    idt, pose, scene, face, photo = _photo(rng, source, size)
    u = size / 256
    for _ in range(8):  # another person, usually of a noticeably (not wildly) different complexion
        donor = sample_identity(rng)
        if 0.08 < abs(donor.tone - idt.tone) < 0.4 or rng.random() < 0.15:
            break
    # the swap changes the face, not the hair (and usually not the facial hair either)
    donor = replace(donor, hair_style=idt.hair_style, hairline=idt.hairline, fringe=idt.fringe,
                    hair_colour=idt.hair_colour, side_curtain=idt.side_curtain, part_x=idt.part_x,
                    hair_volume=idt.hair_volume, hair_length=idt.hair_length, curl=idt.curl)
    if rng.random() < 0.8:
        donor = replace(donor, beard=idt.beard, mustache=idt.mustache, beard_colour=idt.beard_colour)
    dpose = Pose(pose.cx + float(rng.normal(0, 0.006)), pose.cy + float(rng.normal(0, 0.006)),
                 pose.scale * float(rng.uniform(0.97, 1.03)), pose.angle + float(rng.normal(0, 0.03)))
    relit = rng.random() < 0.45
    dscene = scene
    if relit:
        lx = float(np.clip(-scene.light[0] + rng.normal(0, 0.2), -0.75, 0.75))
        ly = float(rng.uniform(-0.5, 0.05))
        dscene = replace(scene, light=(lx, ly, math.sqrt(max(0.05, 1 - lx * lx - ly * ly))),
                         ambient=float(rng.uniform(0.4, 0.7)))
    fr = face.frame
    kind = str(rng.choice(["inner", "inner", "face", "part"]))
    head = face.head & ~face.part("hair")
    if kind == "inner":
        top = idt.eye_y - idt.brow_gap - 0.03
        bot = idt.mouth_y + idt.lip_lo + 0.03
        cy, ry = (top + bot) / 2, (bot - top) / 2
        rx = idt.eye_sep + idt.eye_w + 0.03
        region = ((np.abs(fr.fx) / rx) ** 2.6 + (np.abs(fr.fy - cy) / ry) ** 2.6 < 1) & head
        regions: tuple[str, ...] = ("eye", "nose", "mouth", "eyebrow", "lip")
    elif kind == "face":
        region = head & (fr.fy > idt.hairline + 0.03) & (fr.fy < idt.head_bot - 0.04)
        regions = ("skin", "eye", "nose", "mouth", "cheek", "forehead")
    else:
        regions = [("eye", "eyebrow"), ("mouth", "lip"), ("nose",), ("eye",)][int(rng.integers(0, 4))]
        region = dilate(_region(face, regions), float(rng.uniform(4, 8)) * u) & head
    region = _fit_fraction(region, size)
    box = _box(region, int(8 * u))
    dface = render_face(donor, dpose, dscene, size, clip=box)
    # swap only where both faces are (the donor's outline must not show)
    region &= ~dilate(~dface.head & ~face.part("hair"), 2.0 * u)
    clean = dface.planar[:, box[0]:box[1], box[2]:box[3]]
    smooth_gan = rng.random() < 0.7
    dnoise = float(rng.uniform(0.2, 1.0)) if smooth_gan else scene.noise * float(rng.uniform(1.8, 2.6))
    dphoto = camera(clean, scene, rng, noise=dnoise, blur_px=float(rng.uniform(0.5, 1.3)),
                    jpeg_q=0 if rng.random() < 0.6 else int(rng.integers(60, 80)), scale=size)
    dphoto = dphoto.astype(F32) / F32(255.0)
    reg = _crop(region, box)
    auth = _crop(photo, box).astype(F32) / F32(255.0)
    diff = auth[reg].mean(0) - dphoto[reg].mean(0)
    keep = float(rng.uniform(0.55, 0.92))  # share of the colour difference the blending corrects
    content = np.clip(dphoto + (diff * keep).astype(F32), 0, 1)
    residual = float(np.abs(diff * (1 - keep)).max())
    feather = float(rng.uniform(1.0, 3.0)) * u
    alpha = _feather(reg, feather)
    forged, mask = composite(photo, content, alpha, box)
    cues = ["identity", "seam"]
    if residual > 0.025:
        cues.append("colour")
    cues.append("noise_low" if smooth_gan else "noise_high")
    if relit:
        cues.append("lighting")
    if kind != "part" and ("eye" in regions):
        cues.append("misaligned")
    touched = touched_regions([face, dface], mask)
    return _finish("e4s", photo, forged, mask, regions, touched, cues, 0,
                   {"kind": kind, "colour_shift": _shift_word(1 - diff * (1 - keep)),
                    "tone_gap": donor.tone - idt.tone})


_LIPSTICK = {"red": (0.72, 0.1, 0.16), "pink": (0.88, 0.42, 0.55), "berry": (0.48, 0.1, 0.25),
             "coral": (0.92, 0.45, 0.35), "plum": (0.42, 0.15, 0.3)}
_SHADOW = {"brown": (0.45, 0.3, 0.22), "blue": (0.3, 0.4, 0.65), "purple": (0.45, 0.3, 0.55),
           "gold": (0.75, 0.6, 0.3), "smoky": (0.22, 0.2, 0.22)}


def _attribute_edit(attr: str, idt: Identity,
                    rng: np.random.Generator) -> tuple[Identity, tuple[str, ...], list[str], dict] | None:
    """The changed identity, targeted regions, cues and details of one attribute edit (None when
    it does not apply to this person, e.g. `bearded` for a full beard)."""
    d: dict[str, Any] = {}
    if attr == "smiling":
        smile = idt.smile + float(rng.uniform(0.012, 0.022))
        width = idt.mouth_w * float(rng.uniform(1.06, 1.16))
        grin = rng.random() < 0.7
        opening = max(idt.mouth_open, float(rng.uniform(0.008, 0.016))) if grin else idt.mouth_open
        new = replace(idt, smile=smile, mouth_w=width, mouth_open=opening, teeth=True)
        t = ("mouth", "lip", "tooth") if new.mouth_open > 0 else ("mouth", "lip")
        return new, t, ["expression", "smile"], d
    if attr == "surprised":
        new = replace(idt, eye_top=idt.eye_top * float(rng.uniform(1.35, 1.7)), eye_bot=idt.eye_bot * 1.2,
                      brow_gap=idt.brow_gap + float(rng.uniform(0.012, 0.02)),
                      brow_arch=idt.brow_arch + float(rng.uniform(0.003, 0.008)),
                      mouth_open=float(rng.uniform(0.016, 0.028)), mouth_w=idt.mouth_w * float(rng.uniform(0.78, 0.9)),
                      smile=idt.smile * 0.3, teeth=rng.random() < 0.5)
        return new, ("eye", "eyebrow", "mouth", "lip"), ["expression", "wide_eyes"], d
    if attr == "angry":
        new = replace(idt, brow_tilt=-float(rng.uniform(0.008, 0.014)),
                      brow_gap=idt.brow_gap - float(rng.uniform(0.004, 0.01)),
                      eye_top=idt.eye_top * float(rng.uniform(0.7, 0.85)),
                      smile=idt.smile - float(rng.uniform(0.005, 0.01)),
                      lip_up=idt.lip_up * 0.8, lip_lo=idt.lip_lo * 0.85, mouth_open=0.0)
        return new, ("eyebrow", "eye", "mouth", "lip"), ["expression", "frown"], d
    if attr == "sad":
        new = replace(idt, brow_tilt=float(rng.uniform(0.007, 0.012)),
                      smile=idt.smile - float(rng.uniform(0.008, 0.014)),
                      eye_top=idt.eye_top * float(rng.uniform(0.8, 0.92)), mouth_open=0.0)
        return new, ("eyebrow", "mouth", "lip"), ["expression", "droop"], d
    if attr == "aged":
        if idt.wrinkles > 0.6:
            return None
        grey = rng.random() < 0.5 and idt.hair_style != "bald"
        hair = idt.hair_colour
        if grey:
            k = float(rng.uniform(0.45, 0.8))
            hair = tuple(float(a + (b - a) * k) for a, b in zip(idt.hair_colour, HAIR_COLOURS["grey"]))
        new = replace(idt, wrinkles=float(rng.uniform(0.65, 1.0)), hair_colour=hair,
                      eye_top=idt.eye_top * 0.88, lip_up=idt.lip_up * 0.85, lip_lo=idt.lip_lo * 0.85)
        d["grey"] = grey
        t = ("wrinkle", "forehead", "eye", "hair") if grey else ("wrinkle", "forehead", "eye", "mouth")
        return new, t, ["age"], d
    if attr == "makeup":
        lip = str(rng.choice(list(_LIPSTICK)))
        shadow = str(rng.choice(list(_SHADOW))) if rng.random() < 0.6 else None
        new = replace(idt, lip_colour=_colour_jitter(rng, _LIPSTICK[lip], 0.05),
                      eye_shadow=_SHADOW[shadow] if shadow else None, lash=min(1.0, idt.lash + 0.4),
                      blush=min(0.8, idt.blush + 0.2))
        d.update(lipstick=lip, eye_shadow=shadow)
        return new, (("lip", "eye") if shadow else ("lip", "mouth")), ["makeup"], d
    if attr in ("pale", "tanned"):
        where = str(rng.choice(["face", "cheek", "forehead", "lower"]))
        k = float(rng.uniform(0.04, 0.08)) * (0.7 if where == "cheek" else 1.0)
        tint = (k, k * 0.95, k * 0.9) if attr == "pale" else (-k * 0.8, -k * 1.1, -k * 1.3)
        new = replace(idt, tint=tint, tint_region=where)
        d["where"] = where
        t = {"face": ("skin", "cheek", "forehead"), "cheek": ("cheek", "skin"), "forehead": ("forehead", "skin"),
             "lower": ("chin", "skin", "cheek")}[where]
        return new, t, ["tone"], d
    if attr == "bearded":
        if idt.beard == "full":
            return None
        kind = "full" if idt.beard != "none" else str(rng.choice(["full", "goatee", "stubble"]))
        colour = idt.beard_colour if rng.random() < 0.6 else _shade_jitter(rng, idt.beard_colour, 0.3)
        new = replace(idt, beard=kind, mustache=kind != "stubble" or idt.mustache, beard_colour=colour)
        d["kind"] = kind
        return new, (("beard", "mustache", "chin") if new.mustache else ("beard", "chin", "jaw")), ["beard"], d
    if attr == "blond":
        if idt.hair_style == "bald" or np.mean(idt.hair_colour) > 0.6:
            return None
        base = HAIR_COLOURS["blond" if rng.random() < 0.7 else "platinum"]
        hair = _colour_jitter(rng, base, 0.05)
        brows = _colour_jitter(rng, np.asarray(base) * 0.6, 0.05) if rng.random() < 0.3 else idt.brow_colour
        new = replace(idt, hair_colour=hair, brow_colour=brows)
        return new, ("hair",), ["hair_colour"], d
    raise ValueError(f"unknown attribute {attr!r}")


def forge_attribute(rng: np.random.Generator, attr: str, size: int) -> Forgery:
    source = "celeb512"
    u = size / 256
    for _ in range(8):
        idt, pose, scene, face, photo = _photo(rng, source, size)
        edit = _attribute_edit(attr, idt, rng)
        if edit is not None:
            break
    new_id, targets, cues, detail = edit
    # redraw only around the parts the edit can change (generous margins: nothing it changes
    # may fall outside the box)
    near_parts = {
        "smiling": ("mouth", "lip", "cheek"), "surprised": ("eye", "eyebrow", "mouth", "lip", "cheek"),
        "angry": ("eye", "eyebrow", "mouth", "lip", "cheek"), "sad": ("eye", "eyebrow", "mouth", "lip", "cheek"),
        "makeup": ("eye", "eyebrow", "mouth", "lip", "cheek"),
        "aged": None if detail.get("grey") else ("forehead", "eye", "eyebrow", "nose", "mouth", "cheek"),
        "bearded": ("jaw", "chin", "cheek", "mouth", "lip", "nose"),
        "pale": None, "tanned": None, "blond": None,
    }[attr]
    if attr in ("pale", "tanned") and detail.get("where") != "face":
        near_parts = {"cheek": ("cheek", "nose"), "forehead": ("forehead", "eyebrow"),
                      "lower": ("chin", "jaw", "cheek", "mouth")}[detail["where"]]
    box = _box(_region(face, near_parts), int(40 * u)) if near_parts else None
    if attr in ("pale", "tanned") and detail.get("where") == "face":
        box = _box(face.head, int(40 * u))
    alt = render_face(new_id, pose, scene, size, clip=box)
    b = box or (0, size, 0, size)
    changed = np.abs(alt.planar[:, b[0]:b[1], b[2]:b[3]] - face.planar[:, b[0]:b[1], b[2]:b[3]]).max(0) > (2.0 / 255)
    full = np.zeros((size, size), bool)
    _crop(full, b)[:] = changed
    region = _clean(dilate(full, 2.0 * u), size)
    region = _fit_fraction(region, size)
    box = _box(region, int(8 * u))
    sigma = float(rng.uniform(0.7, 1.3)) * u
    gain = (1 + rng.normal(0, 0.015, 3)).astype(F32)
    content = np.clip(blur(alt.crop(box), sigma) * gain, 0, 1)
    alpha = _feather(_crop(region, box), float(rng.uniform(1.0, 2.2)) * u)
    forged, mask = composite(photo, content, alpha, box)
    cues = list(cues) + ["smooth"]
    touched = touched_regions([face, alt], mask)
    return _finish(attr, photo, forged, mask, targets, touched, cues, 0, detail)


def _shift_word(gain) -> str:
    """The colour direction of a multiplicative shift (for the explanation)."""
    g = np.asarray(gain, float)
    r, gg, b = g - g.mean()
    if g.mean() > 1.03:
        return "lighter"
    if g.mean() < 0.97:
        return "darker"
    if r > 0.02 and b < 0:
        return "warmer"
    if b > 0.02:
        return "cooler"
    if gg > 0.015:
        return "greenish"
    return "duller"


def _finish(method: str, photo, forged, mask, targets, touched, cues, side: int, detail: dict) -> Forgery:
    targets = tuple(t for t in dict.fromkeys(targets) if t in touched)
    if not targets:
        # the aimed-at part may be hidden (hair over an eye ...): name what the mask does cover
        order = [r for r in FACE_REGIONS if r in touched and r != "skin"] or sorted(touched) or ["skin"]
        targets = tuple(order[:2])
        touched = frozenset(touched | set(targets))
    return Forgery(method, photo, forged, mask, targets, touched, tuple(dict.fromkeys(cues)),
                   _side_name(side), detail)


def forge(rng: np.random.Generator, method: str, source: str, size: int = 256) -> Forgery:
    """Render a photograph from `source` style and manipulate it with `method` (sd, mat, e4s
    or an attribute name). A result whose mask is outside the realistic size range (a long
    mane turned blond, say) is drawn again with another face."""
    if method not in FAMILIES and method not in ATTRIBUTES:
        raise ValueError(f"unknown manipulation {method!r}: one of {sorted(FAMILIES) + list(ATTRIBUTES)}")
    f = None
    for _ in range(6):
        if method == "sd":
            f = forge_sd(rng, source, size)
        elif method == "mat":
            f = forge_mat(rng, source, size)
        elif method == "e4s":
            f = forge_e4s(rng, source, size)
        else:
            f = forge_attribute(rng, method, size)
        if MIN_FRACTION <= f.fraction <= MAX_FRACTION:
            break
    return f
