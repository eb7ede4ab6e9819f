"""A second SoftHSM2 token in the test sandbox, for tests that move a key between two tokens (the
CA key backup restored elsewhere). The ``token`` fixture makes one token per test; this makes
another beside it, initialised after the library loaded (the adapter re-initialises the module to
find it; tests/hsm/test_reinitialise.py)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kms.config import Config, Pin


@dataclass(frozen=True)
class SpareToken:
    """The configuration of a KMS on the spare token (same database), and its PINs."""

    config: Config
    label: str
    user_pin: str
    so_pin: str


@contextmanager
def spare_token(config: Config) -> Iterator[SpareToken]:
    """A fresh token with random PINs, in the same sandbox as ``config``'s; deleted afterwards."""
    label = f"kms-spare-{uuid.uuid4().hex[:8]}"
    user_pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", user_pin, "--so-pin", so_pin, "--module", config.pkcs11_module],
        check=True, capture_output=True, env=os.environ, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    try:
        yield SpareToken(
            dataclasses.replace(config, token_label=label, user_pin=Pin(user_pin)),
            label,
            user_pin,
            so_pin,
        )
    finally:
        subprocess.run(
            ["softhsm2-util", "--delete-token", "--token", label],
            capture_output=True, env=os.environ, check=False, timeout=60,
        )  # fmt: skip
