"""Sealing at rest: AES-GCM under the first of SECRETS_KEYS, opened by any listed key."""

from __future__ import annotations

import base64
import os

import pytest

from jobs_common.secrets import SealedSecrets, SecretBox, SecretsError, parse_secret_keys

SECRETS = SealedSecrets({"Authorization": "Bearer tok-123"}, ("whsec_abc",))


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def test_sealed_values_open_and_show_nothing_in_clear():
    box = SecretBox(parse_secret_keys(_key("k1")))
    sealed = box.seal(SECRETS)
    assert sealed is not None
    assert sealed.startswith("v1:k1:")
    assert "tok-123" not in sealed
    assert "whsec_abc" not in sealed
    assert box.open(sealed) == SECRETS
    assert box.seal(SealedSecrets()) is None
    assert box.open(None) == SealedSecrets()
    assert box.seal(SECRETS) != sealed  # a fresh nonce every time


def test_rotation_new_key_first_keeps_old_values_readable():
    old, new = _key("old"), _key("new")
    sealed_before = SecretBox(parse_secret_keys(old)).seal(SECRETS)
    rotated = SecretBox(parse_secret_keys(f"{new},{old}"))
    assert rotated.open(sealed_before) == SECRETS
    assert rotated.needs_resealing(sealed_before)
    resealed = rotated.seal(SECRETS)
    assert resealed is not None
    assert resealed.startswith("v1:new:")
    assert not rotated.needs_resealing(resealed)
    with pytest.raises(SecretsError, match="sealed with key 'old', which SECRETS_KEYS does not list"):
        SecretBox(parse_secret_keys(new)).open(sealed_before)


def test_a_wrong_key_under_the_same_id_or_a_damaged_value_fails_clearly():
    sealed = SecretBox(parse_secret_keys(_key("k1"))).seal(SECRETS)
    assert sealed is not None
    with pytest.raises(SecretsError, match="does not open this value"):
        SecretBox(parse_secret_keys(_key("k1"))).open(sealed)


def test_without_keys_values_are_marked_as_stored_in_clear():
    box = SecretBox()
    sealed = box.seal(SECRETS)
    assert sealed is not None
    assert sealed.startswith("plain:")
    assert box.open(sealed) == SECRETS
    assert not box.needs_resealing(sealed)
    assert SecretBox(parse_secret_keys(_key("k1"))).needs_resealing(sealed)


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
