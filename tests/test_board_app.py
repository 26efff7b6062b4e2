"""The web board's pages under Streamlit's AppTest: the main table (ranking as `mmtt leaderboard`,
CIs, sorting, filters, breakdown switching, columns, CSV), the entry page (metrics, breakdowns,
gallery, hidden splits), Compare (paired verdicts) and Plots."""

from __future__ import annotations

import gc
import io
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from benchmark.metrics import METRIC_VERSION
from benchmark.metrics import registry
from benchmark.store.board import Board
from benchmark.store.compare import compare
from benchmark.store.detail import entry_detail
from benchmark.store.ranking import leaderboard
from leaderboard_app.present import fmt_ci
from tests.test_board_helpers import INJECT_NAME, BoardWorld, board_world  # noqa: F401

APP = Path(__file__).resolve().parents[1] / "leaderboard_app" / "app.py"


def run_app(world: BoardWorld, monkeypatch, page: str | None = None, *, data: bool = True, **params) -> AppTest:
    world.env(monkeypatch, data=data)
    at = AppTest.from_file(str(APP), default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame(at: AppTest, *columns: str) -> pd.DataFrame | None:
    """The first table on the page that has these columns (dataframes carry no key in AppTest)."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    return None


def board_frame(at: AppTest) -> pd.DataFrame:
    table = frame(at, "Rank", "Entry")
    assert table is not None
    return table


def cli_rows(world: BoardWorld, **kw):
    with Board.open(world.url, upgrade=False) as board:
        return board.db.read(lambda s: leaderboard(s, "test", **kw))


def media_bytes(url: str) -> bytes:
    """A file the app handed to the browser (AppTest keeps them in memory)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    file_id = url.rsplit("/", 1)[-1].split(".")[0]
    for obj in gc.get_objects():
        if isinstance(obj, MemoryMediaFileStorage) and file_id in obj._files_by_id:  # noqa: SLF001
            return obj._files_by_id[file_id].content  # noqa: SLF001
    raise AssertionError(f"media file {url} not found")


# ------------------------------------------------------------------------------ main board
def test_board_is_the_cli_ranking_with_cis_stamps_and_markers(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch)
    table = board_frame(at)
    expected = cli_rows(board_world)
    assert table["Entry"].tolist() == [r.entry for r in expected]      # same query as `mmtt leaderboard`
    assert table["Rank"].tolist() == [r.rank for r in expected]
    assert "secret" not in table["Entry"].tolist()                       # private entry stays off
    first = expected[0]
    assert table.loc[0, "IoU"] == fmt_ci(first.metrics["iou"], first.ci95["iou"])
    assert "(" in table.loc[0, "IoU"] and "–" in table.loc[0, "IoU"]    # the CI is shown with the value
    for col in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "Clue F1", "Precision",
                "Recall", "F1", "Team", "Date", "Scorer", "Protocol"):
        assert col in table.columns, col
    assert set(table["Scorer"]) == {f"v{METRIC_VERSION}"} and set(table["Protocol"]) == {"strict"}
    assert table.loc[table["Entry"] == "masker", "Kind"].item() == "★ baseline"
    assert table.loc[table["Entry"] == "talker", "IoU"].item() == "–"
    text = " ".join(c.value for c in at.caption)
    assert f"v{METRIC_VERSION}" in text and "strict" in text


def test_sort_filter_search_and_columns(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch)
    at.selectbox(key="board_rank").set_value("cider").run()
    table = board_frame(at)
    assert table["Entry"].tolist() == [r.entry for r in cli_rows(board_world, metric="cider")]
    assert table.loc[0, "Entry"] == "talker"
    at.selectbox(key="board_task").set_value("localization").run()
    assert "talker" not in board_frame(at)["Entry"].tolist()
    at.selectbox(key="board_task").set_value("interpretation").run()
    assert "masker" not in board_frame(at)["Entry"].tolist() and "talker" in board_frame(at)["Entry"].tolist()
    at.selectbox(key="board_task").set_value("both").run()
    assert set(board_frame(at)["Entry"]) == {"alpha", "beta", INJECT_NAME}
    at.text_input(key="board_search").set_value("ALP").run()
    assert board_frame(at)["Entry"].tolist() == ["alpha"]
    at.text_input(key="board_search").set_value("(1)").run()            # literal text, not a regex
    assert board_frame(at)["Entry"].tolist() == [INJECT_NAME]
    at.text_input(key="board_search").set_value("").run()
    at.multiselect(key="board_metrics").set_value(["cider", "iou"]).run()
    at.multiselect(key="board_columns").set_value(["Team"]).run()
    assert board_frame(at).columns.tolist() == ["Rank", "Entry", "Team", "CIDEr", "IoU"]
    at.toggle(key="board_ci").set_value(False).run()                    # plain numbers: sortable columns
    table = board_frame(at)
    assert pd.api.types.is_float_dtype(table["IoU"])
    row = next(r for r in cli_rows(board_world, metric="cider") if r.entry == table.loc[0, "Entry"])
    assert table.loc[0, "CIDEr"] == pytest.approx(row.metrics["cider"] * 100)


def test_breakdown_switches_the_numbers_and_reranks(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch)
    at.button_group(key="board_view").set_value("method").run()
    at.selectbox(key="board_group_method").set_value("gan-faceswap").run()
    at.toggle(key="board_ci").set_value(False).run()
    table = board_frame(at)
    with Board.open(board_world.url, upgrade=False) as board:
        details = {n: board.db.read(lambda s, n=n: entry_detail(s, n, "test")) for n in table["Entry"]}
    for _, row in table.iterrows():
        group = details[row["Entry"]]["breakdown"]["method"]["gan-faceswap"]["metrics"]
        if "iou" in group:
            assert row["IoU"] == pytest.approx(group["iou"] * 100)
    ious = [v for v in table["IoU"].tolist() if pd.notna(v)]
    assert ious == sorted(ious, reverse=True)                           # re-ranked on the group's numbers
    assert "method: gan-faceswap" in " ".join(m.value for m in at.markdown).replace("\\", "")


def test_csv_download_holds_the_shown_rows_and_columns(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch)
    at.text_input(key="board_search").set_value("a").run()             # alpha, beta, masker, talker
    at.multiselect(key="board_metrics").set_value(["iou", "cider"]).run()
    at.multiselect(key="board_columns").set_value(["Team", "Details"]).run()
    shown = board_frame(at)
    csv = pd.read_csv(io.BytesIO(media_bytes(at.get("download_button")[0].proto.url)))
    assert csv["Entry"].tolist() == shown["Entry"].tolist()
    assert csv.columns.tolist() == ["split", "images", "Rank", "Entry", "Team", "IoU", "IoU CI low", "IoU CI high",
                                    "CIDEr", "CIDEr CI low", "CIDEr CI high"]
    rows = {r.entry: r for r in cli_rows(board_world)}
    for _, r in csv.iterrows():
        if pd.notna(r["IoU"]):
            assert r["IoU"] == pytest.approx(rows[r["Entry"]].metrics["iou"] * 100, abs=1e-4)
            assert r["IoU CI low"] == pytest.approx(rows[r["Entry"]].ci95["iou"][0] * 100, abs=1e-4)


def test_hidden_split_board_has_aggregates_only(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch, split="hidden")
    assert set(board_frame(at)["Entry"]) == {"alpha", "beta"}
    assert at.button_group(key="board_view").disabled
    assert any("hidden truth" in m.value for m in at.markdown)


# ------------------------------------------------------------------------------ entry page
def test_entry_page_metrics_breakdowns_gallery_and_links(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch, "pages/entry.py", entry="alpha", split="test")
    assert at.title[0].value == "alpha"
    metrics = frame(at, "Metric", "Score ×100")
    with Board.open(board_world.url, upgrade=False) as board:
        d = board.db.read(lambda s: entry_detail(s, "alpha", "test"))
    iou = metrics[metrics["Metric"] == "IoU"].iloc[0]
    assert iou["Score ×100"] == pytest.approx(d["metrics"]["iou"] * 100)
    assert iou["95% CI low"] == pytest.approx(d["ci95"]["iou"][0] * 100)
    assert {"BLEU-4", "CIDEr", "ROUGE-L", "Clue F1"} <= set(metrics["Metric"])
    assert len(at.get("vega_lite_chart")) == 2                    # per method, per source
    images = at.get("image")
    assert len(images) >= 6 * 3 - 3                                     # image, truth overlay, prediction
    texts = " ".join(m.value for m in at.markdown)
    rec = board_world.records[0]
    assert rec["caption"].split()[0].strip(".,") in texts               # the truth explanation is shown


def test_entry_page_without_data_says_so(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch, "pages/entry.py", data=False, entry="beta", split="test")
    assert any("--data" in i.value for i in at.info)
    assert not at.get("image")


def test_hidden_split_entry_page_shows_no_breakdown_and_no_samples(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch, "pages/entry.py", entry="alpha", split="hidden")
    assert frame(at, "Metric", "Score ×100").shape[0] > 0          # aggregates are public
    assert any("hidden" in i.value for i in at.info)
    assert not at.get("image") and not at.get("vega_lite_chart")
    assert frame(at, "dimension", "group") is None


# ------------------------------------------------------------------------------- compare
def test_compare_shows_paired_verdicts_per_metric(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch, "pages/compare.py")
    at.multiselect(key="cmp_entries").set_value(["alpha", "talker", "beta"]).run()
    assert not at.exception
    side = at.dataframe[0].value
    assert side.columns.tolist() == ["Metric", "alpha", "talker", "beta"]
    details = frame(at, "Other", "Verdict")
    with Board.open(board_world.url, upgrade=False) as board:
        ref = board.db.read(lambda s: compare(s, "alpha", "beta", "test", n_boot=50, public=True))
    beta = details[details["Other"] == "beta"]
    for m, r in ref["metrics"].items():
        row = beta[beta["Metric"] == registry.label(m)].iloc[0]
        assert row["Difference"] == pytest.approx(r["diff"] * 100)
        assert row["p"] == pytest.approx(r["p_value"])
        expected = ("no significant difference" if not r["significant"] else
                    "reference better" if r["diff"] > 0 else "other better")
        assert row["Verdict"] == expected
    matrix = at.dataframe[1].value
    assert matrix.columns.tolist() == ["Metric", "talker", "beta"]
    text_labels = {registry.label(m) for m in registry.headline() if registry.metric(m).family != "mask"}
    assert set(details[details["Other"] == "talker"]["Metric"]) <= text_labels


# --------------------------------------------------------------------------------- plots
def test_plots_page_draws_its_charts(board_world, monkeypatch) -> None:
    at = run_app(board_world, monkeypatch, "pages/plots.py")
    assert len(at.get("vega_lite_chart")) == 3
    at = run_app(board_world, monkeypatch, "pages/plots.py", split="hidden")
    assert len(at.get("vega_lite_chart")) == 2                   # no per-method bars on hidden truth
    assert any("hidden" in i.value for i in at.info)


def test_region_breakdown_view_shows_each_entrys_region_numbers(board_world, monkeypatch) -> None:
    with Board.open(board_world.url, upgrade=False) as board:
        alpha = board.db.read(lambda s: entry_detail(s, "alpha", "test"))
    regions = sorted(alpha["breakdown"]["region"])
    assert regions, "the truth explanations name facial regions"
    at = run_app(board_world, monkeypatch)
    at.button_group(key="board_view").set_value("region").run()
    at.selectbox(key="board_group_region").set_value(regions[0]).run()
    at.toggle(key="board_ci").set_value(False).run()
    assert not at.exception
    table = board_frame(at)
    row = table[table["Entry"] == "alpha"].iloc[0]
    assert row["IoU"] == pytest.approx(alpha["breakdown"]["region"][regions[0]]["metrics"]["iou"] * 100)
    assert f"region: {regions[0]}" in " ".join(m.value for m in at.markdown).replace("\\", "")
