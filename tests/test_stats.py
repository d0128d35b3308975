import math

import numpy as np
import pytest

from bench.measure.stats import Stats


def test_known_values():
    s = Stats.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.count, s.mean, s.min, s.max, s.p50) == (5, 3.0, 1.0, 5.0, 3.0)
    assert s.std == pytest.approx(math.sqrt(2.5))  # sample std, ddof=1
    assert s.p90 == pytest.approx(4.6)  # linear interpolation between 4 and 5
    assert s.p99 == pytest.approx(4.96)
    assert s.samples == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert s.cv == pytest.approx(math.sqrt(2.5) / 3)


def test_percentiles_by_hand_on_a_shuffled_sample():
    # 1..21 in shuffled order: the q-th percentile (linear interpolation) sits at rank q/100 * 20 of the sorted
    # values, i.e. the value 1 + q/5: p50 = 11, p90 = 19, p95 = 20, p99 = 20.8.
    x = [
        7.0,
        1.0,
        21.0,
        13.0,
        4.0,
        18.0,
        10.0,
        2.0,
        16.0,
        20.0,
        5.0,
        12.0,
        9.0,
        19.0,
        3.0,
        15.0,
        8.0,
        14.0,
        6.0,
        17.0,
        11.0,
    ]
    s = Stats.of(x)
    assert (s.min, s.max, s.mean) == (1.0, 21.0, 11.0)
    assert (s.p50, s.p90, s.p95) == (pytest.approx(11.0), pytest.approx(19.0), pytest.approx(20.0))
    assert s.p99 == pytest.approx(20.8)
    assert s.samples == x  # kept in call order, not sorted


def test_percentiles_ordered():
    x = np.random.default_rng(0).lognormal(size=257)
    s = Stats.of(x)
    assert s.min <= s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max


def test_single_sample_and_empty():
    s = Stats.of([0.5])
    assert s.std == 0.0 and s.p99 == 0.5
    with pytest.raises(ValueError):
        Stats.of([])


def test_unresolved_percentiles_follow_sample_count():
    assert Stats.of(range(1, 10)).unresolved_percentiles() == ["p90", "p95", "p99"]
    assert Stats.of(range(1, 21)).unresolved_percentiles() == ["p99"]
    assert Stats.of(range(1, 101)).unresolved_percentiles() == []


def test_keep_samples_off():
    assert Stats.of([1.0, 2.0], keep_samples=False).samples == []


def test_text_form():
    assert str(Stats.of([0.010, 0.012, 0.014])) == "p50 12.00 ms, p99 13.96 ms, mean 12.00 ms ± 16.7% over 3 samples"
    assert str(Stats.of([2.0, 2.0])) == "p50 2.000 s, p99 2.000 s, mean 2.000 s ± 0.0% over 2 samples"
    assert str(Stats.of([5e-6])) == "p50 5.0 us, p99 5.0 us, mean 5.0 us ± 0.0% over 1 samples"
