"""The headline ``nas status`` prints and the report shows: "beats" only beyond the combined standard error."""
from __future__ import annotations

import math

import pytest

from nas.study.summary import TrialRow, headline, standard_error


def row(number: int, val: float, params: int, test: float | None = None, n: int | None = 800,
        zoo: str | None = None) -> TrialRow:
    return TrialRow(number, "complete", val, test, params, 0, 18, "", "plain", None, zoo, n)


DENSE = [row(100, 0.588, 15_210, test=0.601), row(101, 0.55, 3_000, test=0.54)]
SE = math.hypot(standard_error(0.611, 800), standard_error(0.588, 800))  # about 2.4 points on 800 samples


def test_standard_error_is_the_binomial_one():
    assert standard_error(0.5, 100) == pytest.approx(0.05)
    assert standard_error(0.9, 0) == 0.0  # size unknown: no error bar


def test_ahead_by_less_than_the_combined_error_only_matches():
    """Issue 12's example: 61.1% against 58.8% on 800 validation samples is within one standard error."""
    assert 0.611 - 0.588 < SE
    h = headline([row(38, 0.611, 7_018, test=0.597)], DENSE)
    assert h.verdict == "matches" and h.smallest_beating.number == 38 and h.best_dense.number == 100
    assert "matches the best dense baseline (58.8% ± 1.7 with 15,210 params)" in h.text
    assert "test 59.7% vs 60.1%" in h.text and "1/2.2 of its parameters (7,018)" in h.text


def test_ahead_by_more_than_the_combined_error_beats():
    h = headline([row(7, 0.70, 20_000), row(9, 0.65, 5_000), row(8, 0.60, 4_000)], DENSE)
    assert h.verdict == "beats" and h.smallest_beating.number == 9  # the smallest that beats, not a bigger one
    assert h.size_ratio == pytest.approx(15_210 / 5_000)


def test_far_behind_is_no_claim_and_without_sizes_the_old_rule_holds():
    assert headline([row(1, 0.40, 1_000)], DENSE).verdict is None
    assert headline([row(1, 0.60, 1_000, n=None)], [row(2, 0.59, 2_000, n=None)]).verdict == "beats"
    assert headline([row(1, 0.60, 1_000)], []).text.startswith("No dense baseline")


def test_a_warm_start_named_by_the_headline_is_called_one():
    """The front holds zoo warm starts too; the headline does not pass a hand-designed model off as a find."""
    h = headline([row(0, 0.70, 5_000, zoo="perm-cnn"), row(9, 0.60, 4_000)], DENSE)
    assert h.smallest_beating.number == 0 and h.text.startswith("Trial 0 (perm-cnn, a warm start; 70.0% ± 1.6) beats")
    assert headline([row(9, 0.70, 5_000)], DENSE).text.startswith("Trial 9 (70.0% ± 1.6) beats")
