"""`mmtt models | run | train` and `mmtt data robust`: the CLI side that wires baselines to the harness.

This module (part of the CLI) is the one place where `benchmark` meets `baselines`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError


def _registry():
    import baselines.catalog  # noqa: F401  (declares every model)
    from baselines import registry

    return registry


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """`--option KEY=VALUE` pairs; values read as JSON when they parse (numbers, booleans), else text."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BenchmarkError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _call(what: str, name: str, fn, **kwargs: Any):
    """Call a builder/trainer, turning an unknown option into a located error."""
    try:
        return fn(name, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            bad = str(exc).split("argument", 1)[1].strip()
            raise BenchmarkError(f"model '{name}' does not take the {what} option {bad}") from None
        raise


# ---------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from baselines.checkpoint import META, default_dir

    rows = []
    for e in _registry().entries():
        ckpt = default_dir(e.name)
        rows.append({"name": e.name, "kind": e.kind, "needs": e.needs,
                     "needs_checkpoint": e.needs in ("checkpoint", "training"),
                     "needs_training": e.needs == "training", "trainable": e.trainer is not None,
                     "default_checkpoint": str(ckpt) if e.needs != "nothing" else None,
                     "ready": e.needs == "nothing" or (ckpt / META).is_file() or (ckpt / "config.json").is_file(),
                     "description": e.description})
    if args.json:
        _print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'kind':<9}  {'needs':<10}  ready  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<9}  {r['needs']:<10}  {'yes' if r['ready'] else 'no ':<5}  {r['description']}")
    print("\nneeds: nothing (runs as is) | training (`mmtt train MODEL --data DIR` first) | "
          "checkpoint (pass --checkpoint DIR: a local pretrained folder)")
    return 0


# ---------------------------------------------------------------- run
def _torchrun(args: argparse.Namespace) -> int:
    """Re-launch this very command under torchrun with `--nproc` processes on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "benchmark", "run", args.model, "--data", args.data, "--split", args.split, "--out", args.out,
           "--device", args.device, "--precision", args.precision]
    for flag, value in (("--batch-size", args.batch_size), ("--checkpoint", args.checkpoint), ("--workers", args.workers)):
        if value is not None:
            cmd += [flag, str(value)]
    for pair in args.option or []:
        cmd += ["--option", pair]
    for flag in ("skip_unreadable", "overwrite", "quiet"):
        if getattr(args, flag):
            cmd.append("--" + flag.replace("_", "-"))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc))))
    return subprocess.call(cmd, env=env)


def robust_runs(data: Path, split: str, out: Path, *, progress: bool = False) -> list[tuple[str, Path]]:
    """(split, output folder) of a `--robust` run: the clean split into `out`, then each variant
    `<split>_<variant>` into the sibling folder `<out>_<variant>` (a submission of its own, submitted
    with `mmtt submit <out>_<variant> --split <split> --variant <variant>`, or all four at once with
    `mmtt submit <out> --split <split> --robust`). Variants missing from `data` are created first."""
    from benchmark.data.robust import VARIANTS, make_variants, missing_variants, parse_split_name, variant_split_name

    if parse_split_name(split)[1]:
        raise BenchmarkError(f"--split {split} --robust: give the clean split (e.g. test); its variants follow")
    missing = missing_variants(data, split)
    if missing:
        make_variants(data, split, missing, progress=progress)
    return [(split, out)] + [(variant_split_name(split, v), out.with_name(f"{out.name}_{v}")) for v in VARIANTS]


def cmd_run(args: argparse.Namespace) -> int:
    if args.robust:
        runs = robust_runs(Path(args.data), args.split, Path(args.out), progress=not args.quiet)
        logs = {}
        for split, out in runs:
            one = argparse.Namespace(**{**vars(args), "split": split, "out": str(out), "robust": False})
            if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
                code = _torchrun(one)
                if code:
                    return code
                continue
            logs[split] = _run_split(one)
            if not args.json and "config" in logs[split]:   # (rank 0 of a sharded run reports)
                _report_run(one, logs[split])
        if args.json:
            _print_json({"runs": [{"split": split, "out": str(out)} for split, out in runs], "logs": logs})
        return 0
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _torchrun(args)
    log = _run_split(args)
    if "config" not in log:  # a non-zero rank of a sharded run: rank 0 reports
        return 0
    if args.json:
        _print_json(log)
        return 0
    _report_run(args, log)
    return 0


def _run_split(args: argparse.Namespace) -> dict[str, Any]:
    """Run `args.model` over `args.split` into `args.out`; the run log."""
    from benchmark.data.split import load_split
    from benchmark.harness.run import RunOptions, resolve_device, run_model

    registry = _registry()
    entry = registry.get_entry(args.model)
    split = load_split(Path(args.data), args.split)
    device = resolve_device(args.device)
    options = parse_options(args.option)
    kwargs = dict(options)
    if args.checkpoint:
        kwargs["checkpoint"] = args.checkpoint
    model = _call("run", args.model, registry.build, **kwargs)
    identity = {"options": options, "checkpoint": getattr(model, "checkpoint", None),
                "checkpoint_id": getattr(model, "checkpoint_id", None)}
    run_opts = RunOptions(device=args.device, batch_size=args.batch_size, workers=args.workers,
                          precision=args.precision, skip_unreadable=args.skip_unreadable, overwrite=args.overwrite,
                          progress=not args.quiet, description=entry.description, identity=identity)
    return run_model(model, split, Path(args.out), run_opts, device=device)


def _report_run(args: argparse.Namespace, log: dict[str, Any]) -> None:
    """The run's one-line summary (and any skipped images) in the terminal."""
    if log.get("already_complete"):
        print(f"{args.out}: already complete ({log['n_predicted']} predictions for split '{args.split}'); nothing to do")
        return
    rate = f", {log['images_per_s']} img/s" if log.get("images_per_s") else ""
    resumed = f", {log['resumed_items']} resumed" if log.get("resumed_items") else ""
    print(f"wrote {args.out}: {log['n_predicted']} predictions for split '{args.split}' by '{args.model}' "
          f"on {log['device']}{rate}{resumed}")
    if log["n_skipped"]:
        print(f"warning: {log['n_skipped']} unreadable image(s) skipped (listed in {Path(args.out) / 'run.json'}):",
              file=sys.stderr)
        for row in log["skipped"][:20]:
            print(f"  {row['error']}", file=sys.stderr)


# ---------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    registry = _registry()
    registry.get_entry(args.model)
    kwargs: dict[str, Any] = dict(parse_options(args.option))
    kwargs.update(data=Path(args.data), out=Path(args.out) if args.out else None, device=args.device,
                  seed=args.seed, progress=not args.quiet)
    for key in ("epochs", "batch_size", "workers", "lr"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    summary = _call("train", args.model, registry.train, **kwargs)
    if args.json:
        _print_json(summary)
    else:
        extra = "".join(f", {k} {v}" for k, v in summary.get("eval", {}).items())
        print(f"trained '{args.model}' -> {summary['checkpoint']} ({summary.get('seconds', 0):.1f} s{extra})")
    return 0


# ---------------------------------------------------------------- data robust
def cmd_data_robust(args: argparse.Namespace) -> int:
    from benchmark.data.robust import make_variants

    rows = make_variants(Path(args.data), args.split, args.variant, out_root=Path(args.out) if args.out else None,
                         workers=args.workers, progress=not args.quiet)
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(f"wrote split '{row['split']}' ({row['n']} items): {row['file']} + {row['image_root']}/")
    return 0


def add_parsers(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction) -> None:
    """Register the model verbs on `mmtt` and the `robust` action on `mmtt data`."""
    p = sub.add_parser("models", help="list the registered models (kind, what they need first)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("run", help="run a model over a split and write a submission (re-run to resume)")
    p.add_argument("model", help="registered model name (see `mmtt models`)")
    p.add_argument("--data", required=True, help="data root (holds the split JSONs and dataset/)")
    p.add_argument("--split", default="test", help="split name, e.g. test, eval, test_blur (default test)")
    p.add_argument("--out", required=True, help="submission folder to write (re-running resumes it)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the model's)")
    p.add_argument("--checkpoint", help="checkpoint folder (default: .mmtt/checkpoints/MODEL or $MMTT_CHECKPOINTS/MODEL)")
    p.add_argument("--workers", type=int, help="loader processes (default: from the core count; 0 = in-process)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="record unreadable images in run.json and go on (default: stop with a located error)")
    p.add_argument("--overwrite", action="store_true", help="discard what --out holds and start afresh")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine: >1 re-launches under torchrun")
    p.add_argument("--robust", action="store_true",
                   help="also run the split's robustness variants (downscale, blur, both; created in --data if "
                        "missing), each into its own submission folder OUT_downscale, OUT_blur, OUT_both")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="model build option (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run log as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train (or fit) a baseline on the train split and save its checkpoint")
    p.add_argument("model", help="registered model name with a trainer (see `mmtt models`)")
    p.add_argument("--data", required=True, help="data root (holds train-mutilabel.json and dataset/)")
    p.add_argument("--out", help="checkpoint folder (default: .mmtt/checkpoints/MODEL or $MMTT_CHECKPOINTS/MODEL)")
    p.add_argument("--epochs", type=int, help="training epochs (learned models)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--workers", type=int, help="loader processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="trainer option (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the training summary as JSON")
    p.set_defaults(func=cmd_train)

    p = data_sub.add_parser("robust", help="derive the official robustness variants of a split")
    p.add_argument("--data", required=True, help="data root (holds the split JSONs and dataset/)")
    p.add_argument("--split", default="test", help="source split (default test)")
    p.add_argument("--variant", action="append", required=True,
                   choices=("downscale", "blur", "both", "all", "down075", "blur5"),
                   help="downscale (0.75x NEAREST down and up), blur (5x5 Gaussian), both; repeatable. "
                        "Writes <split>-mutilabel_<variant>.json, loaded as split <split>_<variant>")
    p.add_argument("--out", help="data root to write into (default: --data)")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_robust)
