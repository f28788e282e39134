"""reports/docs_realtime.py: the generated part of docs/realtime.md is replaced, the rest kept.
(The page's table from real runs: tests/test_streaming.py.)"""
from asteroid_frugal.reports.docs_realtime import GENERATED_MARK, splice

from conftest import REPO


def test_splice_keeps_the_hand_written_part_and_replaces_the_generated_one():
    page = f"# Real time\n\nHand-written text.\n\n{GENERATED_MARK}\n\n## Measured\n\nold table\n"
    out = splice(page, "## Measured\n\nnew table\n")
    assert out == f"# Real time\n\nHand-written text.\n\n{GENERATED_MARK}\n\n## Measured\n\nnew table\n"
    assert splice(out, "## Measured\n\nnew table\n") == out
    assert splice("", "table\n") == f"{GENERATED_MARK}\n\ntable\n"


def test_the_published_page_has_the_mark():
    assert GENERATED_MARK in (REPO / "docs" / "realtime.md").read_text()
