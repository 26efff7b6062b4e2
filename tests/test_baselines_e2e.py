"""Every registered model, trained where it needs it, runs through `mmtt run` on the mini-MMTT, and
its submission passes `mmtt score` (slow: trains every learned baseline briefly)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

import baselines.catalog  # noqa: F401
from baselines import registry
from baselines.captioners.tiny_vlm import FAMILIES, write_tiny_checkpoint
from benchmark.cli import main

TRAIN_OPTIONS = {"unet": ["--epochs", "1"], "segformer": ["--epochs", "1"]}
RUN_OPTIONS = {f: ["--option", "max_new_tokens=6", "--option", "num_beams=2"] for f in FAMILIES}


def _ours(entry) -> bool:
    """Every entry but ForgeryTalker's (its own tests train and run it: tests/test_forgerytalker*.py)."""
    if entry.name.startswith("forgerytalker"):
        return False
    importlib.import_module(entry.target.partition(":")[0])
    return True


@pytest.mark.slow
def test_every_registered_model_runs_and_scores(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MMTT_CHECKPOINTS", str(tmp_path / "ckpt"))  # default checkpoint folders live here
    data = tmp_path / "mini"
    assert main(["data", "demo", "--out", str(data), "--n", "60", "--seed", "1", "--quiet", "--workers", "1"]) == 0
    ckpts = tmp_path / "ckpt"
    for family in FAMILIES:
        write_tiny_checkpoint(family, ckpts / family)
    # ForgeryTalker runs through the harness in tests/test_forgerytalker_slow.py (trained tiny
    # model) and loads from converted weights in tests/test_forgerytalker_convert.py
    entries = [e for e in registry.entries() if _ours(e)]
    assert {"unet", "segformer", "prior", "retrieval", "template", "blip", "instructblip"} <= {e.name for e in entries}
    learned_first = sorted((e for e in entries if e.trainer), key=lambda e: e.name not in ("unet", "segformer"))
    for e in learned_first:  # the localizers first: template and retrieval use the unet
        assert main(["train", e.name, "--data", str(data), "--device", "cpu", "--workers", "0", "--quiet",
                     *TRAIN_OPTIONS.get(e.name, [])]) == 0, e.name
    capsys.readouterr()
    for e in entries:
        sub = tmp_path / "subs" / e.name
        args = ["run", e.name, "--data", str(data), "--split", "test", "--out", str(sub), "--device", "cpu",
                "--workers", "0", "--quiet", *RUN_OPTIONS.get(e.name, [])]
        if e.needs != "nothing":
            args += ["--checkpoint", str(ckpts / e.name)]
        assert main(args) == 0, (e.name, capsys.readouterr().err)
        capsys.readouterr()
        assert main(["score", str(sub), "--data", str(data), "--split", "test", "--json", "--no-meteor",
                     "--n-boot", "10"]) == 0, e.name
        summary = json.loads(capsys.readouterr().out)
        expected = {"localizer": ["localization"], "captioner": ["interpretation"],
                    "both": ["localization", "interpretation"]}[e.kind]
        assert summary["tasks"] == expected and summary["n_missing"] == 0, e.name
