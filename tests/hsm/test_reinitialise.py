"""Several Hsm objects in one process, when one of them must re-initialise the module.

A token created after the library loaded is only found after C_Initialize again, which voids
every handle of every other Hsm on that module; SoftHSM then hands the same handle numbers out
anew. The adapter must notice (its epoch) and reopen, never use a stale handle that now names an
object of another token.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from kms.config import Config, Pin
from kms.errors import SessionLost
from kms.hsm import Hsm, KeyUse, TokenKey


@pytest.fixture
def second_token(kms_config: Config) -> Iterator[Config]:
    """Another token, initialised after the library loaded, and a config naming it."""
    label = f"kms-second-{uuid.uuid4().hex[:8]}"
    pin = secrets.token_hex(8)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", pin, "--so-pin", secrets.token_hex(8)],
        check=True, capture_output=True, env=os.environ,
    )  # fmt: skip
    try:
        yield dataclasses.replace(kms_config, token_label=label, user_pin=Pin(pin))
    finally:
        subprocess.run(
            ["softhsm2-util", "--delete-token", "--token", label],
            capture_output=True, env=os.environ, check=False,
        )  # fmt: skip


def test_an_hsm_survives_another_re_initialising_the_module(hsm: Hsm, second_token: Config) -> None:
    hsm.create_binding_key("kms-binding-v1", b"first")
    hsm.create_storage_key("kms-storage-v1", b"first")
    before = hsm.mac(TokenKey("kms-binding-v1"), b"data")
    old_session_key = hsm.generate_key(KeyUse.EK, 16)

    other = Hsm(second_token)  # finds its token only after C_Initialize again
    try:
        other.create_binding_key("kms-binding-v1", b"second")
        assert other.mac(TokenKey("kms-binding-v1"), b"data") != before

        # The first Hsm reopens on its own token: the same label names its own key again.
        assert hsm.mac(TokenKey("kms-binding-v1"), b"data") == before
        with pytest.raises(SessionLost):
            hsm.wrap_key(TokenKey("kms-storage-v1"), old_session_key)
        hsm.destroy(old_session_key)  # a key that died with its session: nothing to do
    finally:
        other.close()
    assert hsm.mac(TokenKey("kms-binding-v1"), b"data") == before
