"""One MMTT sample as the official split files describe it, and what its id and path tell.

The manipulation method is encoded in the `image_id` prefix (`sd` diffusion inpainting, `mat`
MAT transformer inpainting, `e4s` GAN face swap, anything else face-attribute editing) and the
image source in the first folders of `img_path` (`celeb512` CelebA-HQ, `FFHQ512` FFHQ,
`face_attribute_image` the attribute-editing set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from benchmark.data.regions import REGIONS, regions_of

METHODS: tuple[str, ...] = ("diffusion-inpainting", "transformer-inpainting", "gan-faceswap", "attribute-editing")
SOURCES: tuple[str, ...] = ("celeba-hq", "ffhq", "face-attribute", "other")

_PREFIX_METHOD = {"sd": "diffusion-inpainting", "mat": "transformer-inpainting", "e4s": "gan-faceswap"}
_FOLDER_SOURCE = {"celeb512": "celeba-hq", "ffhq512": "ffhq", "face_attribute_image": "face-attribute"}


def method_of(image_id: str) -> str:
    """The manipulation family, from the id prefix (the part before the first `_`)."""
    prefix = image_id.split("_", 1)[0].lower()
    return _PREFIX_METHOD.get(prefix, "attribute-editing")


def source_of(img_path: str) -> str:
    """The image source, from the first known folder name in the relative image path."""
    for part in img_path.replace("\\", "/").split("/"):   # the parts pathlib sees, plus "" and "."
        source = _FOLDER_SOURCE.get(part.lower())
        if source:
            return source
    return "other"


def prediction_mask_path(img_path: str) -> str:
    """Where the official harness writes a predicted mask: `img_path` with its extension -> `.png`
    (`PurePosixPath.with_suffix`; done on the string when pathlib would not normalise it)."""
    rel = img_path.replace("\\", "/")
    parts = rel.split("/")
    if "" in parts or "." in parts:
        return str(PurePosixPath(rel).with_suffix(".png"))
    name = parts[-1]
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name   # pathlib's rule for a suffix
    return "/".join([*parts[:-1], stem + ".png"])


@dataclass(frozen=True)
class Record:
    """A sample of a split file. `extra` keeps any key the release has beyond the known ones."""

    image_id: str
    img_path: str
    mask_path: str
    caption: str
    multilabel: tuple[int, ...]
    instance_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def method(self) -> str:
        return method_of(self.image_id)

    @property
    def source(self) -> str:
        return source_of(self.img_path)

    @property
    def regions(self) -> frozenset[str]:
        return regions_of(self.multilabel)

    @property
    def pred_mask_path(self) -> str:
        return prediction_mask_path(self.img_path)

    def to_json(self) -> dict[str, Any]:
        """The record in the official key order (extra keys after)."""
        out: dict[str, Any] = {"image_id": self.image_id}
        if self.instance_id is not None:
            out["instance_id"] = self.instance_id
        out.update(img_path=self.img_path, mask_path=self.mask_path, caption=self.caption,
                   multilabel=list(self.multilabel))
        out.update(self.extra)
        return out


__all__ = ["METHODS", "SOURCES", "REGIONS", "Record", "method_of", "source_of", "prediction_mask_path"]
