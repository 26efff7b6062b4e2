"""The 21 facial-region labels of MMTT and the words that mention them, in one place.

The order is the order of the `multilabel` vector in the official split files. A region is
mentioned when any of its words occurs as a whole word, case-insensitively — the rule the
official data preparation used to derive `multilabel` from the explanation, so labels computed
here agree with the released vectors. (Some words map to two regions, e.g. "buccal".)
"""

from __future__ import annotations

import re
from functools import lru_cache

REGION_WORDS: dict[str, tuple[str, ...]] = {
    "eye": ("eye", "eyes", "ocular", "optic", "vision"),
    "pupil": ("pupil", "pupils"),
    "lip": ("lip", "lips", "labium", "labia"),
    "mouth": ("mouth", "mouths", "oral cavity", "buccal"),
    "nose": ("nose", "noses", "nasal", "nostril", "nostrils"),
    "ear": ("ear", "ears", "auricle", "pinna", "pinnae"),
    "cheek": ("cheek", "cheeks", "buccal", "malar"),
    "forehead": ("forehead", "frontal", "brow", "brows"),
    "chin": ("chin", "chins", "mentum"),
    "jaw": ("jaw", "jaws", "mandible", "maxilla"),
    "eyebrow": ("eyebrow", "eyebrows"),
    "tooth": ("tooth", "teeth", "dentition"),
    "tongue": ("tongue", "tongues", "glossa", "lingua"),
    "beard": ("beard", "beards", "facial hair"),
    "mustache": ("mustache", "mustaches", "moustache", "moustaches"),
    "skin": ("skin", "derma", "epidermis", "cutis"),
    "hair": ("hair", "hairs", "locks", "tresses", "strands"),
    "wrinkle": ("wrinkle", "wrinkles", "line", "lines", "crease", "creases"),
    "freckle": ("freckle", "freckles", "lentigo", "lentigines"),
    "scar": ("scar", "scars", "cicatrix", "cicatrices"),
    "dimple": ("dimple", "dimples", "fossa", "fossae"),
}

REGIONS: tuple[str, ...] = tuple(REGION_WORDS)
N_REGIONS = len(REGIONS)
assert N_REGIONS == 21


@lru_cache(maxsize=None)
def _pattern(region: str) -> re.Pattern[str]:
    words = sorted(REGION_WORDS[region], key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def mentioned_regions(text: str) -> frozenset[str]:
    """The regions an explanation mentions (by any of their words)."""
    return frozenset(r for r in REGIONS if _pattern(r).search(text))


def multilabel(text: str) -> list[int]:
    """The 21-int vector of mentioned regions, in the official order."""
    found = mentioned_regions(text)
    return [int(r in found) for r in REGIONS]


def regions_of(vector: list[int] | tuple[int, ...]) -> frozenset[str]:
    """The region names a 21-int multilabel vector switches on."""
    if len(vector) != N_REGIONS:
        raise ValueError(f"a multilabel vector has {N_REGIONS} entries, got {len(vector)}")
    return frozenset(r for r, v in zip(REGIONS, vector) if v)
