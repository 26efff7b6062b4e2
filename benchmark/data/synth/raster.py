"""Small vectorised drawing kit: an aligned-face coordinate frame and soft shapes on it.

Everything is drawn in float32 RGB in [0, 1]. Shapes are evaluated only on the pixel window
their face-frame bounding box covers, so a face of ~100 parts costs a few milliseconds. Edges
are anti-aliased with a signed-distance ramp one pixel wide (wider for soft shading), which is
what keeps part masks and composites clean at 256 px.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

Window = tuple[slice, slice]
F32 = np.float32


_GRIDS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


@dataclass
class Frame:
    """Maps aligned-face coordinates (origin near the nose, +y down, face half-width ~0.26) to
    pixels of a square image: the jitter of an FFHQ/CelebA-HQ style crop is a centre, a scale
    and an in-plane rotation."""

    size: int
    cx: float = 0.5
    cy: float = 0.5
    scale: float = 1.0
    angle: float = 0.0
    clip: tuple[int, int, int, int] | None = None  # (row0, row1, col0, col1): draw only there

    def __post_init__(self) -> None:
        s = self.size
        key = (s, self.cx, self.cy, self.scale, self.angle)
        grids = _GRIDS.get(key)
        if grids is None:  # a face and its re-render share the pose: compute the grids once
            px = (np.arange(s, dtype=F32) + F32(0.5)) / F32(s)
            du = px[None, :] - F32(self.cx)
            dv = px[:, None] - F32(self.cy)
            c, n = F32(math.cos(self.angle)), F32(math.sin(self.angle))
            grids = (((c * du + n * dv) / F32(self.scale)).astype(F32),
                     ((-n * du + c * dv) / F32(self.scale)).astype(F32))
            for g in grids:
                g.flags.writeable = False
            if len(_GRIDS) >= 8:
                _GRIDS.clear()
            _GRIDS[key] = grids
        self.fx, self.fy = grids
        self.px = 1.0 / (s * self.scale)  # one pixel, in face units
        self._cos, self._sin = math.cos(self.angle), math.sin(self.angle)

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Face-frame point -> (column, row) in pixels."""
        c, n = self._cos, self._sin
        u = self.cx + self.scale * (c * x - n * y)
        v = self.cy + self.scale * (n * x + c * y)
        return u * self.size, v * self.size

    def window(self, x0: float, y0: float, x1: float, y1: float, pad: int = 2) -> Window | None:
        """The pixel window covering a face-frame box (None when it falls outside the image)."""
        u, v = self.to_pixel((x0 + x1) / 2, (y0 + y1) / 2)
        k = self.scale * self.size
        c, s = abs(self._cos), abs(self._sin)
        hw, hh = (x1 - x0) / 2 * k, (y1 - y0) / 2 * k
        du, dv = c * hw + s * hh, s * hw + c * hh
        c0 = max(0, int(u - du) - pad)
        c1 = min(self.size, int(u + du) + 1 + pad)
        r0 = max(0, int(v - dv) - pad)
        r1 = min(self.size, int(v + dv) + 1 + pad)
        if self.clip is not None:
            r0, r1 = max(r0, self.clip[0]), min(r1, self.clip[1])
            c0, c1 = max(c0, self.clip[2]), min(c1, self.clip[3])
        if c1 <= c0 or r1 <= r0:
            return None
        return slice(r0, r1), slice(c0, c1)

    def coords(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        return self.fx[win], self.fy[win]

    def area(self) -> Window:
        """The pixel window being drawn: the clip box, or the whole image."""
        if self.clip is None:
            return slice(0, self.size), slice(0, self.size)
        return slice(self.clip[0], self.clip[1]), slice(self.clip[2], self.clip[3])


@dataclass
class Layer:
    """A soft shape: alpha in [0, 1] on a pixel window."""

    win: Window
    a: np.ndarray

    def full(self, size: int) -> np.ndarray:
        out = np.zeros((size, size), F32)
        out[self.win] = self.a
        return out


def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Signed distance (positive inside, face units) -> alpha, with a ramp `width` wide."""
    a = (d * F32(1.0 / width) + F32(0.5)).astype(F32, copy=False)
    np.maximum(a, F32(0.0), out=a)
    return np.minimum(a, F32(1.0), out=a)


def superellipse(fr: Frame, cx: float, cy: float, rx: float, ry: float, *, n: float = 2.0,
                 angle: float = 0.0, soft: float = 1.0, ry_below: float | None = None,
                 n_below: float | None = None, taper: float = 0.0) -> Layer | None:
    """An ellipse (n=2) or squarer superellipse; the lower half may have its own height and
    exponent and narrow downwards (`taper`), which is how head outlines get a jaw and a chin
    different from the skull."""
    r = max(rx, ry, ry if ry_below is None else ry_below)
    win = fr.window(cx - r, cy - r, cx + r, cy + r)
    if win is None:
        return None
    x, y = fr.coords(win)
    if n == 2.0 and ry_below is None and n_below is None and not taper:
        return Layer(win, ellipse_alpha(fr, x, y, cx, cy, rx, ry, angle=angle, soft=soft))
    return Layer(win, superellipse_alpha(fr, x, y, cx, cy, rx, ry, n=n, angle=angle, soft=soft,
                                         ry_below=ry_below, n_below=n_below, taper=taper))


def superellipse_alpha(fr: Frame, x: np.ndarray, y: np.ndarray, cx: float, cy: float,
                       rx: float | np.ndarray, ry: float, *, n: float = 2.0, angle: float = 0.0,
                       soft: float = 1.0, ry_below: float | None = None,
                       n_below: float | None = None, taper: float = 0.0) -> np.ndarray:
    """The alpha of `superellipse` on given face coordinates (rx may vary per pixel)."""
    ryb = ry if ry_below is None else ry_below
    nb = n if n_below is None else n_below
    dx, dy = x - F32(cx), y - F32(cy)
    if angle:
        c, s = F32(math.cos(angle)), F32(math.sin(angle))
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    below = dy > 0
    ryy = np.where(below, F32(ryb), F32(ry)) if ryb != ry else F32(ry)
    rxx = np.asarray(rx, dtype=F32)
    if taper:
        t = np.clip(dy / ryy, 0, 1)
        rxx = rxx * (F32(1) - F32(taper) * t * t)
    ax, ay = np.abs(dx) / rxx, np.abs(dy) / ryy
    if n == 2.0 and nb == 2.0:
        rad = np.sqrt(ax * ax + ay * ay)
    elif n == 4.0 and nb == 4.0:
        ax, ay = ax * ax, ay * ay
        rad = np.sqrt(np.sqrt(ax * ax + ay * ay))
    elif nb == n:
        rad = (ax ** F32(n) + ay ** F32(n)) ** F32(1.0 / n)
    else:
        nn = np.where(below, F32(nb), F32(n)) if nb != n else F32(n)
        rad = (ax ** nn + ay ** nn) ** (F32(1.0) / nn)
    d = (F32(1.0) - rad) * np.minimum(rxx, ryy)
    return _ramp(d, soft * fr.px)


def ellipse_alpha(fr: Frame, x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
                  *, angle: float = 0.0, soft: float = 1.0) -> np.ndarray:
    """Alpha of an ellipse on given face coordinates (the common case, kept cheap)."""
    dx = x - F32(cx)
    dy = y - F32(cy)
    if angle:
        c, s = F32(math.cos(angle)), F32(math.sin(angle))
        dx, dy = c * dx + s * dy, c * dy - s * dx
    dx *= F32(1.0 / rx)
    dy *= F32(1.0 / ry)
    dx *= dx
    dy *= dy
    dx += dy
    np.sqrt(dx, out=dx)
    k = min(rx, ry) / (soft * fr.px)  # alpha = k * (1 - radius) + 1/2
    dx *= F32(-k)
    dx += F32(k + 0.5)
    np.maximum(dx, F32(0), out=dx)
    return np.minimum(dx, F32(1), out=dx)


def ellipse(fr: Frame, cx: float, cy: float, rx: float, ry: float, *, angle: float = 0.0,
            soft: float = 1.0) -> Layer | None:
    r = max(rx, ry)
    win = fr.window(cx - r, cy - r, cx + r, cy + r)
    if win is None:
        return None
    x, y = fr.coords(win)
    return Layer(win, ellipse_alpha(fr, x, y, cx, cy, rx, ry, angle=angle, soft=soft))


def between_alpha(fr: Frame, x: np.ndarray, y: np.ndarray, x0: float, x1: float,
                  top: Callable[[np.ndarray], np.ndarray], bottom: Callable[[np.ndarray], np.ndarray], *,
                  soft: float = 1.0, end_soft: float | None = None) -> np.ndarray:
    """Alpha of `between` on given face coordinates."""
    xc = np.clip(x, x0, x1)
    d = np.minimum(y - top(xc), bottom(xc) - y)
    es = (end_soft if end_soft is not None else soft) * fr.px
    dx = np.minimum(x - F32(x0), F32(x1) - x)
    dx *= F32(1.0 / es)
    dx += F32(0.5)
    np.clip(dx, 0.0, 1.0, out=dx)
    a = _ramp(d, soft * fr.px)
    a *= dx
    return a


def between(fr: Frame, x0: float, x1: float, top: Callable[[np.ndarray], np.ndarray],
            bottom: Callable[[np.ndarray], np.ndarray], ylo: float, yhi: float, *,
            soft: float = 1.0, end_soft: float | None = None) -> Layer | None:
    """The region between two curves y=top(x) and y=bottom(x) for x0<=x<=x1 (lips, eye
    openings, brows): distances are vertical, which is accurate for the flat curves of a face."""
    win = fr.window(x0, ylo, x1, yhi)
    if win is None:
        return None
    x, y = fr.coords(win)
    return Layer(win, between_alpha(fr, x, y, x0, x1, top, bottom, soft=soft, end_soft=end_soft))


def stroke_alpha(fr: Frame, x: np.ndarray, y: np.ndarray, pts, width, *, soft: float = 1.0) -> np.ndarray:
    """Alpha of a polyline of (possibly tapering) width on given face coordinates; all
    segments are evaluated at once."""
    p = np.asarray(pts, dtype=F32)
    w = np.broadcast_to(np.asarray(width, dtype=F32), (len(p),))
    a, b = p[:-1], p[1:]
    v = b - a
    ll = (v * v).sum(1) + F32(1e-12)
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    vx, vy = v[:, 0, None, None], v[:, 1, None, None]
    px, py = x[None] - ax, y[None] - ay
    t = (px * vx + py * vy) / ll[:, None, None]
    np.clip(t, 0.0, 1.0, out=t)
    px -= t * vx
    py -= t * vy
    d = np.sqrt(px * px + py * py)
    d -= (w[:-1, None, None] + t * (w[1:] - w[:-1])[:, None, None]) * F32(0.5)
    return _ramp(-d.min(0), soft * fr.px)


def stroke(fr: Frame, pts: list[tuple[float, float]], width: float | list[float], *,
           soft: float = 1.0) -> Layer | None:
    """A polyline of (possibly tapering) width: wrinkles, scars, creases, shading bands."""
    p = np.asarray(pts, dtype=np.float64)
    m = float(np.max(width)) / 2 + 2 * fr.px + soft * fr.px
    win = fr.window(float(p[:, 0].min()) - m, float(p[:, 1].min()) - m,
                    float(p[:, 0].max()) + m, float(p[:, 1].max()) + m)
    if win is None:
        return None
    x, y = fr.coords(win)
    return Layer(win, stroke_alpha(fr, x, y, pts, width, soft=soft))


def rgb(colour) -> np.ndarray:
    """An RGB triple as a (3, 1, 1) array, ready to broadcast over a planar window."""
    return np.asarray(colour, dtype=F32).reshape(3, 1, 1)


def paint(img: np.ndarray, layer: Layer | None, colour, opacity: float = 1.0) -> None:
    """Composite a colour through a layer onto a planar (3, H, W) image. `colour` is an RGB
    triple, a (3, h, w) array on the layer's window, or a full (3, H, W) array."""
    if layer is None:
        return
    r, c = layer.win
    region = img[:, r, c]
    col = np.asarray(colour, dtype=F32)
    if col.ndim == 1:
        col = col.reshape(3, 1, 1)
    elif col.shape[1:] != region.shape[1:] and col.shape[1:] != (1, 1):
        col = col[:, r, c]
    a = layer.a if opacity == 1.0 else layer.a * F32(opacity)
    delta = np.subtract(col, region, dtype=F32)  # one temporary, updated in place
    delta *= a
    region += delta


def shade(img: np.ndarray, layer: Layer | None, factor: float | np.ndarray) -> None:
    """Multiply through a layer (factor < 1 darkens: shadows, creases; > 1 lightens)."""
    if layer is None:
        return
    r, c = layer.win
    f = np.asarray(factor, dtype=F32)
    gain = (f - F32(1.0)) * layer.a
    gain += F32(1.0)
    img[:, r, c] *= gain


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int,
                 channels: int = 0) -> np.ndarray:
    """Smooth random field ~N(0,1) per cell, upsampled bilinearly: skin mottling, lighting
    irregularities, background blobs. Cheap because the randomness lives on a coarse grid and
    the upsampling is two small matrix products. With `channels`, the result is planar
    (channels, H, W)."""
    h, w = shape
    ch = max(channels, 1)
    rows, cols = _lerp_matrix(cells, h), _lerp_matrix(cells, w).T
    out = np.empty((ch, h, w), F32)
    for c in range(ch):
        g = rng.standard_normal((cells, cells)).astype(F32)
        np.matmul(rows, g @ cols, out=out[c])
    return out if channels else out[0]


_LERP: dict[tuple[int, int], np.ndarray] = {}


def _lerp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bilinear upsampling with pixel centres aligned and edges held
    (what PIL's BILINEAR resize does when enlarging)."""
    m = _LERP.get((n_in, n_out))
    if m is None:
        centre = (np.arange(n_out) + 0.5) * (n_in / n_out)
        m = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in) + 0.5 - centre[:, None]))
        m = (m / m.sum(1, keepdims=True)).astype(F32)
        m.flags.writeable = False
        _LERP[(n_in, n_out)] = m
    return m


def blur(a: np.ndarray, sigma: float, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Separable Gaussian blur along `axes` (rows, cols) of a float array, edges replicated:
    (0, 1) for HxW or HxWxC arrays, (1, 2) for planar CxHxW ones. Large sigmas run on a
    reduced copy: the result is smooth anyway."""
    if sigma <= 0.05:
        return a.astype(F32, copy=True)
    if sigma > 3.0:
        f = max(2, int(sigma // 1.5))
        small = _shrink(np.asarray(a, dtype=F32), f, axes)
        return _grow(blur(small, math.sqrt(max(sigma * sigma - f * f / 4.0, 0.25)) / f, axes), f,
                     (a.shape[axes[0]], a.shape[axes[1]]), axes)
    out = np.asarray(a, dtype=F32)
    for axis in axes:
        out = blur_lines(out, sigma, axis)
    return out


def blur_lines(a: np.ndarray, sigma: float, axis: int = -1) -> np.ndarray:
    """Gaussian blur along one axis (scipy's C loop; taps beyond the array take the edge
    value). Along the last axis the lines are contiguous: twice as fast as across them."""
    return ndimage.gaussian_filter1d(a, sigma, axis=axis, mode="nearest", truncate=3.0, output=F32)


def _shrink(a: np.ndarray, f: int, axes: tuple[int, int]) -> np.ndarray:
    """Mean over f x f cells along `axes` (edges replicated up to a multiple of f)."""
    for axis in axes:
        n = a.shape[axis]
        m = -(-n // f) * f
        if m != n:
            pad = [(0, 0)] * a.ndim
            pad[axis] = (0, m - n)
            a = np.pad(a, pad, mode="edge")
        shape = a.shape[:axis] + (m // f, f) + a.shape[axis + 1:]
        a = a.reshape(shape).mean(axis=axis + 1, dtype=F32)
    return a


def _grow(a: np.ndarray, f: int, size: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    """Linear interpolation of f x f cell means back to `size` pixels along `axes`."""
    for axis, n in zip(axes, size):
        m = a.shape[axis]
        pos = np.clip((np.arange(n, dtype=F32) - F32((f - 1) / 2)) / F32(f), 0, m - 1)
        i0 = np.minimum(pos.astype(np.int64), m - 1)
        i1 = np.minimum(i0 + 1, m - 1)
        w = (pos - i0).astype(F32)
        shape = [1] * a.ndim
        shape[axis] = n
        w = w.reshape(shape)
        lo = np.take(a, i0, axis=axis)
        hi = np.take(a, i1, axis=axis)
        a = lo + (hi - lo) * w
    return a


def box_dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)-square, via running maxima along each axis."""
    if r <= 0:
        return m.copy()
    out = m.copy()
    for axis in (0, 1):
        acc = out.copy()
        for s in range(1, r + 1):
            fwd = [slice(None)] * 2
            bwd = [slice(None)] * 2
            fwd[axis], bwd[axis] = slice(s, None), slice(None, -s)
            acc[tuple(fwd)] |= out[tuple(bwd)]
            acc[tuple(bwd)] |= out[tuple(fwd)]
        out = acc
    return out


def disk_dilate(m: np.ndarray, r: float) -> np.ndarray:
    """Roundish dilation: blur the mask and threshold (rounder than a square)."""
    if r <= 0:
        return m.copy()
    b = blur(m.astype(F32), r / 2.0)
    return b > 0.08


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGB -> the same after one JPEG encode/decode (leaves an 8x8-grid history)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return np.array(Image.open(buf))
