"""The truth cache's block tables: what is looked up equals the blocks computed directly, and a
damaged table or a cache that cannot be written never changes a number."""

from __future__ import annotations

import numpy as np

from benchmark.data.split import load_split
from benchmark.metrics.mask import TruthBlocks, count_mask
from benchmark.scoring.blocktable import BlockTable, BlockTableWriter
from benchmark.scoring.score import ScoreOptions, score_submission
from tests.conftest import assert_close, write_submission


def _truths(rng: np.random.Generator) -> list[np.ndarray]:
    """Truths of mixed sizes and densities (empty, full, sparse, blobs)."""
    out = []
    for k, hw in enumerate([(64, 64), (50, 70), (64, 64), (33, 64), (64, 64), (80, 40)]):
        density = [0.0, 1.0, 0.02, 0.5, 0.3, 0.9][k]
        out.append(rng.random(hw) < density)
    return out


def test_table_lookups_count_like_the_blocks_they_were_made_from(tmp_path):
    rng = np.random.default_rng(7)
    truths = _truths(rng)
    ids = [f"img{k}" for k in range(len(truths))]
    pred_hw = (48, 48)
    direct = [TruthBlocks.of(t, pred_hw) for t in truths]
    writer = BlockTableWriter(tmp_path / "blocks-48x48", ids, pred_hw)
    for blocks in direct:
        writer.add(blocks)
    table = writer.close()
    loaded = BlockTable.load(tmp_path / "blocks-48x48", ids, pred_hw)
    in_memory = BlockTableWriter(None, ids, pred_hw)
    for blocks in direct:
        in_memory.add(blocks)
    for source in (table, loaded, in_memory.close()):
        for k, blocks in enumerate(direct):
            got = source.get(k, blocks.rows, blocks.cols, blocks.truth_hw, blocks.positives)
            for grey in ((rng.random(pred_hw) * 256).astype(np.uint8), np.full(pred_hw, 255, np.uint8),
                         np.where(rng.random(pred_hw) < 0.4, 255, 0).astype(np.uint8)):
                a, b = count_mask(grey, got), count_mask(grey, blocks)
                assert a.confusion == b.confusion
                assert (a.pos_hist is None) == (b.pos_hist is None)
                if a.pos_hist is not None:
                    assert (a.pos_hist == b.pos_hist).all() and (a.neg_hist == b.neg_hist).all()
    assert [p.name for p in tmp_path.iterdir()] == ["blocks-48x48"]   # no temporary folder left
    assert BlockTable.load(tmp_path / "blocks-48x48", ids[::-1], pred_hw) is None   # other ids: not used


def test_a_damaged_table_is_rebuilt_and_an_unwritable_cache_still_scores(random_root, tmp_path):
    root, recs = random_root
    split = load_split(root, "test")
    sub = write_submission(tmp_path / "sub", recs)
    opts = dict(skip=("meteor",), n_boot=0, protocol="official")
    cache = tmp_path / "cache"
    first = score_submission(sub, split, ScoreOptions(cache_dir=cache, **opts)).summary["metrics"]
    table = next(cache.glob("truth-*/blocks-48x48"))   # the size of this submission's masks
    words = table / "full_words.bin"
    words.write_bytes(words.read_bytes()[:-8])   # truncated: refused, rebuilt
    again = score_submission(sub, load_split(root, "test"), ScoreOptions(cache_dir=cache, **opts)).summary["metrics"]
    assert_close(again, first)
    assert BlockTable.load(table, split.ids, (48, 48)) is not None
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    unwritable = score_submission(sub, load_split(root, "test"), ScoreOptions(cache_dir=blocked, **opts)).summary["metrics"]
    assert_close(unwritable, first)
