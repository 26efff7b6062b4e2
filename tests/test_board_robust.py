"""The Robustness page under Streamlit's AppTest and once in a real browser: per entry the clean and
degraded scores, drops with paired CIs, the robustness rank and its rule, the clean-vs-degraded plot;
entries without variant runs are "not evaluated", never zero."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from benchmark.data.robust import make_variants
from benchmark.store.board import Board
from benchmark.store.robust import RANK_RULE, robustness
from benchmark.scoring.options import ScoreOptions
from benchmark.store.submission import SubmitRequest, submit
from leaderboard_app.present import fmt, fmt_ci, fmt_pct
from tests.conftest import write_submission
from tests.test_board_helpers import BoardWorld, board_world  # noqa: F401

APP = Path(__file__).resolve().parents[1] / "leaderboard_app" / "app.py"
VARIANTS = ("downscale", "blur", "both")
# entry -> (team, variants it is run on, what its runs hold)
PLAN = {"alpha": ("team-a", VARIANTS, {}), "masker": ("maintainers", VARIANTS, {"captions": False}),
        "talker": ("team-c", ("blur",), {"masks": False})}


@pytest.fixture(scope="module")
def robust_world(board_world: BoardWorld, tmp_path_factory) -> BoardWorld:
    """The shared board, copied with its data, plus the test split's variants and variant runs."""
    root = tmp_path_factory.mktemp("robust-board")
    data = root / "data"
    shutil.copytree(board_world.data, data)
    world = board_world.clone(root)
    world = BoardWorld(root=root, data=data, records=world.records, db=world.db, token=world.token)
    make_variants(data, "test", ["all"], workers=1)
    from benchmark.cli import main

    assert main(["split", "add", "--data", str(data), "--split", "test", "--robust", "--db", str(world.db),
                 "--quiet"]) == 0
    with Board.open(world.url) as board:
        for name, (team, variants, content) in PLAN.items():
            for k, variant in enumerate(variants):
                records = json.loads((data / f"test-mutilabel_{variant}.json").read_text())
                tasks = ["interpretation"] if content.get("masks") is False else \
                    ["localization"] if content.get("captions") is False else None
                manifest = {"model": f"{name}-model", "team": team, "split": f"test_{variant}",
                            **({"tasks": tasks} if tasks else {})}
                path = write_submission(root / "subs" / f"{name}-{variant}", records, seed=40 + k, manifest=manifest,
                                        **content)
                submit(board, SubmitRequest(path=path, data=data, name=name, split="test", variant=variant,
                                            options=ScoreOptions(skip=("meteor",), n_boot=50, cache_dir=root / "cache"),
                                            baseline=name == "masker"))
    return world


def run_page(world: BoardWorld, monkeypatch, **params) -> AppTest:
    world.env(monkeypatch)
    at = AppTest.from_file(str(APP), default_timeout=90)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("pages/robustness.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _table(at: AppTest, column: str = "Robustness rank"):
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r} on the page")


def test_robustness_page_shows_drops_ranks_and_not_evaluated(robust_world: BoardWorld, monkeypatch) -> None:
    at = run_page(robust_world, monkeypatch)
    assert [t.value for t in at.title] == ["Robustness"]
    assert any(RANK_RULE in m.value for m in at.markdown)            # the rule is stated on the page
    with Board.open(robust_world.url, upgrade=False) as board:
        expected = board.db.read(lambda s: robustness(s, "test", n_boot=50))
    table, drops = _table(at), _table(at, "Drop blur")
    names = [r.entry + (" ★" if r.baseline else "") for r in expected.rows]
    assert table["Entry"].tolist() == names and drops["Entry"].tolist() == names
    by_entry = {r.entry: r for r in expected.rows}
    rows = {e.removesuffix(" ★"): table[table["Entry"] == e].iloc[0] for e in table["Entry"]}
    drop_rows = {e.removesuffix(" ★"): drops[drops["Entry"] == e].iloc[0] for e in drops["Entry"]}
    alpha, masker = by_entry["alpha"], by_entry["masker"]
    assert {alpha.rank, masker.rank} == {1, 2}
    for name in ("alpha", "masker"):
        row, want = rows[name], by_entry[name]
        assert row["Status"] == "ranked" and row["Robustness rank"] == want.rank
        assert row["Clean"] == fmt_ci(want.clean["iou"], want.clean_ci95["iou"])
        for v in VARIANTS:
            d = want.variants[v]["iou"]
            assert row[v.capitalize()] == fmt(d.degraded)
            assert drop_rows[name][f"Drop {v}"] == fmt_ci(d.drop, d.drop_ci) and "(" in drop_rows[name][f"Drop {v}"]
            assert drop_rows[name][f"Rel. drop {v}"] == fmt_pct(d.rel_drop, d.rel_ci)
    beta = rows["beta"]
    assert beta["Status"] == "not evaluated" and pd_isna(beta["Robustness rank"])
    assert all(beta[c] == "not evaluated" for c in ("Downscale", "Blur", "Both"))
    assert all(v == "not evaluated" for v in drop_rows["beta"].tolist()[1:])
    assert "0.00" not in " ".join(str(x) for x in [*beta.tolist(), *drop_rows["beta"].tolist()])   # never a zero
    (chart,) = at.get("vega_lite_chart")                             # clean vs degraded per entry
    assert "condition" in chart.proto.spec and "score" in chart.proto.spec

    at.selectbox(key="robust_metric").set_value("cider").run()
    assert not at.exception
    table, drops = _table(at), _table(at, "Drop blur")
    talker = table[table["Entry"] == "talker"].iloc[0]
    assert talker["Status"] == "partly evaluated" and talker["Downscale"] == "not evaluated"
    want = by_entry["talker"].variants["blur"]["cider"]
    assert drops[drops["Entry"] == "talker"].iloc[0]["Drop blur"] == fmt_ci(want.drop, want.drop_ci)


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_board_without_variants_explains_how_to_add_them(board_world: BoardWorld, monkeypatch) -> None:
    at = run_page(board_world, monkeypatch)
    assert any("split add" in i.value and "--robust" in i.value for i in at.info)


# ------------------------------------------------------------------------------- browser
@pytest.mark.browser
def test_robustness_page_in_a_real_browser(robust_world: BoardWorld, tmp_path: Path) -> None:
    from tests.test_board_browser import ARGS, ARTIFACTS, CHROMIUM, _need_browser, streamlit_board

    _need_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with streamlit_board(robust_world, tmp_path / "server.log", "--no-meteor") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1300})
            page.goto(url + "/", wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('MMTT Leaderboard')", timeout=60000)
            page.get_by_role("link", name="Robustness").click()            # the sidebar entry
            page.wait_for_selector("h1:has-text('Robustness')", timeout=60000)
            page.wait_for_selector("[data-testid=stDataFrame]", timeout=60000)
            page.wait_for_selector("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg",
                                   timeout=60000)
            page.wait_for_timeout(1500)                                   # let the chart draw
            html = page.content()
            assert "not evaluated" in html and "ranked" in html
            for name in ("alpha", "masker", "beta"):
                assert name in html
            page.screenshot(path=str(ARTIFACTS / "robustness.png"), full_page=True)
        finally:
            browser.close()
    print(f"\nrobustness screenshot: {ARTIFACTS / 'robustness.png'}")


def test_submit_page_links_a_variant_upload_to_the_clean_entry(robust_world: BoardWorld, monkeypatch,
                                                               tmp_path: Path, request) -> None:
    from sqlalchemy import select

    from benchmark.store.models import Submission
    from tests.service_fixtures import Service
    from tests.test_board_helpers import TEAM_TOKEN_TEAM
    from tests.test_board_submit import zipped

    world = robust_world.clone(tmp_path / "board")
    world = BoardWorld(root=world.root, data=robust_world.data, records=world.records, db=world.db, token=world.token)
    records = json.loads((world.data / "test-mutilabel_blur.json").read_text())
    blur = zipped(write_submission(tmp_path / "blur", records, seed=8,
                                   manifest={"model": "web", "team": TEAM_TOKEN_TEAM, "split": "test_blur"}))
    clean = zipped(world.submission("webby", team=TEAM_TOKEN_TEAM, seed=9))

    # the page posts through the submission API: a real `mmtt serve` (embedded broker) with one worker
    svc = Service(db=world.url, data=world.data, broker=f"sqla+sqlite:///{world.root / 'board.broker.sqlite'}",
                  files=world.files, logs=tmp_path / "api-logs",
                  env={"MMTT_LEASE_S": "5", "MMTT_CACHE_DIR": str(world.root / "cache")})
    (tmp_path / "api-logs").mkdir()
    svc.start_api()
    svc.start_worker()
    request.addfinalizer(svc.stop)

    def upload(payload: bytes, variant: str) -> AppTest:
        world.env(monkeypatch)
        monkeypatch.setenv("MMTT_BOARD_API", svc.url)
        at = AppTest.from_file(str(APP), default_timeout=240)
        at.run()
        at.switch_page("pages/submit.py").run()
        assert "test_blur" not in at.selectbox(key="submit_split").options   # variants are picked as images
        at.text_input(key="submit_token").set_value(world.token)
        at.text_input(key="submit_name").set_value("webby")
        at.selectbox(key="submit_variant").set_value(variant)
        at.file_uploader(key="submit_file").upload("sub.zip", payload, "application/zip")
        svc.run_page(at)
        assert not at.exception, [e.value for e in at.exception]
        return at

    at = upload(blur, "blur")                                 # no clean submission yet
    assert any("submit the clean run first" in e.value for e in at.error)
    at = upload(clean, "clean")
    assert at.success
    at = upload(clean, "blur")                                # clean predictions as the blur run
    assert any("names no split" in e.value for e in at.error)
    at = upload(blur, "blur")
    assert at.success and "test\\_blur" in at.success[0].value   # (markdown-escaped)
    with Board.open(world.url, upgrade=False) as board:
        subs = board.db.read(lambda s: [(r.split_name, r.status, r.clean_submission_id, r.id)
                                        for r in s.scalars(select(Submission).where(Submission.entry_name == "webby"))])
    scored = {split: (clean_id, sid) for split, status, clean_id, sid in subs if status == "scored"}
    assert scored["test_blur"][0] == scored["test"][1]
