"""The run loop: one model over one split, streamed to a submission, resumable and shardable.

`run_model` reads images with a `DataLoader` (worker processes, pinned memory on CUDA), calls
the model under `torch.inference_mode` (bf16 autocast on CUDA unless `precision="fp32"`),
checks what it returns, and hands each batch to the `StreamWriter`. Batches come from a fixed
grid over the split (see `shard.py`), so a resumed or sharded run computes exactly the batches a
plain run would, and writes the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from benchmark import __version__
from benchmark.data.split import Split
from benchmark.errors import BenchmarkError
from benchmark.harness import shard as sharding
from benchmark.harness.dataset import Item, SplitImages, make_loader, resize_filter_of, to_device
from benchmark.harness.interface import Batch, Model, Output
from benchmark.harness.writer import (
    CONFIG, OWNED, PARTIAL, RUN_LOG, StreamWriter, finalize, journal_path, journaled_batches, repair_journal,
)

TEAM = "mmtt-bench baselines"
TASKS_OF_KIND = {"localizer": ["localization"], "captioner": ["interpretation"],
                 "both": ["localization", "interpretation"]}
KILL_ENV = "MMTT_HARNESS_KILL_AFTER"  # test hook: SIGKILL this process after N journaled batches
DEFAULT_BATCH_SIZE = 32


@dataclass
class RunOptions:
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    batch_size: int | None = None     # None: the model's `batch_size` attribute, else 32
    workers: int | None = None        # loader processes; None: from the core count
    precision: str = "auto"           # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16
    skip_unreadable: bool = False
    overwrite: bool = False
    progress: bool = True
    description: str = ""
    identity: dict[str, Any] = field(default_factory=dict)  # model name + build options (resume key)


def resolve_device(name: str, shard: sharding.Shard | None = None) -> torch.device:
    """`auto` is CUDA when available; under torchrun each rank takes its local GPU."""
    shard = shard or sharding.shard_from_env()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchmarkError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if name == "cuda":
            name = f"cuda:{shard.local_rank % torch.cuda.device_count()}"
        device = torch.device(name)
        torch.cuda.set_device(device)
        return device
    if name != "cpu":
        raise BenchmarkError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise BenchmarkError(f"--precision {precision}: expected auto, fp32 or bf16")
    return precision


def default_workers(shard: sharding.Shard) -> int:
    per_rank = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", shard.world_size)))
    return max(0, min(8, per_rank - 1))


def _file_hash(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in keys)


def _prepare_out(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Check what the output folder already holds (main rank only, before anyone writes)."""
    owned = [name for name in OWNED if (out / name).exists()]
    if overwrite:
        for name in owned:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        owned = []
    log = _read_json(out / RUN_LOG)
    if log and log.get("complete"):
        if log.get("config") != config:
            diff = _diff(log.get("config") or {}, config)
            raise BenchmarkError(f"{out}: holds a finished run with other settings ({diff}); "
                                 "choose another --out or pass --overwrite")
        return
    partial = _read_json(out / PARTIAL / CONFIG)
    if partial is not None:
        if partial != config:
            raise BenchmarkError(f"{out}: holds an unfinished run with other settings ({_diff(partial, config)}); "
                                 "re-run with the same settings to resume it, or pass --overwrite")
        return
    if owned:
        raise BenchmarkError(f"{out}: already holds {', '.join(owned)} not written by an unfinished `mmtt run`; "
                             "choose another --out or pass --overwrite")
    (out / PARTIAL).mkdir(parents=True, exist_ok=True)
    tmp = out / PARTIAL / f".{CONFIG}.tmp"
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / PARTIAL / CONFIG)


def _check_output(model: Model, out: Output, ids: list[str]) -> tuple[torch.Tensor | None, list[str] | None]:
    """The masks as uint8 levels and the cleaned captions, or a located error naming the model."""
    b = len(ids)
    masks = captions = None
    if model.kind in ("localizer", "both"):
        m = out.masks
        if not isinstance(m, torch.Tensor) or m.dim() != 3 or m.shape[0] != b:
            shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise BenchmarkError(f"model '{model.name}' returned masks of shape {shape} for a batch of {b} "
                                 f"(expected ({b}, h, w)); first image_id {ids[0]!r}")
        m = m.float()
        flat = m.flatten(1)
        bad = ~torch.isfinite(flat).all(dim=1) | (flat.amin(dim=1) < -1e-4) | (flat.amax(dim=1) > 1 + 1e-4)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise BenchmarkError(f"model '{model.name}' returned mask values outside [0, 1] (or NaN) "
                                 f"for image_id {ids[i]!r}")
        masks = (m.clamp_(0, 1) * 255).round_().to(torch.uint8).cpu()
    if model.kind in ("captioner", "both"):
        caps = out.captions
        if not isinstance(caps, (list, tuple)) or len(caps) != b or not all(isinstance(c, str) for c in caps):
            raise BenchmarkError(f"model '{model.name}' must return {b} caption strings for the batch "
                                 f"starting at image_id {ids[0]!r}")
        captions = [" ".join(c.split()) for c in caps]  # no newline or control whitespace in a caption
        for image_id, c in zip(ids, captions):
            if not c:
                raise BenchmarkError(f"model '{model.name}' returned an empty caption for image_id {image_id!r}")
    return masks, captions


def run_model(model: Model, split: Split, out: Path | str, options: RunOptions,
              *, device: torch.device | None = None, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run `model` over `split` into submission folder `out`; returns the run log.

    Re-running with the same settings resumes (nothing journaled is recomputed) or, when the run
    is complete, returns its log at once. Under torchrun every rank calls this; rank 0 merges.
    """
    out = Path(out)
    shard = sharding.shard_from_env()
    device = device or resolve_device(options.device, shard)
    precision = resolve_precision(options.precision, device)
    batch_size = int(options.batch_size or getattr(model, "batch_size", None) or DEFAULT_BATCH_SIZE)
    if batch_size < 1:
        raise BenchmarkError(f"--batch-size {batch_size}: must be at least 1")
    workers = default_workers(shard) if options.workers is None else int(options.workers)
    if device.type == "cpu" and shard.distributed:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // shard.world_size))
    sharding.init(shard, device)

    config = {
        **options.identity,
        "model": model.name, "kind": model.kind, "image_size": int(model.image_size),
        "split": split.name, "split_file": _file_hash(split.json_path), "n_items": len(split),
        "batch_size": batch_size, "precision": precision, "device_type": device.type,
    }
    out.mkdir(parents=True, exist_ok=True)
    if shard.is_main:
        _prepare_out(out, config, options.overwrite)
    sharding.barrier(shard)
    log = _read_json(out / RUN_LOG)
    if log and log.get("complete") and log.get("config") == config:
        sharding.finish(shard)
        return dict(log, already_complete=True)

    grid = sharding.batch_grid(len(split), batch_size)
    done = journaled_batches(out)
    sharding.barrier(shard)  # everyone has read the journals before anyone appends
    repair_journal(journal_path(out, shard.rank))
    mine = [j for j in range(len(grid)) if shard.owns(j) and j not in done]

    items = [Item(i, rec.image_id, split.image_files[rec.image_id]) for i, rec in enumerate(split.records)]
    dataset = SplitImages(items, int(model.image_size), resize_filter_of(model))
    loader = make_loader(dataset, [grid[j] for j in mine], workers=workers, pin_memory=device.type == "cuda")
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
    kill_after = int(os.environ.get(KILL_ENV, "0") or 0)

    model = model.to(device)
    writer = StreamWriter(out, shard.rank)
    n_todo = sum(len(grid[j]) for j in mine)
    bar = _progress_bar(n_todo, model.name, enabled=options.progress and shard.is_main)
    start = time.perf_counter()
    computed = 0
    try:
        with torch.inference_mode():
            for n_batches, (j, batch) in enumerate(zip(mine, loader), start=1):
                entries, masks = _run_batch(model, split, batch, autocast, device, options.skip_unreadable)
                writer.submit(j, entries, masks)
                computed += len(batch["indices"])
                bar.update(len(batch["indices"]))
                if on_batch is not None:
                    on_batch(j)
                if kill_after and n_batches >= kill_after:
                    writer.close()
                    os.kill(os.getpid(), signal.SIGKILL)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()  # keep what was finished: a re-run resumes after it
        raise
    finally:
        bar.close()
    writer.close()
    seconds = time.perf_counter() - start
    computed = sharding.total(shard, computed, device)  # also waits until every rank's journal is complete
    if not shard.is_main:
        sharding.finish(shard)
        return {"rank": shard.rank, "computed": computed}

    manifest = {
        "model": model.name, "team": TEAM, "split": split.name, "tasks": TASKS_OF_KIND[model.kind],
        "description": options.description or f"{model.name} ({model.kind}), run by `mmtt run`",
    }
    log = {
        "config": config, "mmtt_version": __version__, "device": _device_name(device), "workers": workers,
        "world_size": shard.world_size, "computed_items": computed,
        "resumed_items": sum(len(grid[j]) for j in done if j < len(grid)),
        "seconds": round(seconds, 3),
        "images_per_s": round(computed / seconds, 2) if seconds > 0 and computed else None,
    }
    log = finalize(out, split, manifest=manifest, log=log, with_masks=model.kind in ("localizer", "both"),
                   with_captions=model.kind in ("captioner", "both"))
    sharding.finish(shard)
    return log


def _run_batch(model: Model, split: Split, batch: dict[str, Any], autocast, device: torch.device,
               skip_unreadable: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    errors = dict(batch["errors"])
    if errors and not skip_unreadable:
        first = next(iter(errors.values()))
        raise BenchmarkError(f"{first} (pass --skip-unreadable to record such images and go on)")
    ok = batch["ok"]
    records = [split.records[i] for i in ok]
    results: dict[int, dict[str, Any]] = {}
    masks_out: dict[str, Any] = {}
    if ok:
        ids = [r.image_id for r in records]
        images = to_device(batch["images"], device)
        with autocast:
            output = model.predict(Batch(images=images, ids=ids, sizes=batch["sizes"],
                                         paths=[str(split.image_files[i]) for i in ids]))
        masks, captions = _check_output(model, output, ids)
        for k, (index, rec) in enumerate(zip(ok, records)):
            entry: dict[str, Any] = {"i": index, "image_id": rec.image_id}
            if captions is not None:
                entry["caption"] = captions[k]
            if masks is not None:
                masks_out[rec.pred_mask_path] = masks[k].numpy()
            results[index] = entry
    for index, msg in errors.items():
        results[index] = {"i": index, "image_id": split.records[index].image_id, "error": msg}
    return [results[i] for i in batch["indices"]], masks_out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


class _NoBar:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, name: str, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="img", file=sys.stderr, dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
