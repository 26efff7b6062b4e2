"""Images per second of the data pipeline alone, of each model alone, and of a full `mmtt run`.

    python scripts/bench_throughput.py --data DIR [--split test] [--models unet,ela,...]
        [--checkpoints DIR] [--device auto] [--batch-size N] [--workers N] [--n 256] [--json]

For each model: the loader rate (decode + resize in worker processes + transfer to the device,
at the model's input size), the model rate (`predict` on batches already on the device, CUDA
synchronised), and the end-to-end rate of the harness writing a submission to a temporary
folder. The slower of loader and model is the bottleneck; end-to-end also pays for writing.
On CUDA the peak GPU memory of the model measurement is reported too.
Models that need a checkpoint are taken from `--checkpoints DIR/<model>` (or the default
checkpoint folder) and skipped when none is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import baselines.catalog  # noqa: F401
from baselines import registry
from baselines.checkpoint import META, default_dir
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.harness.dataset import Item, SplitImages, make_loader, resize_filter_of, to_device
from benchmark.harness.interface import Batch
from benchmark.harness.run import RunOptions, default_workers, resolve_device, resolve_precision, run_model
from benchmark.harness.shard import Shard, batch_grid


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(split, n: int, size: int, batch_size: int, workers: int, device: torch.device,
                resize_filter: str = "bilinear") -> float:
    items = [Item(i, r.image_id, split.image_files[r.image_id]) for i, r in enumerate(split.records[:n])]
    loader = make_loader(SplitImages(items, size, resize_filter), batch_grid(len(items), batch_size), workers=workers,
                         pin_memory=device.type == "cuda")
    start, count = None, 0
    for batch in loader:  # timed from the first batch on: worker start-up is not throughput
        to_device(batch["images"], device)
        if start is None:
            _sync(device)
            start = time.perf_counter()
            continue
        count += len(batch["indices"])
    _sync(device)
    return count / (time.perf_counter() - start) if count else float("nan")


@torch.inference_mode()
def model_rate(model, split, n: int, batch_size: int, device: torch.device, precision: str) -> float:
    """`predict` over the same n images the other rates use, decoded beforehand and already on
    the device (captioners' generation length depends on the image, so no batch is repeated)."""
    items = [Item(i, r.image_id, split.image_files[r.image_id]) for i, r in enumerate(split.records[:n])]
    images = SplitImages(items, model.image_size, resize_filter_of(model))
    loader = make_loader(images, batch_grid(len(items), batch_size), workers=0, pin_memory=False)
    batches = [Batch(images=to_device(b["images"], device), ids=[items[i].image_id for i in b["indices"]],
                     sizes=b["sizes"], paths=[str(items[i].path) for i in b["indices"]]) for b in loader]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with autocast:
        model.predict(batches[0])  # warm-up
        _sync(device)
        start = time.perf_counter()
        for b in batches:
            out = model.predict(b)
            if out.masks is not None:
                out.masks.float().mul(255).round().to(torch.uint8).cpu()
        _sync(device)
    return len(items) / (time.perf_counter() - start)


def end_to_end_rate(model, split, out: Path, batch_size: int, workers: int, device: torch.device, precision: str) -> float:
    opts = RunOptions(batch_size=batch_size, workers=workers, precision=precision, progress=False, overwrite=True)
    start = time.perf_counter()
    run_model(model, split, out, opts, device=device)
    return len(split) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--models", help="comma-separated names (default: every model that is ready)")
    p.add_argument("--checkpoints", help="folder holding <model>/ checkpoints")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int)
    p.add_argument("--n", type=int, default=256, help="images per measurement")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.checkpoints:  # models built on another model's checkpoint (template, retrieval) look there too
        os.environ["MMTT_CHECKPOINTS"] = str(Path(args.checkpoints).resolve())

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    workers = default_workers(Shard()) if args.workers is None else args.workers
    split = load_split(Path(args.data), args.split)
    n = min(args.n, len(split))
    names = args.models.split(",") if args.models else [e.name for e in registry.entries()]
    rows, loader_cache = [], {}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({where}), "
          f"precision {precision}, batch {args.batch_size}, {workers} loader workers, {n} images of split "
          f"'{split.name}'", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            entry = registry.get_entry(name)
            kwargs = {}
            if entry.needs != "nothing":
                ckpt = Path(args.checkpoints) / name if args.checkpoints else default_dir(name)
                if not ((ckpt / META).is_file() or (ckpt / "config.json").is_file()):
                    print(f"skip {name}: no checkpoint at {ckpt}", file=sys.stderr)
                    continue
                kwargs["checkpoint"] = str(ckpt)
            try:
                model = registry.build(name, **kwargs).to(device)
            except (ImportError, BenchmarkError) as exc:
                print(f"skip {name}: {str(exc).splitlines()[0]}", file=sys.stderr)
                continue
            size = int(model.image_size)
            key = (size, resize_filter_of(model))
            if key not in loader_cache:
                loader_cache[key] = loader_rate(split, n, size, args.batch_size, workers, device, key[1])
            lr = loader_cache[key]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            mr = model_rate(model, split, n, args.batch_size, device, precision)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            subset = dataclasses.replace(split, records=split.records[:n])
            e2e = end_to_end_rate(model, subset, Path(tmp) / name, args.batch_size, workers, device, precision)
            rows.append({"model": name, "image_size": size, "loader_img_s": round(lr, 1), "model_img_s": round(mr, 1),
                         "end_to_end_img_s": round(e2e, 1),
                         "peak_gpu_gib": round(peak, 2) if peak is not None else None,
                         "bottleneck": "loader" if lr < mr else "model"})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'model':<20} {'size':>5} {'loader img/s':>13} {'model img/s':>12} {'end-to-end':>11}  bottleneck")
    for r in rows:
        print(f"{r['model']:<20} {r['image_size']:>5} {r['loader_img_s']:>13.1f} {r['model_img_s']:>12.1f} "
              f"{r['end_to_end_img_s']:>11.1f}  {r['bottleneck']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
