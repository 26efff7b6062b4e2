"""Classical forensic localizers: no training, one statistic per pixel compared with the image's own.

A forgery is new content pasted into a photograph; whatever the camera and the compression left
everywhere else (sensor noise, JPEG history, optical sharpness) it usually lacks or has at another
level. Each localizer measures one such trace in local windows and flags the windows that depart
from the image's median by several robust standard deviations (median absolute deviation):

- `ela` (error-level analysis): re-save as JPEG and look at how much each area changes; content
  that never went through the camera's JPEG changes more.
- `noise-residual`: the energy of the residual after a 3x3 median filter (sensor noise lives
  there); edited areas are too clean or carry another noise level.
- `blur-inconsistency`: fine-detail energy (Laplacian) relative to local contrast; inpainted and
  generated areas are softer than the optics around them.

They run on the harness's device (ELA's JPEG step on the CPU) and return S/2-sized masks.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from baselines.base import Baseline
from benchmark.harness.interface import Batch, Output

LUMA = (0.299, 0.587, 0.114)


def grey(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W) luma on the 0-255 scale."""
    w = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True) * 255.0


def box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window (reflect-padded, same size), from running sums in float64 along
    each axis: the cost does not grow with k (a stride-1 average pool adds k x k values per pixel,
    which made the 16 px windows most of the forensic localizers' run time), and the mean is
    exact to ~1e-11 before its one rounding to the input's dtype."""
    p = k // 2
    c = F.pad(F.pad(x, (p, k - 1 - p, p, k - 1 - p), mode="reflect").double().cumsum(-1), (1, 0))
    rows = c[..., k:] - c[..., :-k]                     # window sums along W
    c = F.pad(rows.cumsum(-2), (0, 0, 1, 0))
    return ((c[..., k:, :] - c[..., :-k, :]) / (k * k)).to(x.dtype)


# Paeth's median-of-9 network: after these 19 exchanges (min to the first, max to the second)
# the 5th of 9 values is the median, exactly torch.median's
_MEDIAN9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
            (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def median3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter (reflect-padded, same size). An exchange network over the nine shifted
    views instead of unfold + median: the same values, ~10x less time, and it was half of a
    U-Net training step on the CPU."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    v = [p[..., i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for a, b in _MEDIAN9:
        v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
    return v[4].contiguous()


def laplacian(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k)


def residual_maps(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Two noise-trace channels for learned localizers: (B, 2, H/pool, W/pool).

    The log energy of the 3x3-median residual and of the Laplacian, averaged over pool x pool
    cells (over a 4x4 neighbourhood when pool is 1) and centred on each image's median — the
    forensic evidence the statistics above use, handed to a network that learns how to weigh
    it. `x` may be normalised per channel (only differences of neighbouring pixels matter).
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        g = grey(x) / 255.0
        maps = []
        for r in ((g - median3(g)).abs(), laplacian(g).abs()):
            e = F.avg_pool2d(r, pool) if pool > 1 else box(r, 4)
            e = torch.log(e + 1e-3)
            maps.append(e - e.flatten(1).median(dim=1).values.view(-1, 1, 1, 1))
        return torch.cat(maps, dim=1)


def robust_z(stat: torch.Tensor) -> torch.Tensor:
    """(stat - median) / (1.4826 * MAD), per image: how unusual each window is for this image."""
    flat = stat.flatten(1)
    med = flat.median(dim=1).values.view(-1, 1, 1, 1)
    mad = (flat - med.view(-1, 1)).abs().median(dim=1).values.view(-1, 1, 1, 1)
    return (stat - med) / (1.4826 * mad + 1e-6)


def to_probability(z: torch.Tensor, out_size: int, threshold: float, softness: float) -> torch.Tensor:
    """Smooth the z-map into blobs and map it to (B, out, out) probabilities (0.5 at `threshold`)."""
    z = F.interpolate(box(z, 9), size=(out_size, out_size), mode="bilinear", align_corners=False)
    return torch.sigmoid((z - threshold) / softness).squeeze(1)


class ForensicLocalizer(Baseline):
    kind = "localizer"
    batch_size = 32

    def __init__(self, name: str, image_size: int = 256, window: int = 16, threshold: float = 2.0,
                 softness: float = 0.5, two_sided: bool = False) -> None:
        super().__init__()
        self.name, self.image_size, self.window = name, int(image_size), int(window)
        self.threshold, self.softness, self.two_sided = float(threshold), float(softness), bool(two_sided)

    def statistic(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, batch: Batch) -> Output:
        images = batch.images.float()
        with torch.autocast(images.device.type, enabled=False):  # noise statistics need full precision
            z = robust_z(self.statistic(images))
            if self.two_sided:
                z = z.abs()
            return Output(masks=to_probability(z, self.image_size // 2, self.threshold, self.softness))


class ErrorLevel(ForensicLocalizer):
    """Mean absolute change after one JPEG re-save at `quality`, per window (high = suspicious)."""

    def __init__(self, quality: int = 90, **kw) -> None:
        kw.setdefault("threshold", 3.0)  # 2 and 3 tried on the mini-MMTT eval split; 3 was better
        super().__init__("ela", **kw)
        self.quality = int(quality)

    def statistic(self, images: torch.Tensor) -> torch.Tensor:
        u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        diffs = []
        for arr in u8:
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=self.quality)
            again = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.int16)
            diffs.append(np.abs(arr.astype(np.int16) - again).mean(axis=2))
        d = torch.from_numpy(np.stack(diffs).astype(np.float32)).unsqueeze(1).to(images.device)
        return box(d, self.window)


class NoiseResidual(ForensicLocalizer):
    """log energy of the 3x3-median residual per window; both too clean and too noisy stand out."""

    def __init__(self, **kw) -> None:
        kw.setdefault("two_sided", True)
        kw.setdefault("threshold", 2.5)
        super().__init__("noise-residual", **kw)

    def statistic(self, images: torch.Tensor) -> torch.Tensor:
        g = grey(images)
        residual = (g - median3(g)).abs()
        return torch.log(box(residual, self.window) + 0.05)


class BlurInconsistency(ForensicLocalizer):
    """-log(Laplacian energy / local contrast) per window (high = softer than the image is)."""

    def __init__(self, **kw) -> None:
        super().__init__("blur-inconsistency", **kw)

    def statistic(self, images: torch.Tensor) -> torch.Tensor:
        g = grey(images)
        detail = box(laplacian(g).abs(), self.window)
        contrast = box((g - box(g, 9)).abs(), self.window)
        return -torch.log((detail + 0.5) / (contrast + 0.5))


def build_ela(**options) -> ErrorLevel:
    return ErrorLevel(**options)


def build_noise_residual(**options) -> NoiseResidual:
    return NoiseResidual(**options)


def build_blur_inconsistency(**options) -> BlurInconsistency:
    return BlurInconsistency(**options)
