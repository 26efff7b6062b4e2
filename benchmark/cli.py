"""The `mmtt` command line: the one place that wires data, scoring, store, baselines and board.

Every user-fixable problem is a `BenchmarkError`: printed as one located line (plus the list of
problems found) on stderr with exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from benchmark import __version__
from benchmark.errors import BenchmarkError
from benchmark.scoring.options import add_arguments as add_score_arguments

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


# ---------------------------------------------------------------- data
def cmd_data_demo(args: argparse.Namespace) -> int:
    from benchmark.data.synth import generate

    summary = generate(Path(args.out), n=args.n, seed=args.seed, size=args.size,
                       workers=args.workers, progress=not args.quiet)
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote mini-MMTT ({args.n} items, seed {args.seed}, {args.size}px) to {args.out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from benchmark.data.split import available_splits, load_split

    names = args.split or available_splits(Path(args.data))
    if not names:
        raise BenchmarkError(f"{args.data}: no split files (*-mutilabel*.json) found")
    report = []
    for name in names:
        split = load_split(Path(args.data), name)
        report.append({"split": name, "file": str(split.json_path), "n": len(split),
                       "fingerprint": split.fingerprint, "methods": split.counts("method"),
                       "sources": split.counts("source")})
    if args.json:
        _print_json(report)
    else:
        for row in report:
            print(f"{row['split']:>14}  {row['n']:>6} items  {row['fingerprint'][:23]}  "
                  f"methods {row['methods']}  sources {row['sources']}")
    return 0


def cmd_data_card(args: argparse.Namespace) -> int:
    import tempfile

    from PIL import Image

    from benchmark.data.split import load_split
    from benchmark.data.synth import render_sample_card

    split = load_split(Path(args.data), args.split)
    ids = args.id or [next(r.image_id for r in split.records if r.method == m)
                      for m in split.counts("method")]  # one per manipulation method
    for image_id in ids:
        if image_id not in split.by_id:
            raise BenchmarkError(f"{split.json_path}: no image_id {image_id!r}")
    with tempfile.TemporaryDirectory() as tmp:
        cards = []
        for k, image_id in enumerate(ids):
            render_sample_card(Path(args.data), image_id, Path(tmp) / f"{k}.png")
            cards.append(Image.open(Path(tmp) / f"{k}.png").convert("RGB"))
        sheet = Image.new("RGB", (max(c.width for c in cards), sum(c.height for c in cards)), "white")
        y = 0
        for card in cards:
            sheet.paste(card, (0, y))
            y += card.height
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({', '.join(ids)})")
    return 0


# ---------------------------------------------------------------- score
def cmd_score(args: argparse.Namespace) -> int:
    from benchmark.data.split import load_split
    from benchmark.scoring.report import format_report
    from benchmark.scoring.options import ScoreOptions
    from benchmark.scoring.score import score_submission

    split = load_split(Path(args.data), args.split)
    options = ScoreOptions.from_args(args)
    result = score_submission(Path(args.submission), split, options, masks=args.masks)
    if args.timings:
        print(json.dumps({"timings": {k: round(v, 3) for k, v in result.timings.items()}}), file=sys.stderr)
    if args.json:
        _print_json(result.to_json())
    else:
        print(format_report(result.summary))
    return 0


# ---------------------------------------------------------------- metrics
def cmd_metrics(args: argparse.Namespace) -> int:
    from benchmark.metrics import registry

    rows = registry.describe()
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'key':<22}{'scorer':<10}{'family':<10}{'reduction':<10}{'on by default':<17}what")
    for r in rows:
        when = ("strict+official" if r["official"] else "strict") if r["default"] else "on request"
        if r["scorer"] == "semantic":
            when = "--embed-model"
        print(f"{r['key']:<22}{r['scorer']:<10}{r['family']:<10}{r['reduction']:<10}{when:<17}{r['help']}")
    print("\nselect with --metrics NAMES / --skip NAMES (scorer names or metric keys, comma-separated)")
    return 0


# ---------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from benchmark.cli_demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmtt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mmtt-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="MMTT data: the embedded mini-MMTT, checks")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("demo", help="write the embedded mini-MMTT in the official layout")
    p.add_argument("--out", required=True, help="output data root")
    p.add_argument("--n", type=int, default=2000, help="number of items over train/eval/test (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_data_demo)
    p = data_sub.add_parser("check", help="validate a data root and print each split's fingerprint")
    p.add_argument("--data", required=True, help="data root (holds the split JSONs and dataset/)")
    p.add_argument("--split", action="append", help="split name (repeatable; default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_check)
    p = data_sub.add_parser("card", help="draw items with their mask and explanation into a PNG")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--id", action="append", help="image_id (repeatable; default: one per method)")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=cmd_data_card)

    p = sub.add_parser("score", help="validate and score a submission against a split")
    p.add_argument("submission", help="submission folder, .zip/.tar.gz, or predictions .jsonl")
    p.add_argument("--data", required=True, help="data root (holds the split JSONs and dataset/)")
    p.add_argument("--split", default="test")
    p.add_argument("--masks", help="mask folder (default: masks/ in the submission, or its only folder)")
    add_score_arguments(p)
    p.add_argument("--timings", action="store_true", help="print the wall time of each stage on stderr (JSON)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("metrics", help="list the metrics (the registry): key, scorer, family, how it reduces")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=cmd_metrics)

    from benchmark.cli_models import add_parsers as add_model_parsers
    from benchmark.cli_convert import add_parsers as add_convert_parsers
    from benchmark.store.commands import add_parsers as add_store_parsers

    add_model_parsers(sub, data_sub)  # models, run, train; data robust
    add_convert_parsers(sub)          # convert (official checkpoints)
    add_store_parsers(sub)            # submit, rescore, leaderboard, compare, splits
    from leaderboard_app.commands import add_parsers as add_board_parsers

    add_board_parsers(sub)            # board (serve), board token

    p = sub.add_parser("demo", help="the main job on the embedded mini-MMTT")
    p.add_argument("--workdir", default=".mmtt/demo", help="where data and results go (default .mmtt/demo)")
    p.add_argument("--n", type=int, default=2000, help="mini-MMTT items over train/eval/test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (training and the harness)")
    p.add_argument("--no-serve", action="store_true", help="print the board instead of serving it")
    p.add_argument("--port", type=int, default=8501, help="board port (default 8501)")
    p.add_argument("--jobs", type=int, default=None,
                   help="jobs at once in training, harness and submit stages (default: one per core, at most 4)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchmarkError as err:
        print(f"error: {err.report()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
