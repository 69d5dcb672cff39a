from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from jobs_common.errors import InvalidArgumentError
from jobs_common.paging import (
    ITEM_OVERHEAD_BYTES,
    PagePosition,
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    items_within_budget,
)


def test_token_round_trips_for_the_same_filters():
    position = PagePosition(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    fingerprint = filter_fingerprint(state="ACTIVE", labels={"a": "b"})
    assert decode_page_token(encode_page_token(position, fingerprint), fingerprint) == position
    assert decode_page_token("", fingerprint) is None


@pytest.mark.parametrize("token", ["garbage!", "e30", "eyJ0IjogMX0"])
def test_malformed_tokens_are_invalid_arguments(token):
    with pytest.raises(InvalidArgumentError) as error:
        decode_page_token(token, filter_fingerprint())
    assert error.value.violations[0].field == "page_token"


def test_token_for_other_filters_is_refused():
    position = PagePosition(datetime.now(UTC), uuid.uuid4())
    token = encode_page_token(position, filter_fingerprint(queue="a"))
    with pytest.raises(InvalidArgumentError):
        decode_page_token(token, filter_fingerprint(queue="b"))


def test_a_page_takes_items_while_they_fit_the_budget_and_at_least_one():
    overhead = ITEM_OVERHEAD_BYTES
    assert items_within_budget([], budget=1000) == 0
    assert items_within_budget([5000, 1], budget=1000) == 1  # one item larger than the budget
    assert items_within_budget([400 - overhead] * 5, budget=1000) == 2
    assert items_within_budget([500 - overhead] * 5, budget=1000) == 2  # exactly the budget
    assert items_within_budget([10] * 3, budget=10_000) == 3
