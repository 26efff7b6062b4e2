"""Human-like explanations written from what a forgery really did.

An explanation names the regions the manipulation aimed at (`Forgery.targets`), sometimes a
neighbouring region it also covered (`Forgery.touched`), and describes the artefacts the family
actually left (`Forgery.cues`), in varied words and sentence orders, with hedges and remarks.

The region matcher of benchmark.data.regions is word-based and generous ("line" is a wrinkle,
"brow" a forehead, "strands" hair, "vision" an eye), so every phrase here avoids those words
unless it means the region, and `explain` checks the result: the regions it mentions must be
regions the mask covers. `multilabel` is then computed from the final text.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.regions import mentioned_regions
from benchmark.data.synth.forge import Forgery

PAIRED = {"eye", "eyebrow", "cheek", "ear", "pupil"}

# region -> (names for one side / the single part, names for both / the whole)
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "eye": (("eye", "eye", "eye area"), ("eyes", "eyes", "eye area", "eye region", "ocular area")),
    "pupil": (("pupil", "iris and pupil"), ("pupils", "irises and pupils")),
    "lip": (("lips",), ("lips", "lips", "upper and lower lips")),
    "mouth": (("mouth",), ("mouth", "mouth", "mouth area", "mouth region")),
    "nose": (("nose",), ("nose", "nose", "nasal area", "nose bridge", "tip of the nose")),
    "ear": (("ear",), ("ears",)),
    "cheek": (("cheek", "cheek area"), ("cheeks", "cheeks", "cheek area", "malar area")),
    "forehead": (("forehead",), ("forehead", "forehead", "forehead area")),
    "chin": (("chin",), ("chin", "chin", "chin area")),
    "jaw": (("jaw",), ("jaw", "jaw area", "lower jaw")),
    "eyebrow": (("eyebrow",), ("eyebrows",)),
    "tooth": (("teeth",), ("teeth", "teeth", "front teeth")),
    "tongue": (("tongue",), ("tongue",)),
    "beard": (("beard",), ("beard", "beard", "beard area")),
    "mustache": (("mustache",), ("mustache", "moustache")),
    "skin": (("skin",), ("skin", "skin", "skin texture", "skin surface")),
    "hair": (("hair",), ("hair", "hair", "hair area")),
    "wrinkle": (("wrinkles",), ("wrinkles", "wrinkles", "creases")),
    "freckle": (("freckles",), ("freckles",)),
    "scar": (("scar",), ("scar",)),
    "dimple": (("dimple",), ("dimple",)),
}
_PLURAL_WORDS = {"eyes", "lips", "pupils", "irises and pupils", "ears", "cheeks", "eyebrows", "teeth",
                 "front teeth", "wrinkles", "creases", "freckles", "upper and lower lips"}

# Predicates: {v} marks verbs conjugated for the subject (singular form written);
# {it}/{its} refer back to the subject.
CUES: dict[str, tuple[str, ...]] = {
    "smooth": (
        "{looks} unnaturally smooth", "{looks} overly smooth, almost waxy", "{has} a waxy, plastic appearance",
        "{looks} airbrushed", "{is} suspiciously smooth compared with the rest of the face",
        "{appears} soft and painted", "{looks} too clean and flat", "{has} an over-smoothed, rubbery look",
    ),
    "texture": (
        "{lacks} the fine grain seen elsewhere in the photo",
        "{shows} none of the noise that covers the rest of the picture",
        "{has} lost {its} natural texture", "{lacks} fine detail", "{has} no pores or grain at all",
    ),
    "colour": (
        "{is} slightly {shift} than the surrounding area", "{has} a {tint} cast that does not match the surroundings",
        "{does} not match the colour of the rest of the face", "{shows} a visible colour shift",
        "{has} a colour that is a bit off",
    ),
    "blur_edge": (
        "{has} blurry edges", "{fades} into the surroundings with a soft, smeared border",
        "{is} surrounded by a blurred transition zone", "{has} a hazy outline",
    ),
    "shape": (
        "{has} a slightly odd shape", "{looks} a little misshapen", "{has} proportions that look off",
        "{looks} subtly deformed",
    ),
    "asym": (
        "{does} not match the other side of the face", "{looks} different from {its} counterpart on the other side",
        "{breaks} the symmetry of the face",
    ),
    "seam": (
        "{is} bordered by a visible seam", "{has} an abrupt border with the surrounding area",
        "{shows} a hard edge along {its} blending border", "{is} outlined by a faint seam",
    ),
    "repeat": (
        "{contains} repeated texture patterns", "{shows} a tiled, repetitive texture",
        "{has} texture that looks copied from nearby", "{contains} the same small pattern several times",
    ),
    "smear": (
        "{looks} smeared", "{appears} muddy, with washed-out detail",
        "{has} smudged colours bleeding in from the border",
    ),
    "patchy": (
        "{looks} patchy", "{is} made of mismatched patches", "{has} small blocks that do not fit together",
    ),
    "structure": (
        "{is} partly distorted", "{looks} deformed", "{has} a broken, irregular structure",
        "{does} not have a coherent shape",
    ),
    "identity": (
        "{seems} to come from a different person", "{looks} pasted from another face",
        "{does} not fit the rest of the head", "{belongs} to someone else",
    ),
    "noise_low": (
        "{is} noticeably cleaner than the rest of the photo", "{lacks} the grain of the surrounding picture",
        "{looks} too clean compared with the noisy background",
    ),
    "noise_high": (
        "{is} grainier than the rest of the image", "{shows} stronger noise than the surrounding area",
        "{has} a coarser, noisier texture than the rest of the picture",
    ),
    "lighting": (
        "{is} lit from a different direction than the rest of the head",
        "{has} shading that disagrees with the rest of the face",
        "{shows} inconsistent lighting",
    ),
    "misaligned": (
        "{seems} slightly misaligned", "{does} not sit naturally in the face", "{looks} shifted relative to the head",
    ),
}
# Independent clauses for a second artefact, referring back with {it}/{its}.
CLAUSES: dict[str, tuple[str, ...]] = {
    "seam": ("a faint seam runs around {it}", "the blending border around {it} is visible",
             "there is an abrupt transition at {its} border"),
    "blur_edge": ("{its} outline is blurred", "the border around {it} is soft and smeared"),
    "colour": ("{its} colour is slightly off", "{its} tone does not match the surroundings"),
    "texture": ("the grain of the photo disappears inside {it}", "the noise pattern stops at {its} border"),
    "repeat": ("the texture inside {it} repeats", "the same pattern appears several times inside {it}"),
    "lighting": ("the shading on {it} does not agree with the light in the rest of the picture",),
    "noise_low": ("the grain of the photo disappears inside {it}",),
    "noise_high": ("the grain inside {it} is coarser than everywhere else",
                   "the noise level changes at {its} border"),
}

OPENINGS = (
    "This image has been manipulated.", "The image appears to be edited.", "The face has been tampered with.",
    "This photo shows signs of editing.", "Some areas of this face look fake.", "Parts of this picture were altered.",
    "This is a forged image.", "The picture was digitally modified.",
)
HEDGES = ("", "", "", "It seems that ", "Apparently, ", "On closer inspection, ", "Looking closely, ",
          "At first glance the photo looks real, but ", "I think ")
CLOSINGS = (
    "The rest of the face looks natural.", "Other areas seem untouched.", "The background shows no signs of editing.",
    "Overall it looks like a local edit.", "The rest of the image appears authentic.",
    "Everything else looks consistent.",
    "Apart from this, the photo looks genuine.", "These details give the manipulation away.",
)

# Remarks on the likely tool, by family.
REMARKS: dict[str, tuple[str, ...]] = {
    "sd": ("It looks like the work of a diffusion inpainting model.", "This is typical of generative inpainting.",
           "A generative model probably repainted this area."),
    "mat": ("The hole seems to have been filled from the surrounding pixels.",
            "This is typical of automatic inpainting.", "An inpainting model probably filled this area."),
    "e4s": ("This looks like a face swap.", "The identity seems to have been swapped.",
            "It looks like the result of a face-swapping tool."),
    "attribute": ("It looks like an attribute edit made by a generative model.",
                  "The expression or appearance seems to have been changed by editing software.",
                  "A generator seems to have altered the appearance of the person."),
}

# Attribute sentences: (required regions, text). {r} inserts the name of region r.
_ATTR: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "smiling": (
        (("mouth",), "The smile looks forced: the corners of the {mouth} are pulled up unnaturally."),
        (("mouth",), "The {mouth} has been stretched into a grin that looks artificial."),
        (("lip",), "The {lip} are curved upwards in an unnatural way."),
        (("tooth",), "The {tooth} look too uniform and slightly blurry."),
        (("tooth", "mouth"), "The {tooth} showing in the open {mouth} look fake."),
    ),
    "surprised": (
        (("eye",), "The {eye} are opened unnaturally wide."),
        (("eyebrow",), "The {eyebrow} are raised too high."),
        (("mouth",), "The open {mouth} looks artificial."),
        (("lip",), "The {lip} form an odd rounded shape."),
        (("eye", "eyebrow"), "The wide {eye} and lifted {eyebrow} look exaggerated."),
    ),
    "angry": (
        (("eyebrow",), "The {eyebrow} are pulled down and angled in an unnatural way."),
        (("eye",), "The {eye} are narrowed into an unconvincing glare."),
        (("mouth",), "The corners of the {mouth} turn down stiffly."),
        (("lip",), "The {lip} are pressed together unnaturally."),
    ),
    "sad": (
        (("eyebrow",), "The inner ends of the {eyebrow} are raised unnaturally."),
        (("mouth",), "The corners of the {mouth} droop in a way that looks artificial."),
        (("lip",), "The {lip} are bent downwards too evenly."),
    ),
    "aged": (
        (("wrinkle",), "The {wrinkle} look drawn on and too regular."),
        (("wrinkle", "forehead"), "The {wrinkle} on the {forehead} look painted rather than real."),
        (("hair",), "The {hair} has turned grey unevenly."),
        (("eye",), "The {eye} look artificially aged."),
        (("mouth",), "The area around the {mouth} looks artificially aged."),
        (("forehead",), "The {forehead} shows signs of artificial ageing."),
    ),
    "makeup": (
        (("lip",), "The {lip} are covered with a flat, oversaturated {lipstick} colour."),
        (("lip",), "The {lip} colour looks painted on."),
        (("eye",), "The {shadow} eye shadow looks stuck on."),
        (("eye",), "The makeup around the {eye} looks artificial."),
        (("mouth",), "The colour of the {mouth} looks unnaturally intense."),
    ),
    "pale": (
        (("skin",), "The {skin} on the {where} is noticeably paler {than}."),
        (("skin",), "The {skin} tone of the {where} is too light."),
    ),
    "tanned": (
        (("skin",), "The {skin} on the {where} is noticeably darker {than}."),
        (("skin",), "The {skin} tone of the {where} looks artificially tanned."),
    ),
    "bearded": (
        (("beard",), "The {beard} looks painted on."),
        (("beard",), "The {beard} texture is too uniform to be real."),
        (("beard", "jaw"), "The {beard} ends with a blurry edge along the {jaw}."),
        (("beard", "chin"), "The {beard} on the {chin} looks artificial."),
        (("mustache",), "The {mustache} looks artificial."),
    ),
    "blond": (
        (("hair",), "The {hair} colour looks unnaturally uniform."),
        (("hair",), "The {hair} has a flat, dyed look."),
        (("hair", "eyebrow"), "The blond {hair} does not match the darker {eyebrow}."),
    ),
}
_SIMPLE = {"eye": "eyes", "eyebrow": "eyebrows", "mouth": "mouth", "lip": "lips", "tooth": "teeth",
           "wrinkle": "wrinkles", "forehead": "forehead", "hair": "hair", "skin": "skin", "beard": "beard",
           "mustache": "mustache", "jaw": "jaw", "chin": "chin", "cheek": "cheeks"}
_ATTR_CUE = {"smiling": "shape", "surprised": "shape", "angry": "shape", "sad": "shape", "aged": "smooth",
             "makeup": "colour", "pale": "colour", "tanned": "colour", "bearded": "smooth", "blond": "smooth"}
_WHERE = {"face": ("face", "skin"), "cheek": ("cheeks", "cheek"), "forehead": ("forehead", "forehead"),
          "lower": ("chin area", "chin")}
_TINT = {"lighter": "pale", "darker": "dark", "warmer": "warm, reddish", "cooler": "bluish",
         "greenish": "greenish", "duller": "greyish"}
_SHIFT = {"lighter": "lighter", "darker": "darker", "warmer": "warmer", "cooler": "cooler",
          "greenish": "greener", "duller": "duller"}

_IRREGULAR = {"has": "have", "is": "are", "does": "do"}


def _verb(v: str, plural: bool) -> str:
    if not plural:
        return v
    if v in _IRREGULAR:
        return _IRREGULAR[v]
    if v.endswith("es") and v[:-2].endswith(("ch", "sh", "x", "s")):
        return v[:-2]
    return v[:-1] if v.endswith("s") else v


def _fill(template: str, plural: bool, shift: str = "duller") -> str:
    out = template
    for token in ("looks", "has", "is", "appears", "lacks", "shows", "does", "fades", "contains", "seems",
                  "belongs", "breaks"):
        out = out.replace("{" + token + "}", _verb(token, plural))
    return (out.replace("{it}", "them" if plural else "it").replace("{its}", "their" if plural else "its")
            .replace("{shift}", _SHIFT.get(shift, "duller")).replace("{tint}", _TINT.get(shift, "greyish")))


def _clause(template: str, plural: bool) -> str:
    return template.replace("{it}", "them" if plural else "it").replace("{its}", "their" if plural else "its")


class _Writer:
    """Builds the sentences of one explanation; `allowed` are the regions it may name."""

    def __init__(self, f: Forgery, rng: np.random.Generator) -> None:
        self.f = f
        self.rng = rng
        self.allowed = set(f.touched) | set(f.targets)
        self.main_plural = False  # whether the main subject was plural ("the eyes")
        self.neutral = False  # refer to the neighbourhood without "it"/"them"

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def name(self, region: str, side: str | None = None) -> tuple[str, bool]:
        one, both = _NAMES[region]
        if region in PAIRED and side:
            return f"{side} {self.pick(one)}", False
        word = self.pick(both)
        return word, word in _PLURAL_WORDS

    def subject(self, regions: tuple[str, ...]) -> tuple[str, bool]:
        """'the left eye and eyebrow', 'the nose', 'the eyes, nose and mouth'."""
        side = self.f.side
        names = []
        for i, r in enumerate(regions):
            word, _ = self.name(r, side)
            if i > 0 and side and r in PAIRED and regions[0] in PAIRED:
                word = word.split(" ", 1)[1]  # "left eye and eyebrow"
            names.append(word)
        if len(names) == 1:
            return "the " + names[0], self.name_plural(names[0])
        return "the " + ", ".join(names[:-1]) + " and " + names[-1], True

    @staticmethod
    def name_plural(word: str) -> bool:
        return word in _PLURAL_WORDS or word.split(" ", 1)[-1] in _PLURAL_WORDS

    def main_regions(self) -> tuple[str, ...]:
        t = list(self.f.targets)
        if len(t) > 3:
            keep = int(self.rng.integers(2, 4))
            t = t[:keep]
        elif len(t) == 3 and self.rng.random() < 0.3:
            t = t[:2]
        return tuple(t)

    def predicate(self, cue: str, plural: bool) -> str:
        shift = str(self.f.detail.get("colour_shift", "duller"))
        return _fill(self.pick(CUES[cue]), plural, shift)

    def artefact_sentences(self, regions: tuple[str, ...], cues: list[str]) -> list[str]:
        subj, plural = self.subject(regions)
        self.main_plural = plural
        rest = list(cues[1:])
        self.rng.shuffle(rest)
        cues = [cues[0]] + rest  # the family's main trace is always described
        first = cues[0]
        hedge = self.pick(HEDGES)
        if first in ("identity", "misaligned") and "seem" in hedge.lower():
            hedge = ""
        out = []
        form = self.rng.random()
        if len(cues) >= 2 and form < 0.4:
            s = f"{subj} {self.predicate(first, plural)} and {self.predicate(cues[1], plural)}"
            rest = cues[2:]
        elif len(cues) >= 2 and cues[1] in CLAUSES and form < 0.75:
            s = f"{subj} {self.predicate(first, plural)}, and {_clause(self.pick(CLAUSES[cues[1]]), plural)}"
            rest = cues[2:]
        else:
            s = f"{subj} {self.predicate(first, plural)}"
            rest = cues[1:]
        out.append(_sentence(hedge + s))
        if rest and self.rng.random() < 0.85:
            pron = "They" if plural else "It"
            extra = rest[0]
            if extra in CLAUSES and self.rng.random() < 0.5:
                out.append(_sentence(_clause(self.pick(CLAUSES[extra]), plural)))
            else:
                lead = self.pick((f"{pron} also", pron, f"In addition, {pron.lower()}", f"Besides, {pron.lower()}"))
                out.append(_sentence(f"{lead} {self.predicate(extra, plural)}"))
        return out

    def secondary(self, main: tuple[str, ...]) -> list[str]:
        """Sometimes a neighbouring region the mask also covers."""
        extra = [r for r in ("skin", "cheek", "forehead", "chin", "jaw", "nose", "mouth", "eyebrow", "eye")
                 if r in self.f.touched and r not in main]
        if not extra or self.rng.random() > 0.55:
            return []
        r = extra[0] if self.rng.random() < 0.6 else self.pick(extra)
        word, plural = self.name(r)
        cue = self.pick([c for c in self.f.cues if c in ("smooth", "texture", "colour", "blur_edge", "seam",
                                                          "noise_low", "noise_high", "repeat", "smear")] or ["smooth"])
        ref = "them" if self.main_plural else "it"
        leads = ("Even the nearby {w}", "The surrounding {w}", "The nearby {w}")
        if not self.neutral:
            leads += (f"The {{w}} around {ref}", f"The {{w}} next to {ref}")
        lead = self.pick(leads)
        return [_sentence(f"{lead.format(w=word)} {self.predicate(cue, plural)}")]

    def attribute(self) -> list[str]:
        f = self.f
        options = [(req, text) for req, text in _ATTR[f.method] if all(r in self.allowed for r in req)
                   and ("{shadow}" not in text or f.detail.get("eye_shadow"))]
        if not options:
            return []
        order = [int(i) for i in self.rng.permutation(len(options))]
        # the first sentence names a region the edit aimed at
        order.sort(key=lambda i: not (set(options[i][0]) & set(f.targets)))
        k = 1 if len(options) == 1 or self.rng.random() < 0.35 else 2
        out = []
        for i in order[:k]:
            req, text = options[i]
            fill = {r: _SIMPLE[r] for r in _SIMPLE if r in self.allowed}
            if "mustache" in fill:
                fill["mustache"] = self.pick(("mustache", "moustache"))
            where = f.detail.get("where", "face")
            wname, wreg = _WHERE[where]
            if wreg not in self.allowed:
                wname = "face"
            fill.update(lipstick=str(f.detail.get("lipstick") or "red"),
                        shadow=str(f.detail.get("eye_shadow") or "dark"), where=wname,
                        than="than the neck" if wname == "face" else "than the rest of the face")
            try:
                out.append(text.format(**fill))
            except KeyError:
                continue
        return out


def _sentence(s: str) -> str:
    s = s.strip()
    return s[0].upper() + s[1:] + ("" if s.endswith(".") else ".")


MIN_WORDS, MAX_WORDS = 15, 70


def explain(f: Forgery, rng: np.random.Generator) -> str:
    """One explanation for a forgery (15-70 words, about 35 on average)."""
    w = _Writer(f, rng)
    opening = w.pick(OPENINGS) if rng.random() < 0.5 else ""
    main = w.main_regions()
    cues = [c for c in f.cues if c in CUES]
    if f.method in _ATTR:
        body = w.attribute()
        cue = _ATTR_CUE[f.method]
        generic = [c for c in ("smooth", "blur_edge", "texture") if c in cues or c == "smooth"]
        subj, plural = w.subject(main[:2])
        w.main_plural = plural
        w.neutral = True
        if rng.random() < 0.6 or not body:
            body.append(_sentence(f"{w.pick(HEDGES)}{subj} {w.predicate(w.pick(generic + [cue]), plural)}"))
    else:
        if not cues:
            cues = ["smooth"]
        if len(cues) > 3:
            # the family's main trace stays; some of the others join it
            keep = int(rng.integers(1, 3))
            cues = [cues[0]] + [cues[1 + int(i)] for i in sorted(rng.permutation(len(cues) - 1)[:keep])]
        body = w.artefact_sentences(main, cues)
    second = w.secondary(main)
    remark = w.pick(REMARKS.get(f.method, REMARKS["attribute"])) if rng.random() < 0.25 else ""
    closing = w.pick(CLOSINGS) if rng.random() < 0.4 else ""

    def text() -> str:
        return " ".join(p for p in [opening, *body, *second, remark, closing] if p)

    # keep the length realistic: pad with a closing/opening/remark, or drop the optional parts
    pads = [("closing", CLOSINGS), ("opening", OPENINGS), ("remark", REMARKS.get(f.method, REMARKS["attribute"]))]
    while len(text().split()) < MIN_WORDS and pads:
        role, options = pads.pop(0)
        if role == "closing" and not closing:
            closing = w.pick(options)
        elif role == "opening" and not opening:
            opening = w.pick(options)
        elif role == "remark" and not remark:
            remark = w.pick(options)
    for role in ("remark", "closing", "second", "opening"):
        if len(text().split()) <= MAX_WORDS:
            break
        if role == "remark":
            remark = ""
        elif role == "closing":
            closing = ""
        elif role == "second":
            second = []
        else:
            opening = ""
    while len(text().split()) > MAX_WORDS and len(body) > 1:
        body = body[:-1]
    out = text()
    found = mentioned_regions(out)
    if not found <= w.allowed or not (found & set(f.targets)):
        out = _fallback(f, w)
    return out


def _fallback(f: Forgery, w: _Writer) -> str:
    """A plain explanation built only from target names (used if a phrase slipped in a word of
    another region — the tests keep this path unused)."""
    subj, plural = w.subject(f.targets[:2])
    return _sentence(f"The image has been edited and {subj} {_fill('{looks} unnatural', plural)}, with "
                     f"{'their' if plural else 'its'} texture and colour not matching the rest of the picture")
