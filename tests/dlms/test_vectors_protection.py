"""kms.dlms.protection against every ciphering vector of tests/vectors (Green Book 8.1, 8.3,
dlms-cosem 8.5, the self-generated suite 1 and 2 cases), with pyca/cryptography as the cipher;
the same files run through the token in tests/hsm/test_vectors_token.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from kms.dlms.ciphered_apdu import (
    GENERAL_GLO_CIPHERING,
    CipheredApdu,
    GeneralCiphering,
    parse_ciphered_apdu,
    parse_general_ciphering,
)
from kms.dlms.protection import protect, unprotect
from kms.dlms.security_control import SecurityControl
from kms.errors import InvalidTag
from tests.dlms.protection_vectors import CipheringVector, PycaGcm, ciphering_vectors
from tests.utils import VECTORS_DIR

VECTORS = ciphering_vectors()
GOOD = [v for v in VECTORS if not v.fail]
BAD = [v for v in VECTORS if v.fail]


def envelope(vector: CipheringVector) -> tuple[SecurityControl, int, bytes]:
    """SC, IC and payload of a vector's ciphered APDU, by the codecs."""
    if vector.ciphered[0] == GENERAL_GLO_CIPHERING:
        general = parse_general_ciphering(vector.ciphered)
        return general.security_control, general.invocation_counter, general.payload
    apdu = parse_ciphered_apdu(vector.ciphered)
    return apdu.security_control, apdu.invocation_counter, apdu.payload


def rebuild(vector: CipheringVector, payload: bytes) -> bytes:
    sc = SecurityControl.from_byte(vector.security_control)
    if vector.ciphered[0] == GENERAL_GLO_CIPHERING:
        return GeneralCiphering(
            GENERAL_GLO_CIPHERING, vector.system_title, sc, vector.invocation_counter, payload
        ).to_bytes()
    return CipheredApdu(vector.ciphered[0], sc, vector.invocation_counter, payload).to_bytes()


def test_the_files_hold_what_the_issue_lists() -> None:
    sources = {v.source for v in VECTORS}
    assert len(sources) == 4
    assert {v.security_control for v in GOOD} >= {0x10, 0x20, 0x30, 0x11, 0x21, 0x31, 0x32}
    assert len(BAD) >= 7


@pytest.mark.parametrize("vector", GOOD, ids=lambda v: v.id)
def test_protect_gives_the_vector(vector: CipheringVector) -> None:
    sc = SecurityControl.from_byte(vector.security_control)
    payload = protect(
        PycaGcm(vector.ek), sc, vector.system_title, vector.invocation_counter, vector.ak,
        vector.apdu,
    )  # fmt: skip
    assert rebuild(vector, payload) == vector.ciphered


@pytest.mark.parametrize("vector", GOOD, ids=lambda v: v.id)
def test_unprotect_gives_the_apdu(vector: CipheringVector) -> None:
    sc, ic, payload = envelope(vector)
    assert (sc.to_byte(), ic) == (vector.security_control, vector.invocation_counter)
    plain = unprotect(PycaGcm(vector.ek), sc, vector.system_title, ic, vector.ak, payload)
    assert plain == vector.apdu


@pytest.mark.parametrize("vector", BAD, ids=lambda v: v.id)
def test_failure_cases_raise_invalid_tag(vector: CipheringVector) -> None:
    sc, ic, payload = envelope(vector)
    with pytest.raises(InvalidTag):
        unprotect(PycaGcm(vector.ek), sc, vector.system_title, ic, vector.ak, payload)


def _gurux_verifier() -> object:
    path = VECTORS_DIR / "custom" / "gcm-suites-1-2" / "verify.py"
    spec = importlib.util.spec_from_file_location("gcm_suites_verify", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("vector", [v for v in GOOD if "custom" in v.source], ids=lambda v: v.id)
def test_custom_vectors_agree_with_gurux(vector: CipheringVector) -> None:
    verifier = _gurux_verifier()
    case = {
        "sc": f"{vector.security_control:02x}",
        "system_title": vector.system_title.hex(),
        "ek": vector.ek.hex(),
        "ak": vector.ak.hex(),
        "ic": f"{vector.invocation_counter:08x}",
        "apdu": vector.apdu.hex(),
    }
    assert verifier.gurux_cipher(case) == vector.ciphered  # type: ignore[attr-defined]


def test_notes_section_8_6_values_are_in_the_custom_file() -> None:
    by_sc = {v.security_control: v.ciphered for v in GOOD if "custom" in v.source}
    assert by_sc[0x32] == bytes.fromhex(
        "C81E3201234567E82B2AD3EE8C12A6FB27038F08442193498C6A53DE55EEB9D2"
    )
    assert by_sc[0x31] == bytes.fromhex(
        "C81E3101234567411312FF935A47566827C467BCE8691C99484B00B2449055B5"
    )
    assert by_sc[0x12][-12:] == bytes.fromhex("B2D2B6A0A8DD79BA67B3C7EE")


def test_no_protection_is_refused_both_ways() -> None:
    from kms.errors import InputError

    sc = SecurityControl.from_byte(0x00)
    with pytest.raises(ValueError, match="neither"):
        protect(PycaGcm(bytes(16)), sc, bytes(8), 1, b"", b"\xc0")
    with pytest.raises(InputError, match="neither"):
        unprotect(PycaGcm(bytes(16)), sc, bytes(8), 1, b"", b"\xc0")


def test_vector_dir_exists() -> None:
    assert Path(VECTORS_DIR, "dlms", "gb-ed8").is_dir()


@pytest.mark.parametrize("vector", GOOD, ids=lambda v: v.id)
def test_prepared_protection_gives_the_vector_and_forgets_the_ak(vector: CipheringVector) -> None:
    from kms.dlms.ciphered_apdu import frame_ciphered_apdu
    from kms.dlms.protection import PreparedProtection

    sc = SecurityControl.from_byte(vector.security_control)
    prepared = PreparedProtection(PycaGcm(vector.ek), sc, vector.system_title, vector.ak)
    payload = prepared.protect(vector.invocation_counter, vector.apdu)
    general = vector.ciphered[0] == GENERAL_GLO_CIPHERING
    framed = frame_ciphered_apdu(
        vector.ciphered[0],
        vector.system_title if general else None,
        vector.security_control,
        vector.invocation_counter,
        payload,
    )
    assert framed == vector.ciphered == rebuild(vector, payload)
    prefix = prepared._prefix
    prepared.close()
    assert prefix is not None and not any(prefix)
    with pytest.raises(ValueError, match="closed"):
        prepared.protect(vector.invocation_counter, vector.apdu)
