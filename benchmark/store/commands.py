"""`mmtt submit | rescore | leaderboard | compare | db | split | entry | withdraw`: the store's verbs.

`--db` takes any SQLAlchemy URL or a SQLite file path (default `$MMTT_DB`, else
`.mmtt/board.sqlite`); every verb brings the board to the current schema first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.metrics import registry
from benchmark.scoring.options import ScoreOptions
from benchmark.scoring.options import add_arguments as add_score_arguments
from benchmark.store.rules import RULES, TEAM_ENTRY_CHOICES

# SQLAlchemy and the scorer are imported inside the handlers: building the `mmtt` parser (for any
# verb, `mmtt score` included) must stay cheap.



def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _open(args: argparse.Namespace, *, must_exist: bool = False):
    from benchmark.store.board import Board
    from benchmark.store.db import resolve_url, sqlite_path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = resolve_url(args.db)
    path = sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        raise BenchmarkError(f"{path}: no board database here (submit something first, or pass --db)")
    if path is not None and path.is_dir():
        raise BenchmarkError(f"{path}: is a folder, not a board database (--db names a SQLite file or a URL)")
    try:
        return Board.open(url, getattr(args, "files", None))
    except (SQLAlchemyError, OSError) as exc:   # corrupt, read-only, unreachable
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).splitlines() or [type(orig).__name__])[0]
        shown = path or make_url(url).render_as_string(hide_password=True)
        raise BenchmarkError(f"{shown}: cannot open the board database: {reason}") from None


def _f(v: Any, width: int = 8) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.4f}"


# ------------------------------------------------------------------------------------- submit
def robust_submissions(path: Path) -> list[tuple[str | None, Path]]:
    """(variant, folder) of `submit --robust`: the clean run `path`, then the variant runs beside it
    as `mmtt run --robust` lays them out (`path_downscale`, `path_blur`, `path_both`)."""
    from benchmark.data.robust import VARIANTS

    found = [(v, path.with_name(f"{path.name}_{v}")) for v in VARIANTS]
    found = [(v, p) for v, p in found if p.exists()]
    if not found:
        raise BenchmarkError(f"{path}: no variant run beside it ({path.name}_downscale, _blur, _both; "
                             "written by `mmtt run --robust`)")
    return [(None, path), *found]


def cmd_submit(args: argparse.Namespace) -> int:
    from benchmark.store.submission import SubmitRequest, submit

    if args.robust and args.variant:
        raise BenchmarkError("--robust submits the clean run and every variant run beside it; drop --variant")
    if args.skip_on_variants and not args.robust:
        raise BenchmarkError("--skip-on-variants goes with --robust")
    runs = robust_submissions(Path(args.submission)) if args.robust else [(args.variant, Path(args.submission))]
    options = ScoreOptions.from_args(args)
    extra_skip = tuple(n.strip() for group in args.skip_on_variants or [] for n in group.split(",") if n.strip())
    outcomes = []
    with _open(args) as board:
        for variant, path in runs:   # each atomically; the clean one first (variants link to it)
            request = SubmitRequest(path=path, data=Path(args.data), split=args.split, variant=variant,
                                    name=args.name, team=args.team, baseline=args.baseline, private=args.private,
                                    options=options.with_(skip=tuple(dict.fromkeys(options.skip + extra_skip)))
                                    if variant and extra_skip else options,
                                    daily_limit=args.daily_limit, max_upload_mb=args.max_upload_mb)
            outcomes.append(submit(board, request))
    if args.json:
        _print_json([o.to_json() for o in outcomes] if args.robust else outcomes[0].to_json())
        return 0
    for outcome in outcomes:
        _print_outcome(outcome)
    return 0


def _print_outcome(outcome) -> None:
    s = outcome.summary
    what = "already scored (identical files), submission" if outcome.duplicate else "scored submission"
    print(f"{what} #{outcome.submission_id}: entry '{outcome.entry}' (team {outcome.team}) on split "
          f"{outcome.split}{' (hidden)' if outcome.hidden else ''}")
    print(f"protocol {s['protocol']}  metrics v{s['metric_version']}  data {s['dataset_fingerprint'][:19]}  "
          f"files {outcome.files_hash[:19]}")
    ci = s.get("ci95", {})
    for m in [k for k in registry.headline() if k in s["metrics"]]:
        lo_hi = ci.get(m)
        interval = f"  [{_f(lo_hi[0], 0)}, {_f(lo_hi[1], 0)}]" if lo_hi and None not in lo_hi else ""
        print(f"  {m:<12}{_f(s['metrics'][m])}{interval}")
    for w in (s.get("warnings") or [])[:10]:
        print(f"warning: {w}")


# ------------------------------------------------------------------------------------ rescore
def cmd_rescore(args: argparse.Namespace) -> int:
    from benchmark.store.rescore import format_report, rescore

    with _open(args, must_exist=True) as board:
        log = None if args.json else (lambda line: print(line, file=sys.stderr))
        report = rescore(board, Path(args.data), split=args.split, entry=args.entry,
                         cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                         progress=args.progress, log=log, update=args.update)
    if args.json:
        _print_json(report.to_json())
    else:
        print(format_report(report))
    failed = [i for i in report.items if i.status == "failed"]
    if failed:
        raise BenchmarkError(f"{len(failed)} of {len(report.items)} re-score(s) failed; first: "
                         f"{failed[0].entry} / {failed[0].split}: {failed[0].message}")
    return 0


# -------------------------------------------------------------------------------- leaderboard
def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.store.ranking import board_json, leaderboard, metric_names
    from benchmark.store.rules import rule_value

    if args.robust:
        return _robust_board(args)

    with _open(args, must_exist=True) as board:
        def read(session):
            team_entry = rule_value(session, "team_entry", args.team_entry)
            return team_entry, leaderboard(session, args.split, protocol=args.protocol, metric=args.metric,
                                           team_entry=team_entry, public=not args.all)

        team_entry, rows = board.db.read(read, "reading the board")
    if args.json:
        _print_json(board_json(rows))
        return 0
    if not rows:
        print(f"no scored entry on split {args.split} ({args.protocol})")
        return 0
    cols = [m for m in metric_names(rows) if m in registry.brief() or m == args.metric][:9]
    def mark(r) -> str:
        return (" " if r.baseline or r.flagged else "") + ("*" if r.baseline else "") + ("!" if r.flagged else "")

    we = max(5, *(len(r.entry + mark(r)) for r in rows))
    wt = max(4, *(len(r.team) for r in rows))
    print(f"{'rank':>4}  {'entry':<{we}}  {'team':<{wt}}" + "".join(f"{c:>10}" for c in cols) + "  stamps")
    for r in rows:
        stamps = f"v{r.metric_version} {r.dataset_fingerprint[7:15]}" + (" stale" if r.stale else "")
        print(f"{r.rank:>4}  {r.entry + mark(r):<{we}}  {r.team:<{wt}}"
              + "".join("  " + _f(r.metrics.get(c)) for c in cols) + f"  {stamps}")
    from benchmark.store.ranking import DEFAULT_ORDER

    order = args.metric or ", then ".join(DEFAULT_ORDER)
    print(f"\nsplit {args.split}, protocol {args.protocol}; ranked by {order} (higher is better); "
          f"one entry per team ({team_entry}); * baseline (always shown), ! flagged; "
          "stamps: metric version, data fingerprint")
    return 0


def _robust_board(args: argparse.Namespace) -> int:
    from benchmark.store.robust import format_robust, robustness
    from benchmark.store.rules import rule_value

    with _open(args, must_exist=True) as board:
        table = board.db.read(lambda s: robustness(s, args.split, protocol=args.protocol,
                                                   team_entry=rule_value(s, "team_entry", args.team_entry),
                                                   public=not args.all, n_boot=args.n_boot, seed=args.seed),
                              "reading the board")
    if args.json:
        _print_json(table.to_json())
    else:
        shown = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else None
        unknown = [m for m in shown or () if m not in table.metrics]
        if unknown:
            raise BenchmarkError(f"--metrics: unknown {', '.join(unknown)} (choose from {', '.join(table.metrics)})")
        print(format_robust(table, shown))
    return 0


# ------------------------------------------------------------------------------------ compare
def cmd_compare(args: argparse.Namespace) -> int:
    from benchmark.store.compare import compare, format_comparison

    with _open(args, must_exist=True) as board:
        result = board.db.read(lambda s: compare(s, args.a, args.b, args.split, args.protocol, n_boot=args.n_boot,
                                                 seed=args.seed, alpha=args.alpha), "comparing")
    if args.json:
        _print_json(result)
    else:
        print(format_comparison(result))
    return 0


# ----------------------------------------------------------------------------------------- db
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from benchmark.store.db import Database
    from benchmark.store.migrate import current_revision, upgrade

    database = Database.open(args.db)
    try:
        before = current_revision(database)
        upgrade(database, args.revision)
        after = current_revision(database)
    finally:
        database.dispose()
    print(f"{database.url}: schema {before or 'empty'} -> {after}")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from benchmark.store.migrate import current_revision, head_revision
    from benchmark.store.models import Entry, Evaluation, Submission, Team
    from benchmark.store.rules import rule_value

    with _open(args, must_exist=True) as board:
        def read(session) -> dict[str, Any]:
            statuses = dict(session.execute(select(Submission.status, func.count()).group_by(Submission.status)).all())
            return {"teams": session.scalar(select(func.count(Team.id))),
                    "entries": session.scalar(select(func.count(Entry.id))),
                    "evaluations": session.scalar(select(func.count(Evaluation.id))),
                    "submissions": statuses,
                    "rules": {k: rule_value(session, k) for k in RULES}}

        info = {"url": board.db.url, "revision": current_revision(board.db), "head": head_revision(),
                "files": str(board.files.root), **board.db.read(read)}
    if args.json:
        _print_json(info)
    else:
        for k, v in info.items():
            print(f"{k:>12}: {v}")
    return 0


def cmd_db_set(args: argparse.Namespace) -> int:
    from benchmark.store.rules import set_rule

    with _open(args) as board:
        value = board.db.write(lambda s: set_rule(s, args.key, args.value), "saving a setting")
    print(f"{args.key} = {value}")
    return 0


# -------------------------------------------------------------------------------------- split
def cmd_split_add(args: argparse.Namespace) -> int:
    from benchmark.data.robust import parse_split_name
    from benchmark.store.robust import load_variant_splits, register_split

    from benchmark.data.split import load_split

    if args.robust and parse_split_name(args.split)[1]:
        raise BenchmarkError(f"--split {args.split} --robust: give the clean split (e.g. test); its variants follow")
    data = load_split(Path(args.data), args.split)
    variants = load_variant_splits(Path(args.data), data, progress=not args.quiet) if args.robust else {}

    def write(session) -> list[tuple[str, str, int, str]]:
        base = register_split(session, data, hidden=args.hidden, update=args.update)
        done = [(args.split, base.state, len(data), data.fingerprint)]
        for variant, vsplit in variants.items():
            row = register_split(session, vsplit, hidden=args.hidden, update=args.update, base=base.row,
                                 variant=variant)
            done.append((vsplit.name, row.state, len(vsplit), vsplit.fingerprint))
        return done

    with _open(args) as board:
        done = board.db.write(write, "registering the split")
    for name, state, n, fingerprint in done:
        kind = "" if name == args.split else f" (robustness variant of {args.split})"
        print(f"split {name}{kind}: {state}; {n} items, fingerprint {fingerprint}" + (", hidden" if args.hidden else ""))
    return 0


def _set_hidden(args: argparse.Namespace, hidden: bool) -> int:
    from benchmark.store.detail import get_split

    def write(session) -> None:
        get_split(session, args.name).hidden = hidden

    with _open(args, must_exist=True) as board:
        board.db.write(write, "updating the split")
    print(f"split {args.name}: {'hidden (truth and per-sample scores stay private)' if hidden else 'public'}")
    return 0


def cmd_split_list(args: argparse.Namespace) -> int:
    from benchmark.store.detail import list_splits

    with _open(args, must_exist=True) as board:
        splits = board.db.read(list_splits)
    if args.json:
        _print_json(splits)
    else:
        for s in splits:
            print(f"{s['name']:<16}{s['n_items']:>7} items {s['n_entries']:>5} entries  "
                  f"{'hidden' if s['hidden'] else 'public':<7} {s['fingerprint'][:23]}"
                  + (f"  {s['variant']} variant of {s['base']}" if s.get("variant") else ""))
    return 0


# -------------------------------------------------------------------------------------- entry
def cmd_entry(args: argparse.Namespace) -> int:
    from benchmark.store.detail import entry_detail, get_entry, list_splits

    def write(session) -> None:
        e = get_entry(session, args.name)
        if args.visibility:
            e.visibility = args.visibility
        if args.flag is not None:
            e.flagged, e.flag_reason = True, args.flag
        if args.unflag:
            e.flagged, e.flag_reason = False, ""
        if args.baseline is not None:
            e.baseline = args.baseline

    with _open(args, must_exist=True) as board:
        board.db.write(write, "updating the entry")

        def read(session) -> list[dict[str, Any]]:
            out = []
            for s in list_splits(session):
                try:
                    out.append(entry_detail(session, args.name, s["name"], args.protocol, public=False))
                except BenchmarkError:
                    continue
            if not out:
                e = get_entry(session, args.name)
                out.append({"entry": e.name, "team": e.team.name, "visibility": e.visibility,
                            "flagged": e.flagged, "baseline": e.baseline, "splits": []})
            return out

        details = board.db.read(read)
    if args.json:
        _print_json(details)
        return 0
    d = details[0]
    print(f"entry '{d['entry']}' (team {d['team']}): {d['visibility']}"
          + (", baseline" if d["baseline"] else "") + (f", flagged: {d.get('flag_reason', '')}" if d["flagged"] else ""))
    for d in details:
        if "metrics" in d:
            shown = "  ".join(f"{m} {d['metrics'][m]:.4f}" for m in registry.headline() if d["metrics"].get(m) is not None)
            print(f"  {d['split']}: {shown}  (v{d['metric_version']}, submission #{d['submission_id']})")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    from benchmark.store.models import Submission
    from benchmark.store.scores import refresh_current

    def write(session) -> str:
        row = session.get(Submission, args.submission_id)
        if row is None:
            raise BenchmarkError(f"no submission #{args.submission_id}")
        if row.status != "scored":
            raise BenchmarkError(f"submission #{row.id} is {row.status}; only scored ones can be withdrawn")
        row.status = "withdrawn"
        row.message = args.reason or "withdrawn"
        session.flush()
        refresh_current(session, row.entry_id, row.split_id, row.protocol)
        return f"submission #{row.id} ({row.entry_name} on {row.split_name}) withdrawn"

    with _open(args, must_exist=True) as board:
        print(board.db.write(write, "withdrawing"))
    return 0


def cmd_submissions(args: argparse.Namespace) -> int:
    from benchmark.store.detail import submission_history

    with _open(args, must_exist=True) as board:
        rows = board.db.read(lambda s: submission_history(s, team=args.team, entry=args.entry, split=args.split,
                                                          limit=args.limit))
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        msg = r["message"].splitlines()[0][:80] if r["message"] else ""
        print(f"#{r['id']:<5} {r['created_at'][:19]}  {r['status']:<10} {r['team']:<16} {r['entry']:<20} "
              f"{r['split']:<10} {msg}")
    return 0


# ------------------------------------------------------------------------------------ parsers
def _db_arg(p: argparse.ArgumentParser, files: bool = True) -> None:
    p.add_argument("--db", help="SQLAlchemy URL or SQLite file (default $MMTT_DB, else .mmtt/board.sqlite)")
    if files:
        p.add_argument("--files", help="folder of kept submission files (default: beside a SQLite board, "
                                       "$MMTT_FILES, or the board's files_root setting)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the store's subcommands on the `mmtt` parser."""
    p = sub.add_parser("submit", help="validate, score and store a submission on the board (atomically)")
    p.add_argument("submission", help="submission folder or .zip/.tar.gz (manifest.json required)")
    p.add_argument("--data", required=True, help="data root (holds the split JSONs and dataset/)")
    p.add_argument("--split", default="test")
    p.add_argument("--variant", choices=("downscale", "blur", "both"),
                   help="predictions on a robustness variant of --split (run with `mmtt run ... --robust`); "
                        "linked to the entry's clean submission on --split by --name")
    p.add_argument("--robust", action="store_true",
                   help="submit SUBMISSION (the clean run) and then each variant run beside it "
                        "(SUBMISSION_downscale, _blur, _both, as `mmtt run --robust` writes them); --json: a list")
    p.add_argument("--skip-on-variants", action="append", metavar="NAMES",
                   help="with --robust: leave these metrics out of the variant submissions only (e.g. meteor, by far "
                        "the slowest; the robustness table then has no row for them)")
    p.add_argument("--name", required=True, help="entry name on the board (unique; resubmitting updates it)")
    p.add_argument("--team", help="team (default: the manifest's)")
    p.add_argument("--baseline", action="store_true", help="a maintainer's baseline: always shown, no daily limit")
    p.add_argument("--private", action="store_true", help="keep the entry off the public board")
    add_score_arguments(p)
    p.add_argument("--daily-limit", type=int, help=f"override: {RULES['daily_limit'].help}")
    p.add_argument("--max-upload-mb", type=float, help=f"override: {RULES['max_upload_mb'].help}")
    p.add_argument("--json", action="store_true", help="print the stored result as one JSON object")
    _db_arg(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("rescore", help="re-score stored entries from their kept files; print what moved")
    p.add_argument("--data", required=True, help="data root (holds the split JSONs and dataset/)")
    p.add_argument("--split", help="only this split")
    p.add_argument("--entry", help="only this entry")
    p.add_argument("--cache-dir", help="truth cache (default $MMTT_CACHE_DIR or ~/.cache/mmtt-bench)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--update", action="store_true",
                   help="accept data whose truth fingerprint differs from the board's (the truth was fixed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _db_arg(p)
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("leaderboard", help="print the ranked board of a split")
    p.add_argument("--split", default="test")
    p.add_argument("--metric", help="rank by this metric (default: iou, then cider)")
    p.add_argument("--protocol", choices=("strict", "official"), default="strict")
    p.add_argument("--team-entry", choices=TEAM_ENTRY_CHOICES,
                   help="entry shown per team (default: the board's team_entry setting, else best)")
    p.add_argument("--all", action="store_true", help="maintainer view: private entries too")
    p.add_argument("--json", action="store_true", help="a JSON list of rows in rank order")
    p.add_argument("--robust", action="store_true",
                   help="the robustness table: every entry's drop from the clean split to its degraded variants, "
                        "with paired-bootstrap 95%% CIs and the robustness rank (--json: one object)")
    p.add_argument("--metrics", help="--robust: comma-separated metrics to print (default: every headline metric)")
    p.add_argument("--n-boot", type=int, default=1000, help="--robust: paired bootstrap replicates")
    p.add_argument("--seed", type=int, default=0, help="--robust: bootstrap seed")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("compare", help="paired bootstrap test of two entries' difference on a split")
    p.add_argument("a", help="entry A")
    p.add_argument("b", help="entry B")
    p.add_argument("--split", default="test")
    p.add_argument("--protocol", choices=("strict", "official"), default="strict")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--json", action="store_true")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_compare)

    db = sub.add_parser("db", help="the board database: schema upgrades, status, rules")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_sub.add_parser("upgrade", help="apply schema migrations (other verbs do it automatically)")
    p.add_argument("--revision", default="head")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_db_upgrade)
    p = db_sub.add_parser("status", help="schema revision, counts, rules in force")
    p.add_argument("--json", action="store_true")
    _db_arg(p)
    p.set_defaults(func=cmd_db_status)
    p = db_sub.add_parser("set", help="set a board rule: " + "; ".join(f"{k}: {r.help}" for k, r in RULES.items()))
    p.add_argument("key", choices=tuple(RULES))
    p.add_argument("value")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_db_set)

    split = sub.add_parser("split", help="splits on the board: register, hide, list")
    split_sub = split.add_subparsers(dest="split_command", required=True, metavar="ACTION")
    p = split_sub.add_parser("add", help="register a split and its truth fingerprint")
    p.add_argument("--data", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--hidden", action="store_true", help="hidden truth: only aggregate scores are published")
    p.add_argument("--update", action="store_true", help="accept a changed fingerprint (the truth was fixed)")
    p.add_argument("--robust", action="store_true",
                   help="also register its robustness variants (<split>_downscale, _blur, _both), each with its "
                        "own fingerprint; variants missing from --data are created first (`mmtt data robust`)")
    p.add_argument("--quiet", action="store_true", help="no progress bar while creating variants")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_split_add)
    for name, hidden, text in (("hide", True, "publish only aggregate scores of a split"),
                               ("unhide", False, "publish a split's breakdowns and per-sample scores")):
        p = split_sub.add_parser(name, help=text)
        p.add_argument("name")
        _db_arg(p, files=False)
        p.set_defaults(func=lambda a, h=hidden: _set_hidden(a, h))
    p = split_sub.add_parser("list", help="the board's splits")
    p.add_argument("--json", action="store_true")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_split_list)

    p = sub.add_parser("entry", help="show an entry; change its visibility, flag or baseline mark")
    p.add_argument("name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--public", dest="visibility", action="store_const", const="public")
    g.add_argument("--private", dest="visibility", action="store_const", const="private")
    p.add_argument("--flag", metavar="REASON", help="flag the entry (shown, marked) with a reason")
    p.add_argument("--unflag", action="store_true")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--baseline", dest="baseline", action="store_const", const=True)
    g.add_argument("--no-baseline", dest="baseline", action="store_const", const=False)
    p.add_argument("--protocol", choices=("strict", "official"), default="strict")
    p.add_argument("--json", action="store_true")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_entry, baseline=None)

    p = sub.add_parser("withdraw", help="withdraw a scored submission (its entry falls back to the previous one)")
    p.add_argument("submission_id", type=int)
    p.add_argument("--reason", default="")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser("submissions", help="list submissions with status and message (failed ones too)")
    p.add_argument("--team")
    p.add_argument("--entry")
    p.add_argument("--split")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    _db_arg(p, files=False)
    p.set_defaults(func=cmd_submissions)
