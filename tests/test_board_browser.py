"""The board in a real browser: `streamlit run leaderboard_app/app.py -- --db URL --data DIR` on a
free port, driven by Playwright with the system Chromium — sort, filter, search, open an entry,
screenshots kept under `artifacts/board/`. Skips without `/usr/bin/chromium`, unless
`MMTT_REQUIRE_BROWSER=1` (CI), where a missing browser is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from leaderboard_app.commands import free_port, wait_healthy
from leaderboard_app.present import entry_link
from tests.test_board_helpers import INJECT_NAME, BoardWorld, board_world  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "board"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-extensions", "--no-first-run"]

pytestmark = pytest.mark.browser


def _need_browser():
    required = os.environ.get("MMTT_REQUIRE_BROWSER") == "1"
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} not found (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install playwright; never `playwright install`)"
    if missing:
        if required:
            pytest.fail(f"MMTT_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)


@contextmanager
def streamlit_board(world: BoardWorld, log: Path, *extra: str) -> Iterator[str]:
    """A real Streamlit server of the board over `world` on a free localhost port (the plain
    `streamlit run` path), its output in `log`; yields its URL, stops it on leaving."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "leaderboard_app" / "app.py"),
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
           "--", "--db", world.url, "--data", str(world.data), "--n-boot", "50", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMTT_BOARD_")}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url, proc, timeout=90):
            pytest.fail(f"server did not answer /_stcore/health: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(board_world: BoardWorld, tmp_path_factory):
    _need_browser()
    with streamlit_board(board_world, tmp_path_factory.mktemp("board-server") / "server.log") as url:
        yield url


def _entries(page) -> list[str]:
    """Entry names in display order, from the grid's hidden accessible cells (column 1)."""
    cells = page.locator("[data-testid^='glide-cell-1-']")
    return [c for c in cells.all_inner_texts()]


def _choose(page, label: str, option: str) -> None:
    box = page.locator("[data-testid=stSelectbox]").filter(has_text=label).first
    box.locator("input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _wait_entries(page, predicate, timeout_ms: int = 20000) -> list[str]:
    deadline = timeout_ms / 250
    names: list[str] = []
    for _ in range(int(deadline)):
        names = _entries(page)
        if names and predicate(names):
            return names
        page.wait_for_timeout(250)
    raise AssertionError(f"board never showed the expected rows; last seen {names}")


def _open_details(page, row: int):
    """Click the Details link of a row (a canvas cell: by position; the first columns have fixed
    widths) and return the tab it opens."""
    rank_px, entry_px, details_px = 56, 240, 72        # leaderboard_app/pages/board.py: RANK_PX, ...
    box = page.locator("[data-testid=stDataFrame]").bounding_box()
    x = box["x"] + rank_px + entry_px + details_px / 2
    y = box["y"] + 35 * (row + 1) + 17
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    with page.context.expect_page(timeout=20000) as opened:
        page.mouse.click(x, y)
    new = opened.value
    new.set_viewport_size({"width": 1440, "height": 1600})
    return new


def test_board_in_a_real_browser(server: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})   # Streamlit scrolls inside
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server + "/", wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('MMTT Leaderboard')", timeout=60000)
            page.wait_for_selector("[data-testid^='glide-cell-1-']", state="attached", timeout=60000)
            names = _wait_entries(page, lambda n: "alpha" in n)
            assert INJECT_NAME in names and "secret" not in names
            assert page.locator("b", has_text="x").count() == 0            # the name is text, not markup
            page.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)

            _choose(page, "Rank by", "CIDEr")                                # sort
            assert _wait_entries(page, lambda n: n[0] == "talker")[0] == "talker"
            _choose(page, "Task", "localization")                            # filter
            names = _wait_entries(page, lambda n: "talker" not in n and "masker" in n)
            assert "alpha" in names
            search = page.get_by_test_id("stTextInputField").and_(page.get_by_label("Search"))
            search.fill("alp")                                               # search
            search.press("Enter")
            assert _wait_entries(page, lambda n: n == ["alpha"]) == ["alpha"]
            page.screenshot(path=str(ARTIFACTS / "board-filtered.png"), full_page=True)

            link = page.locator("[data-testid='glide-cell-2-0']").inner_text()   # the Details cell
            assert link == entry_link("alpha", "test", "strict")
            entry = _open_details(page, row=0)                                   # click it: a new tab
            entry.wait_for_selector("h1:has-text('alpha')", timeout=60000)
            assert "entry=alpha" in entry.url
            entry.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page = entry   # (the board's tab stays open: closing it would close this context)
            page.wait_for_selector("[data-testid=stImage] img", timeout=60000)   # the sample gallery
            page.wait_for_timeout(1500)                                      # let the charts draw
            assert page.locator("[data-testid=stImage] img").count() >= 3
            page.screenshot(path=str(ARTIFACTS / "entry.png"), full_page=True)
            page.locator("h3:has-text('Samples')").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "entry-samples.png"))

            page.goto(server + "/" + entry_link(INJECT_NAME, "test", "strict"), wait_until="domcontentloaded")
            page.wait_for_selector("h1", timeout=60000)
            page.wait_for_timeout(1000)
            assert page.locator("h1").first.inner_text().strip() == INJECT_NAME
            assert page.locator("main b", has_text="y").count() == 0
            assert page.locator("main img[src='x']").count() == 0
            assert page.locator("a[href^='javascript']").count() == 0
            page.screenshot(path=str(ARTIFACTS / "entry-injection.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [], f"a script ran: {dialogs}"
    print(f"\nboard screenshots: {ARTIFACTS}/board.png, board-filtered.png, entry.png, entry-samples.png, "
              "entry-injection.png")
