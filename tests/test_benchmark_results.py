"""benchmarks/_results.py: a benchmark rewrites its own RESULTS.md section and leaves every other one as it was."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _results import write_section  # noqa: E402

BEFORE = "# Benchmarks\n\n## Layers\n\nold layers\n\n## Search\n\nold search\n- command: `x`\n"


def test_a_section_is_replaced_in_place_and_the_others_stay(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(BEFORE)
    write_section("## Layers\n\nnew layers\n", path)
    assert path.read_text() == "# Benchmarks\n\n## Layers\n\nnew layers\n\n## Search\n\nold search\n- command: `x`\n"
    write_section("## Search\n\nnew search", path)
    assert path.read_text() == "# Benchmarks\n\n## Layers\n\nnew layers\n\n## Search\n\nnew search\n"


def test_a_new_section_is_appended_and_a_new_file_gets_a_title(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("## Backends\n\nratios", path)
    assert path.read_text() == "# Benchmarks\n\n## Backends\n\nratios\n"
    write_section("## Scale\n\nmore", path)
    assert path.read_text().endswith("## Backends\n\nratios\n\n## Scale\n\nmore\n")


def test_a_section_without_its_heading_is_refused(tmp_path):
    with pytest.raises(ValueError, match="## Title"):
        write_section("no heading", tmp_path / "RESULTS.md")


def test_a_body_line_that_would_read_as_a_heading_is_refused(tmp_path):
    with pytest.raises(ValueError, match="next section"):
        write_section("## Picture\n\n```\n## ## ascii art\n```", tmp_path / "RESULTS.md")
