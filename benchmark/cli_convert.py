"""`mmtt convert`: official checkpoints to this project's format (CLI side).

    mmtt convert forgerytalker --lavis 2111_checkpoint_best.pth --eva-vit eva_vit_g.pth \\
        --face-vit FACE_VIT.bin --t5 flant5xl/ --bert bert-base-uncased/ --out ckpt/forgerytalker

The result is a local checkpoint folder for `mmtt run forgerytalker --checkpoint DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_convert_forgerytalker(args: argparse.Namespace) -> int:
    from baselines.forgerytalker.config import ForgeryTalkerConfig
    from baselines.forgerytalker.convert import Sources, convert
    from benchmark.errors import BenchmarkError

    sources = Sources(lavis=Path(args.lavis), t5=Path(args.t5), bert=Path(args.bert),
                      eva_vit=Path(args.eva_vit) if args.eva_vit else None,
                      face_vit=Path(args.face_vit) if args.face_vit else None,
                      instructblip=Path(args.instructblip) if args.instructblip else None)
    config = None
    if args.config:
        try:
            config = ForgeryTalkerConfig.load(Path(args.config))
        except (OSError, ValueError) as exc:
            raise BenchmarkError(f"{args.config}: {exc}") from None
    report = convert(sources, Path(args.out), config=config, dtype=args.dtype, allow_pickle=args.allow_pickle)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        initialised = f", {len(report['initialised'])} initialised as the official code does" \
            if report.get("initialised") else ""
        print(f"wrote {args.out}: {report['stage']}-stage DFF checkpoint; {report['mapped']} official tensors mapped, "
              f"{report['unused']} deliberately unused{initialised} (of {report['official_keys_present']} present; "
              f"see {Path(args.out) / 'conversion.json'})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `mmtt convert ...`."""
    p = sub.add_parser("convert", help="convert official checkpoints to this project's format")
    conv = p.add_subparsers(dest="what", required=True, metavar="MODEL")
    c = conv.add_parser("forgerytalker", help="the official ForgeryTalker (DFF) release -> a checkpoint folder")
    c.add_argument("--lavis", required=True, help="the DFF LAVIS checkpoint (.pth with a 'model' state dict)")
    c.add_argument("--eva-vit", help="eva_vit_g.pth (the frozen vision encoder, not in the DFF checkpoint)")
    c.add_argument("--face-vit", help="the Face-ViT classifier weights (file, or a folder holding one)")
    c.add_argument("--t5", required=True, help="local Flan-T5-XL folder (weights + tokenizer)")
    c.add_argument("--bert", required=True, help="local bert-base-uncased folder (tokenizer; tag-encoder weights)")
    c.add_argument("--instructblip", help="instruct_blip_flanxl_trimmed.pth (fills keys a stage-1 checkpoint lacks)")
    c.add_argument("--out", required=True, help="checkpoint folder to write")
    c.add_argument("--config", help="a ForgeryTalker config.json to convert to (default: the paper's sizes; the T5 "
                                    "and BERT sizes are always read from their folders)")
    c.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="stored dtype (default float32)")
    c.add_argument("--allow-pickle", action="store_true",
                   help="load .pth files with full pickle (only for files you trust; default: tensors only)")
    c.add_argument("--json", action="store_true", help="print the conversion report as JSON")
    c.set_defaults(func=cmd_convert_forgerytalker)
