"""The board under hostile content: a page that cannot show user content says so in one plain
sentence — no traceback, no server path — and the rest of the board keeps working."""

from __future__ import annotations

from leaderboard_app import gallery
from tests.test_board_app import run_app
from tests.test_board_helpers import board_world  # noqa: F401

SECRET_PATH = "/srv/mmtt/private/objects/ab/cdef"


def _page_text(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def test_lone_surrogate_caption_in_kept_files_is_shown_not_a_traceback(board_world, monkeypatch) -> None:
    """A caption kept before captions were checked for invalid Unicode (a lone surrogate)."""
    real = gallery.kept_predictions

    def with_surrogate(files_root, tree_hash, pred_mask_paths):
        kept = dict(real(files_root, tree_hash, pred_mask_paths))
        first = board_world.records[0]["image_id"]
        kept[first] = gallery.KeptPrediction(caption="the nose \ud800 is smeared", mask_digest=kept[first].mask_digest)
        return kept

    monkeypatch.setattr(gallery, "kept_predictions", with_surrogate)
    at = run_app(board_world, monkeypatch, "pages/entry.py", entry="alpha", split="test")  # asserts no exception
    text = _page_text(at)
    assert "the nose \ufffd" in text and "Traceback" not in text
    assert not at.error


def test_any_page_failure_is_one_plain_message_without_paths(board_world, monkeypatch) -> None:
    """The app's boundary (around `page.run()`): the default page here, since AppTest's
    `switch_page` runs a page file without the app script around it."""
    from leaderboard_app import queries

    def broken(*args, **kwargs):
        raise RuntimeError(f"cannot read {SECRET_PATH}")

    monkeypatch.setattr(queries, "splits", broken)
    at = run_app(board_world, monkeypatch)   # asserts that no exception reached the page
    assert len(at.error) == 1 and "could not be shown" in at.error[0].value
    text = _page_text(at)
    assert SECRET_PATH not in text and "RuntimeError" not in text and "Traceback" not in text


def test_served_board_hides_error_details() -> None:
    from leaderboard_app.commands import streamlit_command
    from leaderboard_app.config import AppConfig

    config = AppConfig(db="sqlite:///x.sqlite", data=None, files=None, max_upload_mb=10, n_boot=10, api=None,
                       title="t")
    cmd = streamlit_command(config, port=8501, address="127.0.0.1", cap_mb=10)
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"
