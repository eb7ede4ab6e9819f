"""Fixtures for kms.pki: one demo PKI per session (root P-384 -> issuing CAs -> meters).

The signer is pyca-backed (tests/pki/support.py), standing in for a PKCS#11 token key.
"""

from __future__ import annotations

import pytest

from tests.pki.support import Pki, make_pki


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()
