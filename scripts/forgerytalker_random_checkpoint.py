"""A full-size ForgeryTalker with random weights and the release's shapes, as a checkpoint folder.

For timing and memory on a GPU without the release's weights: the 4.9 B-parameter model of
`ForgeryTalkerConfig.full()` (EVA-ViT-g, Q-Former, Flan-T5-XL, Face-ViT-H/14, bert-base), weights
drawn on the device, stored in bf16 (`--dtype`); the tokenizers are the tiny ones (their ids fit
the full vocabularies). Random weights rarely emit EOS, so every caption runs to the official 100
new tokens: a worst case for decoding time.

    python scripts/forgerytalker_random_checkpoint.py --out /tmp/ckpts/forgerytalker --device cuda
    mmtt data demo --out /tmp/mini --n 200
    mmtt run forgerytalker --checkpoint /tmp/ckpts/forgerytalker --data /tmp/mini --split test \
        --out /tmp/ft-run --device cuda --batch-size 16 --json          # the release's precision policy
    python scripts/bench_throughput.py --data /tmp/mini --device cuda --checkpoints /tmp/ckpts \
        --batch-size 16 --n 64 --json                                     # every baseline ready there

(`mmtt run` under its default `--precision auto` runs ForgeryTalker with the release's mixed
precision on CUDA -- EVA fp16 autocast, T5 bf16, the rest fp32 -- and `--precision fp32` in fp32.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


@torch.no_grad()
def random_model(device: torch.device, seed: int = 0, config=None):
    """The model of `config` (default: the paper's sizes) with random weights drawn on `device`."""
    from baselines.forgerytalker.build import _materialize_buffers
    from baselines.forgerytalker.config import ForgeryTalkerConfig
    from baselines.forgerytalker.model import ForgeryTalker

    with torch.device("meta"):
        model = ForgeryTalker(config or ForgeryTalkerConfig.full())
    model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, 0.02, generator=generator)   # matrices, embeddings, queries, positions
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)                                # norm weights
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b.fill_(1.0)
        elif name.endswith(("running_mean", "num_batches_tracked")):
            b.zero_()
    for module in model.modules():                      # the constant buffers (positions, mean/std)
        for key in list(module._buffers):
            if key in ("position_ids", "token_type_ids", "image_mean", "image_std"):
                module._buffers[key] = module._buffers[key].to("meta")
    _materialize_buffers(model, device)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    from baselines.forgerytalker.build import save_checkpoint
    from baselines.forgerytalker.model import count_parameters
    from baselines.forgerytalker.tokenization import build_tiny_tokenizers
    from benchmark.data.regions import REGIONS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="stored dtype")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    model = random_model(torch.device(args.device), args.seed)
    model.to({"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype])
    tokenizers = build_tiny_tokenizers(["The nose looks smeared and the cheek is blurred."], REGIONS)
    model.tokenizers = tokenizers
    save_checkpoint(model, tokenizers, args.out, {"random_weights": True, "seed": args.seed, "dtype": args.dtype})
    print(json.dumps({"out": str(args.out), "parameters": count_parameters(model), "dtype": args.dtype,
                      "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
