"""Training ForgeryTalker on an MMTT train split: the prompter, then the joint model.

Stage 1 (prompter): the Face-ViT multi-label classifier, BCE against the split's `multilabel`
(the 21 regions found in each explanation).
Stage 2 (joint, the official "finetune" objective): with the prompter frozen, its kept labels
build the instruction and the mask-path label string; loss = T5 language-model loss +
segmentation BCE (pos_weight 2) + 0.5 x tag-gate loss.

From scratch (`train_tiny`, the `forgerytalker-tiny` registry trainer) every other part trains;
from a converted checkpoint (`--init DIR`) the official freezing applies (vision encoder and T5
frozen) and only stage 2 runs by default.

The tiny recipe (defaults of `train_tiny`; 4-6 minutes on one CPU core for the 1,400 mini-MMTT
train images, the selection passes included): prompter 6 epochs, joint 16 epochs at lr 2e-3,
then two choices made on the `eval` split, never the test split: the joint epoch with the best explanation CIDEr among the last 4 is
kept (LAVIS keeps `checkpoint_best` by validation metrics the same way), and the mask logit
offset that maximises eval IoU at the scorer's 0.5 cut is stored in the config. At this size and
budget the prompter learns the label priors only (a from-scratch ViT does not yet tell where the
forgery is), so the explanations stay close to a prior captioner's while the masks beat the
trivial localizers; `teacher_epochs` / `prompter_from_vision` give the alternative recipe
(joint epochs with truth labels first, the prompter started from the image encoder).

Data parallel with `torchrun` (DDP; gloo on CPU, nccl on GPU), bf16/fp16 autocast on GPU:

    torchrun --nproc_per_node=2 -m baselines.forgerytalker.train --data DIR --out CKPT --tiny
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from baselines.forgerytalker.build import load_checkpoint, resolve_device, save_checkpoint
from baselines.forgerytalker.config import RESIZE_FILTER, ForgeryTalkerConfig
from baselines.forgerytalker.model import ForgeryTalker, count_parameters
from baselines.forgerytalker.tokenization import Tokenizers, build_tiny_tokenizers
from benchmark.errors import BenchmarkError
from benchmark.harness.dataset import RESIZE_FILTERS


# ---------------------------------------------------------------------- data
class MMTTTrainSet(Dataset):
    """Images (uint8, resized to `size` with the model's filter, as the harness does), truth masks (uint8 0/1,
    nearest), multilabel vectors and explanations of one split. `preload` decodes everything once
    (small splits); otherwise items are decoded on the fly (use DataLoader workers)."""

    def __init__(self, root: Path, split: str = "train", size: int = 224, preload: bool = True,
                 max_items: int | None = None) -> None:
        from benchmark.data.split import load_split

        s = load_split(Path(root), split)
        records = s.records[:max_items] if max_items else s.records
        self.size = size
        self.ids = [r.image_id for r in records]
        self.captions = [r.caption for r in records]
        self.multilabel = torch.tensor([list(r.multilabel) for r in records], dtype=torch.float32)
        self.image_files = [s.image_files[r.image_id] for r in records]
        self.mask_files = [s.mask_files[r.image_id] for r in records]
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if preload:
            self._cache = [self._decode(i) for i in range(len(records))]

    def _decode(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        from benchmark.data.imageio import load_image, load_mask

        img = load_image(self.image_files[i], self.ids[i]).resize((self.size, self.size), RESIZE_FILTERS[RESIZE_FILTER])
        mask = load_mask(self.mask_files[i], self.ids[i])
        mask = Image.fromarray(mask.astype(np.uint8) * 255).resize((self.size, self.size), Image.NEAREST)
        return (torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1),
                torch.from_numpy((np.asarray(mask) > 127).astype(np.uint8)))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, mask = self._cache[i] if self._cache is not None else self._decode(i)
        return {"image": image, "mask": mask, "multilabel": self.multilabel[i], "caption": self.captions[i]}


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([x["image"] for x in items]), "mask": torch.stack([x["mask"] for x in items]),
            "multilabel": torch.stack([x["multilabel"] for x in items]), "caption": [x["caption"] for x in items]}


# ---------------------------------------------------------------------- options
@dataclass
class TrainOptions:
    """Everything a run needs; recorded in the checkpoint's mmtt_model.json."""

    data: str
    out: str
    device: str = "auto"
    split: str = "train"
    epochs: int = 10                 # joint (stage 2) epochs
    prompter_epochs: int = 10        # stage 1 epochs (0: keep the prompter as it is)
    teacher_epochs: int = 0          # joint epochs with truth labels *before* stage 1 (from-scratch recipe)
    prompter_from_vision: bool = False  # start the prompter's ViT from the (teacher-trained) image encoder
    batch_size: int = 32
    lr: float = 2e-3
    prompter_lr: float = 2e-3
    prompter_neg_weight: float = 0.2  # BCE weight of negative labels (the official Face-ViT: 1.0 / 0.2)
    weight_decay: float = 0.05
    warmup: float = 0.05             # share of the steps spent warming up
    seed: int = 0
    amp: str = "auto"                # auto (bf16 on GPU, off on CPU) | bf16 | fp16 | off
    workers: int = 0
    preload: bool = True
    max_items: int | None = None
    truth_labels: bool = False       # stage 2 prompts from the truth labels instead of the prompter
    official_double_sigmoid: bool = False
    freeze: str = "none"             # none (from scratch) | official (vision encoder + T5 frozen)
    log_every: int = 20
    time_limit: float | None = None  # seconds; stop stage 2 early (the checkpoint is still written)
    threads: int | None = None       # CPU threads; default 1 on CPU (tiny ops: OpenMP spinning costs more than it gains)
    calibrate_split: str | None = None  # fit config.mask.logit_bias on this split (e.g. "eval"); None: keep it
    select_split: str | None = None  # keep the joint epoch with the best CIDEr on this split (LAVIS's checkpoint_best)
    select_last: int = 3             # ... among the last N joint epochs
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- distributed helpers
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group if there is one (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Dist(dist.get_rank(), dist.get_world_size(), device)


def _all_reduce_mean(value: float, d: Dist) -> float:
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def _autocast(amp: str, device: torch.device) -> tuple[contextlib.AbstractContextManager, Any]:
    """(autocast context, GradScaler or None): bf16 by default on GPU, nothing on CPU."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext(), None
    dtype = torch.float16 if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()) else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def _schedule(optimizer: torch.optim.Optimizer, total: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(total * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log(d: Dist, msg: str) -> None:
    if d.main:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- stages
def _loader(data: MMTTTrainSet, opts: TrainOptions, d: Dist, seed: int) -> DataLoader:
    if d.world > 1:
        sampler = DistributedSampler(data, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed))
    return DataLoader(data, batch_size=opts.batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=opts.workers, drop_last=True, persistent_workers=opts.workers > 0)


def _epochs(loader: DataLoader, epochs: int) -> Iterator[tuple[int, dict[str, Any]]]:
    for epoch in range(epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            yield epoch, batch


def train_prompter(model: ForgeryTalker, data: MMTTTrainSet, opts: TrainOptions, d: Dist) -> list[dict[str, float]]:
    """Stage 1: multi-label BCE of the prompter against the truth multilabel (negatives weighted
    0.2 as the released Face-ViT training, which also adds focal/dice/Jaccard terms)."""
    prompter = model.prompter
    prompter.train()
    for p in prompter.parameters():
        p.requires_grad_(True)
    net: nn.Module = prompter
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(prompter, device_ids=[d.device] if d.device.type == "cuda" else None)
    loader = _loader(data, opts, d, opts.seed + 1)
    total = max(1, len(loader) * opts.prompter_epochs)
    optim = _optimizer([p for p in prompter.parameters()], opts.prompter_lr, opts.weight_decay)
    sched = _schedule(optim, total, opts.warmup)
    autocast, scaler = _autocast(opts.amp, d.device)
    history: list[dict[str, float]] = []
    running, count, last_epoch, t0 = 0.0, 0, 0, time.time()
    for epoch, batch in _epochs(loader, opts.prompter_epochs):
        if epoch != last_epoch:
            history.append({"epoch": last_epoch, "bce": _all_reduce_mean(running / max(count, 1), d)})
            _log(d, f"prompter epoch {last_epoch}: bce {history[-1]['bce']:.4f} ({time.time() - t0:.0f}s)")
            running, count, last_epoch = 0.0, 0, epoch
        pixels = model.normalize(batch["image"].to(d.device).float() / 255.0)
        with autocast:
            logits = net(pixels)
        target = batch["multilabel"].to(d.device)
        weight = torch.where(target > 0, 1.0, opts.prompter_neg_weight)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target, weight=weight)
        _step(loss, optim, sched, scaler, prompter.parameters())
        running += float(loss.detach())
        count += 1
    if count:
        history.append({"epoch": last_epoch, "bce": _all_reduce_mean(running / count, d)})
        _log(d, f"prompter epoch {last_epoch}: bce {history[-1]['bce']:.4f} ({time.time() - t0:.0f}s)")
    prompter.eval()
    for p in prompter.parameters():
        p.requires_grad_(False)
    return history


def _step(loss: torch.Tensor, optim: torch.optim.Optimizer, sched: Any, scaler: Any, params: Any,
          clip: float = 1.0) -> None:
    params = [p for p in params if p.requires_grad]
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optim)
        torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optim)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optim.step()
    optim.zero_grad(set_to_none=True)
    sched.step()


def _set_trainable(model: ForgeryTalker, freeze: str) -> None:
    """Stage 2 trainable set: the prompter is always frozen (the release runs it under no_grad);
    `official` also freezes the vision encoder and T5 (pretrained, as the release does)."""
    for name, p in model.named_parameters():
        frozen = name.startswith("prompter.")
        if freeze == "official":
            frozen = frozen or name.startswith(("vision_model.", "language_model."))
        p.requires_grad_(not frozen)
    if freeze == "official":  # the mask path reads T5's token embeddings; they stay frozen too
        model.language_model.get_input_embeddings().weight.requires_grad_(False)


def init_prompter_from_vision(model: ForgeryTalker) -> None:
    """Copy the image encoder into the prompter's ViT (same pre-norm ViT; qkv split into q/k/v).

    For a from-scratch model this stands in for the pretrained backbone the official Face-ViT
    starts from: an encoder that already localises forgeries learns the region labels quickly.
    """
    v, p = model.config.vision, model.config.prompter
    if (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size, v.patch_size) != (
            p.hidden_size, p.num_hidden_layers, p.num_attention_heads, p.intermediate_size, p.patch_size):
        raise ValueError("prompter_from_vision needs the prompter and the image encoder to have the same shape")
    src, dst = model.vision_model, model.prompter.vit
    with torch.no_grad():
        dst.embeddings.cls_token.copy_(src.embeddings.class_embedding)
        dst.embeddings.position_embeddings.copy_(src.embeddings.position_embedding)
        dst.embeddings.patch_embeddings.projection.load_state_dict(src.embeddings.patch_embedding.state_dict())
        for a, b in zip(src.encoder.layers, dst.layers):
            b.layernorm_before.load_state_dict(a.layer_norm1.state_dict())
            b.layernorm_after.load_state_dict(a.layer_norm2.state_dict())
            w, bias = a.self_attn.qkv.weight.chunk(3), a.self_attn.qkv.bias.chunk(3)
            for proj, wi, bi in zip((b.attention.q_proj, b.attention.k_proj, b.attention.v_proj), w, bias):
                proj.weight.copy_(wi)
                proj.bias.copy_(bi)
            b.attention.o_proj.load_state_dict(a.self_attn.projection.state_dict())
            b.mlp.load_state_dict(a.mlp.state_dict())
        dst.layernorm.load_state_dict(src.post_layernorm.state_dict())


@torch.no_grad()
def caption_cider(model: ForgeryTalker, data: MMTTTrainSet, device: torch.device, batch_size: int = 64) -> float:
    """CIDEr-D of the model's explanations (official decoding) on `data`, with the benchmark's scorer."""
    from benchmark.metrics.text import TextReference, score_captions

    model.eval()
    hyps: dict[str, str] = {}
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(len(data), start + batch_size)))
        batch = collate([data[i] for i in idx])
        pred = model.generate(model.normalize(batch["image"].to(device).float() / 255.0), return_masks=False)
        hyps.update({data.ids[i]: c for i, c in zip(idx, pred.captions)})
    reference = TextReference.build({i: c for i, c in zip(data.ids, data.captions)})
    return float(score_captions(reference, hyps, meteor=False).metrics["cider"])


def _train_mode(model: ForgeryTalker, freeze: str) -> None:
    """Training mode for the trainable parts; frozen parts stay in eval mode (dropout off, BN fixed)."""
    model.train()
    model.prompter.eval()
    if freeze == "official":
        model.vision_model.eval()
        model.language_model.eval()


def train_joint(model: ForgeryTalker, data: MMTTTrainSet, opts: TrainOptions, d: Dist, *,
                epochs: int | None = None, truth_labels: bool | None = None,
                select: MMTTTrainSet | None = None) -> list[dict[str, float]]:
    """Stage 2: LM + segmentation + gate loss, prompter frozen.

    With `select` (a held-out split), the main process scores the explanations after each of the
    last `opts.select_last` epochs and keeps the best weights (as LAVIS keeps checkpoint_best).
    """
    epochs = opts.epochs if epochs is None else epochs
    truth_labels = opts.truth_labels if truth_labels is None else truth_labels
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    _set_trainable(model, opts.freeze)
    _train_mode(model, opts.freeze)
    net: nn.Module = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None,
                                                  find_unused_parameters=True)
    loader = _loader(data, opts, d, opts.seed + 2 + 7 * int(truth_labels))
    total = max(1, len(loader) * epochs)
    optim = _optimizer([p for p in model.parameters() if p.requires_grad], opts.lr, opts.weight_decay)
    sched = _schedule(optim, total, opts.warmup)
    autocast, scaler = _autocast(opts.amp, d.device)
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    count, last_epoch, step, t0 = 0, 0, 0, time.time()

    def close_epoch(epoch: int) -> None:
        nonlocal best
        row = {"epoch": epoch, **{k: _all_reduce_mean(v / max(count, 1), d) for k, v in sums.items()}}
        if select is not None and d.main and epoch >= epochs - opts.select_last:
            row["select_cider"] = caption_cider(model, select, d.device, opts.batch_size)
            if best is None or row["select_cider"] > best[0]:
                best = (row["select_cider"], epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
            _train_mode(model, opts.freeze)
        history.append(row)
        _log(d, f"joint{' (truth labels)' if truth_labels else ''} epoch {epoch}: " + " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch")
             + f" ({time.time() - t0:.0f}s)")

    for epoch, batch in _epochs(loader, epochs):
        if epoch != last_epoch:
            close_epoch(last_epoch)
            sums, count, last_epoch = {}, 0, epoch
        pixels = model.normalize(batch["image"].to(d.device).float() / 255.0)
        with autocast:
            losses = net(pixels, batch["caption"], batch["multilabel"].to(d.device), batch["mask"].to(d.device),
                         truth_labels=truth_labels, official_double_sigmoid=opts.official_double_sigmoid)
        _step(losses["loss"], optim, sched, scaler, model.parameters())
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        count += 1
        step += 1
        if opts.log_every and step % opts.log_every == 0:
            _log(d, f"  step {step}/{total} loss {float(losses['loss']):.4f}")
        if opts.time_limit and time.time() - t0 > opts.time_limit:
            stop = torch.tensor([1.0], device=d.device)
        else:
            stop = torch.tensor([0.0], device=d.device)
        if d.world > 1:
            dist.all_reduce(stop)
        if float(stop) > 0:
            _log(d, f"time limit reached after {step} steps")
            break
    if count:
        close_epoch(last_epoch)
    if best is not None:
        model.load_state_dict(best[2])
        _log(d, f"kept joint epoch {best[1]} (CIDEr {best[0]:.4f} on the selection split)")
    model.eval()
    return history


@torch.no_grad()
def calibrate_mask_bias(model: ForgeryTalker, data: MMTTTrainSet, device: torch.device, batch_size: int = 64,
                        grid: Sequence[float] = tuple(x / 10 for x in range(-30, 31))) -> dict[str, float]:
    """The logit offset that maximises the mean per-image IoU of `sigmoid(logit + b) > 0.5` on `data`.

    The harness saves probabilities and the scorer thresholds them at 0.5; a model trained with
    pos_weight 2 on few epochs is not calibrated for that cut, so the offset is fitted on a
    held-out split (never the test split) and stored in the config.
    """
    model.eval()
    size = model.config.vision.image_size
    old = model.config.mask.logit_bias
    biases = torch.tensor(list(grid), device=device)
    iou_sum = torch.zeros(len(biases), dtype=torch.float64)
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(len(data), start + batch_size))]
        batch = collate(items)
        pixels = model.normalize(batch["image"].to(device).float() / 255.0)
        embeds = model.encode_image(pixels)
        ctx = model.context(pixels, embeds)
        logits = model.mask_logits(embeds, ctx.label_strings).float()
        if logits.shape[-1] != size:
            logits = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        truth = batch["mask"].to(device).bool()
        for k, b in enumerate(biases):
            pred = logits + b > 0
            i = (pred & truth).flatten(1).sum(1).double()
            u = (pred | truth).flatten(1).sum(1).double()
            iou_sum[k] += torch.where(u > 0, i / u.clamp(min=1), torch.ones_like(u)).sum().cpu()
    ious = iou_sum / len(data)
    best = int(torch.argmax(ious))
    model.config.mask.logit_bias = old + float(biases[best])
    return {"logit_bias": model.config.mask.logit_bias, "iou": float(ious[best]),
            "iou_at_previous_bias": float(ious[int(torch.argmin(biases.abs()))])}


# ---------------------------------------------------------------------- entry points
def train(options: TrainOptions, *, config: ForgeryTalkerConfig | None = None, tokenizers: Tokenizers | None = None,
          init: str | Path | None = None, name: str = "forgerytalker") -> dict[str, Any]:
    """Train and write a checkpoint folder to `options.out`; returns the run summary
    (`checkpoint`, `seconds`, loss histories, ...).

    Either `init` (a checkpoint folder to continue from) or `config` + `tokenizers` (from scratch).
    """
    opts = options
    d = setup_distributed(resolve_device(opts.device))
    if d.device.type == "cpu":
        torch.set_num_threads(opts.threads or 1)
    _seed_all(opts.seed)
    t_start = time.time()
    data = MMTTTrainSet(Path(opts.data), opts.split, preload=opts.preload, max_items=opts.max_items)
    if len(data) < opts.batch_size * d.world:
        raise BenchmarkError(f"{opts.data}: split '{opts.split}' has {len(data)} items, fewer than one batch "
                             f"({opts.batch_size} x {d.world})")
    if init is not None:
        model = load_checkpoint(Path(init), d.device)
    else:
        if config is None or tokenizers is None:
            raise ValueError("train() needs `init` or both `config` and `tokenizers`")
        torch.manual_seed(opts.seed)
        model = ForgeryTalker(config, tokenizers).to(d.device)
    _log(d, f"ForgeryTalker[{model.config.variant}] {count_parameters(model):,} parameters, {len(data)} train items, "
            f"device {d.device}, world {d.world}")
    info: dict[str, Any] = {"options": asdict(opts), "variant": model.config.variant,
                            "parameters": count_parameters(model), "train_items": len(data), "world_size": d.world}
    if opts.teacher_epochs > 0:
        info["teacher_history"] = train_joint(model, data, opts, d, epochs=opts.teacher_epochs, truth_labels=True)
    if opts.prompter_from_vision:
        init_prompter_from_vision(model)
    if opts.prompter_epochs > 0:
        info["prompter_history"] = train_prompter(model, data, opts, d)
    if opts.epochs > 0:
        select = None
        if opts.select_split and d.main:
            from benchmark.data.split import available_splits

            if opts.select_split in available_splits(Path(opts.data)):
                select = MMTTTrainSet(Path(opts.data), opts.select_split, preload=False)
        info["joint_history"] = train_joint(model, data, opts, d, select=select)
        scored = [row for row in info["joint_history"] if "select_cider" in row]
        if scored:
            top = max(scored, key=lambda row: row["select_cider"])
            info["selection"] = {"split": opts.select_split, "epoch": top["epoch"], "cider": top["select_cider"]}
    if opts.calibrate_split and d.main:
        from benchmark.data.split import available_splits

        if opts.calibrate_split in available_splits(Path(opts.data)):
            held_out = MMTTTrainSet(Path(opts.data), opts.calibrate_split, preload=False)
            info["calibration"] = {"split": opts.calibrate_split,
                                   **calibrate_mask_bias(model, held_out, d.device, batch_size=opts.batch_size)}
            _log(d, f"mask logit bias {info['calibration']['logit_bias']:+.2f} "
                    f"({opts.calibrate_split} IoU {info['calibration']['iou_at_previous_bias']:.4f} -> "
                    f"{info['calibration']['iou']:.4f})")
        else:
            _log(d, f"no '{opts.calibrate_split}' split: mask logit bias left at {model.config.mask.logit_bias}")
    info["seconds"] = round(time.time() - t_start, 1)
    out = Path(opts.out)
    info["checkpoint"] = str(out)
    if d.main:
        save_checkpoint(model, model.tokenizers, out, info, name=name)
        _log(d, f"checkpoint written to {out} ({info['seconds']}s)")
    if d.world > 1:
        dist.barrier()
    return info


TINY_DEFAULTS: dict[str, Any] = {"epochs": 16, "prompter_epochs": 6, "batch_size": 32, "lr": 2e-3, "prompter_lr": 2e-3,
                                 "calibrate_split": "eval", "select_split": "eval", "select_last": 4}


def train_tiny(data: str | Path, out: str | Path | None = None, device: str = "auto", epochs: int | None = None,
               batch_size: int | None = None, seed: int = 0, progress: bool = True, workers: int | None = None,
               lr: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """The `forgerytalker-tiny` trainer: tokenizers from the train explanations, a tiny config,
    prompter then joint training from scratch. A few minutes on 2 CPU cores for the mini-MMTT.

    `out` defaults to the project's checkpoint folder for the model; other keyword options are
    `TrainOptions` fields (e.g. prompter_epochs, time_limit) or tiny-shape options (hidden,
    patch_size, mask_size, coord_conv, t5_vocab_size). Returns the run summary.
    """
    from baselines import checkpoint as ckpt
    from benchmark.data.split import load_split

    out = ckpt.resolve("forgerytalker-tiny", out)
    if workers is not None:
        kwargs["workers"] = workers
    if lr is not None:
        kwargs["lr"] = lr
    if not progress:
        kwargs.setdefault("log_every", 0)
    known = {f for f in TrainOptions.__dataclass_fields__} - {"data", "out", "device", "epochs", "batch_size", "seed"}
    tiny_keys = {"hidden", "patch_size", "mask_size", "coord_conv", "t5_vocab_size"}
    unknown = set(kwargs) - known - tiny_keys
    if unknown:
        raise BenchmarkError(f"train_tiny: unknown option(s): {', '.join(sorted(unknown))}")
    values = dict(TINY_DEFAULTS)
    values.update({k: v for k, v in kwargs.items() if k in known and v is not None})
    if epochs is not None:
        values["epochs"] = epochs
    if batch_size is not None:
        values["batch_size"] = batch_size
    opts = TrainOptions(data=str(data), out=str(out), device=str(device), seed=seed, **values)
    split = load_split(Path(data), opts.split)
    labels = ForgeryTalkerConfig().labels
    tokenizers = build_tiny_tokenizers([r.caption for r in split.records], labels,
                                       t5_vocab_size=int(kwargs.get("t5_vocab_size") or 1024))
    shape = {k: kwargs[k] for k in ("hidden", "patch_size", "mask_size", "coord_conv") if kwargs.get(k) is not None}
    config = ForgeryTalkerConfig.tiny(t5_vocab_size=len(tokenizers.t5), bert_vocab_size=len(tokenizers.bert), **shape)
    return train(opts, config=config, tokenizers=tokenizers, name="forgerytalker-tiny")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m baselines.forgerytalker.train` (also under torchrun)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiny", action="store_true", help="train the tiny configuration from scratch")
    src.add_argument("--init", help="continue from a checkpoint folder (e.g. converted official weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--prompter-epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--no-preload", action="store_true")
    ap.add_argument("--truth-labels", action="store_true")
    ap.add_argument("--time-limit", type=float)
    args = ap.parse_args(argv)
    common = {"amp": args.amp, "workers": args.workers, "preload": not args.no_preload,
              "truth_labels": args.truth_labels, "time_limit": args.time_limit, "lr": args.lr,
              "prompter_epochs": args.prompter_epochs}
    if args.tiny:
        train_tiny(args.data, args.out, device=args.device, epochs=args.epochs, batch_size=args.batch_size,
                   seed=args.seed, **{k: v for k, v in common.items() if v is not None})
    else:
        opts = TrainOptions(data=args.data, out=args.out, device=args.device, seed=args.seed, freeze="official",
                            epochs=args.epochs or 1, prompter_epochs=args.prompter_epochs or 0,
                            batch_size=args.batch_size or 24, lr=args.lr or 9e-6,
                            **{k: v for k, v in common.items() if k not in ("lr", "prompter_epochs")})
        train(opts, init=args.init)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
