"""The capped doubling delays of loops waiting for a dependency (jobs_common.backoff)."""

from __future__ import annotations

from jobs_common.backoff import Backoff


def test_doubles_from_the_first_delay_up_to_the_cap_and_starts_again_after_a_reset():
    backoff = Backoff(first=0.1, cap=1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_a_long_outage_never_overflows():
    backoff = Backoff(first=0.2, cap=5.0, failures=10_000)
    assert backoff.next_delay() == 5.0
