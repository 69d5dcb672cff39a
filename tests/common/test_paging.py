from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from jobs_common.errors import InvalidArgumentError
from jobs_common.paging import PagePosition, decode_page_token, encode_page_token, filter_fingerprint


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
