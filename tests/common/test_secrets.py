"""Sealing at rest: AES-GCM under the first of SECRETS_KEYS, opened by any listed key, and only
where it was sealed (the job it belongs to)."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobs_common.secrets import SealedSecrets, SecretBox, SecretsError, job_secrets_binding, parse_secret_keys

SECRETS = SealedSecrets({"Authorization": "Bearer tok-123"}, ("whsec_abc",))
HERE = job_secrets_binding(uuid.uuid4())


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def test_sealed_values_open_and_show_nothing_in_clear():
    box = SecretBox(parse_secret_keys(_key("k1")))
    sealed = box.seal(SECRETS, HERE)
    assert sealed is not None
    assert sealed.startswith("v2:k1:")
    assert "tok-123" not in sealed
    assert "whsec_abc" not in sealed
    assert box.open(sealed, HERE) == SECRETS
    assert box.seal(SealedSecrets(), HERE) is None
    assert box.open(None, HERE) == SealedSecrets()
    assert box.seal(SECRETS, HERE) != sealed  # a fresh nonce every time


def test_rotation_new_key_first_keeps_old_values_readable():
    old, new = _key("old"), _key("new")
    sealed_before = SecretBox(parse_secret_keys(old)).seal(SECRETS, HERE)
    rotated = SecretBox(parse_secret_keys(f"{new},{old}"))
    assert rotated.open(sealed_before, HERE) == SECRETS
    assert rotated.needs_resealing(sealed_before)
    resealed = rotated.seal(SECRETS, HERE)
    assert resealed is not None
    assert resealed.startswith("v2:new:")
    assert not rotated.needs_resealing(resealed)
    with pytest.raises(SecretsError, match="sealed with key 'old', which SECRETS_KEYS does not list"):
        SecretBox(parse_secret_keys(new)).open(sealed_before, HERE)


def test_a_wrong_key_under_the_same_id_or_a_damaged_value_fails_clearly():
    sealed = SecretBox(parse_secret_keys(_key("k1"))).seal(SECRETS, HERE)
    assert sealed is not None
    with pytest.raises(SecretsError, match="does not open this value"):
        SecretBox(parse_secret_keys(_key("k1"))).open(sealed, HERE)


def test_without_keys_values_are_marked_as_stored_in_clear():
    box = SecretBox()
    sealed = box.seal(SECRETS, HERE)
    assert sealed is not None
    assert sealed.startswith("plain:")
    assert box.open(sealed, HERE) == SECRETS
    assert not box.needs_resealing(sealed)
    assert SecretBox(parse_secret_keys(_key("k1"))).needs_resealing(sealed)


def test_a_value_sealed_for_one_job_does_not_open_for_another():
    box = SecretBox(parse_secret_keys(_key("k1")))
    sealed = box.seal(SECRETS, job_secrets_binding(uuid.uuid4()))
    with pytest.raises(SecretsError, match="sealed for another job"):
        box.open(sealed, job_secrets_binding(uuid.uuid4()))
    # Nor does renaming the scheme to v1 (bound to the key id only) open it.
    assert sealed is not None
    with pytest.raises(SecretsError, match="does not open this value"):
        box.open("v1:" + sealed.removeprefix("v2:"), HERE)


def test_v1_values_written_before_the_binding_still_open_and_need_resealing():
    [(key_id, key)] = parse_secret_keys(_key("k1"))
    nonce = os.urandom(12)
    plaintext = b'{"headers": {"Authorization": "Bearer tok-123"}, "signing_secrets": ["whsec_abc"]}'
    v1 = f"v1:{key_id}:{base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext, key_id.encode())).decode()}"
    box = SecretBox(((key_id, key),))
    assert box.open(v1, HERE) == SECRETS
    assert box.needs_resealing(v1)
    assert not box.needs_resealing(box.seal(SECRETS, HERE))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nocolon", "entry 1 must be id:base64-key"),
        ("k1:!!!", "key 'k1' is not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "key 'k1' must be 32 bytes"),
        (_key("k1") + "," + _key("k1"), "names key 'k1' twice"),
    ],
)
def test_bad_key_settings_name_the_entry_never_the_key(text: str, message: str):
    with pytest.raises(SecretsError) as error:
        parse_secret_keys(text)
    assert message in str(error.value)
    key_material = text.partition(":")[2]
    assert not key_material or key_material not in str(error.value)
