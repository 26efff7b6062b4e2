"""The embedded mini-MMTT: procedurally drawn aligned faces, forged by the four MMTT families,
with pixel-exact masks and explanations written from what was done, in the official layout.

    from benchmark.data.synth import generate
    summary = generate(Path("out/mini"), n=2000, seed=0)

`plan` / `make_item` / `sample` give single items in memory (for tests and inspection),
`render_sample_card` draws one item with its mask and explanation, and `CANONICAL_PART_BOXES`
gives where the main face parts sit in the aligned frame.
"""

from benchmark.data.synth.build import Item, ItemSpec, generate, make_item, plan, sample, split_sizes
from benchmark.data.synth.card import render_sample_card
from benchmark.data.synth.face import CANONICAL_PART_BOXES, FACE_REGIONS, region_masks
from benchmark.data.synth.forge import ATTRIBUTES, FAMILIES, Forgery

__all__ = [
    "ATTRIBUTES", "CANONICAL_PART_BOXES", "FACE_REGIONS", "FAMILIES", "Forgery", "Item", "ItemSpec",
    "generate", "make_item", "plan", "region_masks", "render_sample_card", "sample", "split_sizes",
]
