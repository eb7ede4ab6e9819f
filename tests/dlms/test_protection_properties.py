"""kms.dlms.protection, properties: against AES-GCM computed directly with pyca/cryptography,
and what unprotect does with payloads that were changed on the way.

The cipher handed to the module is the PycaGcm oracle of tests/dlms/protection_vectors.py; the
expected bytes are computed here with ``AESGCM`` itself, from the table of notes section 2.3,
so the module's IV, AAD and SC-mode logic are what is checked. A changed payload under
authentication must raise :class:`~kms.errors.InvalidTag` or :class:`~kms.errors.InputError` and
nothing else; under encryption only nothing can be checked, and unprotect must still return
bytes of the payload's length rather than fail in some other way.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.protection import TAG_LENGTH, protect, unprotect
from kms.dlms.security_control import MAX_INVOCATION_COUNTER, SecurityControl
from kms.errors import InputError, InvalidTag
from tests.dlms.protection_vectors import PycaGcm

#: Every SC byte that asks for some protection, in suites 0..2 (the pure layer carries the
#: compression and key-set bits without acting on them).
PROTECTING = [SecurityControl.from_byte(b) for b in range(256) if b & 0x0F <= 2 and b & 0x30]
AUTHENTICATED = [sc for sc in PROTECTING if sc.authentication]
ICS = st.integers(0, MAX_INVOCATION_COUNTER)
TITLES = st.binary(min_size=8, max_size=8)


def _key(label: str, size: int) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:size]


#: Two fixed key sets per suite (EK, AK), of the suite's key length: the keys' values play no
#: part in the logic under test, and drawing fresh ones costs most of a 10,000-example run.
_KEY_SETS = {
    suite: [(_key(f"ek-{suite}-{n}", size), _key(f"ak-{suite}-{n}", size)) for n in range(2)]
    for suite, size in ((0, 16), (1, 16), (2, 32))
}


def keyed(
    controls: list[SecurityControl],
) -> st.SearchStrategy[tuple[SecurityControl, bytes, bytes]]:
    """(SC, EK, AK) with keys of the suite's length."""
    return st.sampled_from([(sc, ek, ak) for sc in controls for ek, ak in _KEY_SETS[int(sc.suite)]])


def direct(ek: bytes, ak: bytes, sc: int, title: bytes, ic: int, apdu: bytes) -> bytes:
    """What follows SC || IC, by AESGCM (notes section 2.3)."""
    iv = title + ic.to_bytes(4, "big")
    aead = AESGCM(ek)
    if sc & 0x30 == 0x30:
        sealed = aead.encrypt(iv, apdu, bytes([sc]) + ak)
        return sealed[: len(apdu)] + sealed[len(apdu) : len(apdu) + TAG_LENGTH]
    if sc & 0x10:
        return apdu + aead.encrypt(iv, b"", bytes([sc]) + ak + apdu)[:TAG_LENGTH]
    return aead.encrypt(iv, apdu, b"")[: len(apdu)]


@given(keyed(PROTECTING), TITLES, ICS, st.binary(max_size=2000))
@settings(max_examples=1000, deadline=None)
def test_protect_is_aes_gcm_and_unprotect_inverts_it(
    keys: tuple[SecurityControl, bytes, bytes], title: bytes, ic: int, apdu: bytes
) -> None:
    sc, ek, ak = keys
    payload = protect(PycaGcm(ek), sc, title, ic, ak, apdu)
    assert payload == direct(ek, ak, sc.to_byte(), title, ic, apdu)
    expected_length = len(apdu) + (TAG_LENGTH if sc.authentication else 0)
    assert len(payload) == expected_length
    assert unprotect(PycaGcm(ek), sc, title, ic, ak, payload) == apdu


# --- changed payloads -------------------------------------------------------------------------


CHANGES = st.tuples(
    st.sampled_from(["flip", "truncate", "extend", "splice"]),
    st.integers(0, 1 << 16),  # where (modulo the payload's length)
    st.integers(1, 255),  # the XOR mask of a flip
    st.binary(min_size=1, max_size=8),  # what an extension or a splice adds
)


def change(payload: bytes, how: str, where: int, mask: int, extra: bytes) -> bytes:
    """One change on the way; the result always differs from ``payload``."""
    if how == "flip" and payload:
        at = where % len(payload)
        return payload[:at] + bytes([payload[at] ^ mask]) + payload[at + 1 :]
    if how == "truncate" and payload:
        return payload[: where % len(payload)]
    if how == "splice":
        at = where % (len(payload) + 1)
        return payload[:at] + extra + payload[at:]
    return payload + extra


@given(keyed(PROTECTING), TITLES, ICS, st.binary(max_size=48), CHANGES)
@settings(max_examples=10_000, deadline=None)
def test_a_changed_payload_raises_invalid_tag_or_input_error(
    keys: tuple[SecurityControl, bytes, bytes],
    title: bytes,
    ic: int,
    apdu: bytes,
    how: tuple[str, int, int, bytes],
) -> None:
    sc, ek, ak = keys
    payload = change(direct(ek, ak, sc.to_byte(), title, ic, apdu), *how)
    try:
        plain = unprotect(PycaGcm(ek), sc, title, ic, ak, payload)
    except InputError as exc:
        # Only a payload too short for the tag is malformed.
        assert sc.authentication
        assert len(payload) < TAG_LENGTH
        assert exc.field == "payload"
        return
    except InvalidTag:
        assert sc.authentication
        return
    # Accepted: only without authentication, where nothing is checked (notes section 2.3).
    assert not sc.authentication
    assert len(plain) == len(payload)
    assert plain != apdu


@given(
    keyed(AUTHENTICATED),
    TITLES,
    ICS,
    st.binary(max_size=48),
    st.sampled_from(["ic", "title", "ak", "sc"]),
)
@settings(max_examples=2000, deadline=None)
def test_another_context_does_not_verify(
    keys: tuple[SecurityControl, bytes, bytes], title: bytes, ic: int, apdu: bytes, what: str
) -> None:
    sc, ek, ak = keys
    payload = direct(ek, ak, sc.to_byte(), title, ic, apdu)
    if what == "ic":
        ic ^= 1
    elif what == "title":
        title = bytes([title[0] ^ 0x80]) + title[1:]
    elif what == "ak":
        ak = bytes([ak[0] ^ 0x01]) + ak[1:]
    else:  # the key-set bit: the same key, but SC is authenticated data
        sc = SecurityControl.from_byte(sc.to_byte() ^ 0x40)
    try:
        unprotect(PycaGcm(ek), sc, title, ic, ak, payload)
    except InvalidTag:
        return
    raise AssertionError(f"a payload verified after changing the {what}")


@given(
    st.integers(0, 255), st.binary(min_size=16, max_size=16), TITLES, ICS, st.binary(max_size=64)
)
@settings(max_examples=10_000, deadline=None)
def test_unprotect_of_any_bytes_raises_only_invalid_tag_or_input_error(
    sc_byte: int, key: bytes, title: bytes, ic: int, payload: bytes
) -> None:
    try:
        sc = SecurityControl.from_byte(sc_byte)
        plain = unprotect(PycaGcm(key), sc, title, ic, key, payload)
    except (InputError, InvalidTag):
        return
    # A random 96-bit tag verifies with probability 2**-96: only encryption-only content passes.
    assert sc.encryption
    assert not sc.authentication
    assert len(plain) == len(payload)
