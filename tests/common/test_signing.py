"""Our Standard Webhooks signatures, verified by the reference library (PyPI standardwebhooks)."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from jobs_common.signing import generate_signing_secret, signature_headers, signing_secret_problem

BODY = b'{"order": 42, "note": "caf\\u00e9"}'


def test_the_reference_library_verifies_our_signature_and_rejects_any_change():
    secret = generate_signing_secret()
    now = int(time.time())
    headers = signature_headers((secret,), "0d7a5f3e-exec", now, BODY)
    assert headers["webhook-id"] == "0d7a5f3e-exec"
    assert headers["webhook-timestamp"] == str(now)
    Webhook(secret).verify(BODY, headers, json_parse=False)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"42", b"43"), headers, json_parse=False)  # one byte changed
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_signing_secret()).verify(BODY, headers, json_parse=False)  # another secret
    stale = signature_headers((secret,), "0d7a5f3e-exec", now - 600, BODY)  # the library allows 5 min
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, stale, json_parse=False)


def test_during_a_rotation_either_secret_verifies():
    new, old = generate_signing_secret(), generate_signing_secret()
    headers = signature_headers((new, old), "exec-2", int(time.time()), b"")
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (new, old):
        Webhook(secret).verify(b"", headers, json_parse=False)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "must start with whsec_"),
        ("whsec_not base64!", "must be whsec_ followed by base64"),
        ("whsec_c2hvcnQ=", "at least 24 random bytes (it holds 5)"),
    ],
)
def test_bad_secrets_are_described_without_being_quoted(secret: str, problem: str):
    described = signing_secret_problem(secret)
    assert described is not None
    assert problem in described
    assert secret not in described
    assert signing_secret_problem(generate_signing_secret()) is None
