"""kms.dlms.hls: the Green Book HLS-GMAC vector (8.2) with pyca as the cipher, dlms-cosem's gmac
as a second oracle, strict parsing of f(), challenge lengths and the messages of mechanisms 6 and
7 (gurux-dlms signs and verifies mechanism 7's in tests/interop/test_security_setup_interop.py)."""

from __future__ import annotations

import hashlib

import pytest
from dlms_cosem.security import SecurityControlField
from dlms_cosem.security import gmac as cosem_gmac
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.hls import (
    MIN_ECDSA_CHALLENGE,
    Mechanism,
    check_challenge,
    ecdsa_message,
    ecdsa_response_length,
    gmac_response,
    parse_gmac_response,
    sha256_message,
    verify_gmac_response,
)
from kms.dlms.security_control import SecurityControl
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError, InvalidTag
from tests.dlms.protection_vectors import PycaGcm, hls_gmac_vectors

VECTORS = hls_gmac_vectors()
SUITE0 = SecuritySuite.AES_GCM_128


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: "fail" if c.get("fail") else "ok")
def test_green_book_hls_gmac(case: dict[str, bytes]) -> None:
    cipher = PycaGcm(case["ek"])
    ic_c = int.from_bytes(case["client_ic"], "big")
    ic_s = int.from_bytes(case["server_ic"], "big")
    if case.get("fail"):
        with pytest.raises(InvalidTag):
            verify_gmac_response(
                cipher, SUITE0, case["client_system_title"], case["ak"], case["stoc"],
                case["f_stoc"],
            )  # fmt: skip
        with pytest.raises(InvalidTag):
            verify_gmac_response(
                cipher, SUITE0, case["server_system_title"], case["ak"], case["ctos"],
                case["f_ctos"],
            )  # fmt: skip
        return
    ours = gmac_response(
        cipher, SUITE0, case["client_system_title"], ic_c, case["ak"], case["stoc"]
    )
    assert ours == case["f_stoc"]
    theirs = gmac_response(
        cipher, SUITE0, case["server_system_title"], ic_s, case["ak"], case["ctos"]
    )
    assert theirs == case["f_ctos"]
    assert (
        verify_gmac_response(
            cipher, SUITE0, case["server_system_title"], case["ak"], case["ctos"], case["f_ctos"]
        )
        == ic_s
    )


def test_dlms_cosem_gmac_agrees() -> None:
    (case, *_) = VECTORS
    sc = SecurityControl.from_byte(0x10)
    cosem = cosem_gmac(
        security_control=_cosem_sc(),
        system_title=case["client_system_title"],
        invocation_counter=1,
        key=case["ek"],
        auth_key=case["ak"],
        challenge=case["stoc"],
    )
    ours = gmac_response(
        PycaGcm(case["ek"]), sc.suite, case["client_system_title"], 1, case["ak"], case["stoc"]
    )
    assert ours[5:] == cosem


def _cosem_sc() -> SecurityControlField:
    return SecurityControlField(security_suite=0, authenticated=True, encrypted=False)


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ("10000000011a52fe7dd3e72748973c1e", "tag"),  # 11-byte tag
        ("10000000011a52fe7dd3e72748973c1e2800", "end"),
        ("30000000011a52fe7dd3e72748973c1e28", "security_control"),  # encrypted
        ("50000000011a52fe7dd3e72748973c1e28", "security_control"),  # broadcast
        ("13000000011a52fe7dd3e72748973c1e28", "security_control"),  # reserved suite
        ("1000", "invocation_counter"),
    ],
)
def test_parse_gmac_response_is_strict(response: str, field: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_gmac_response(bytes.fromhex(response))
    assert caught.value.field == field


def test_a_response_of_another_suite_is_refused() -> None:
    (case, *_) = VECTORS
    with pytest.raises(InputError, match="suite"):
        verify_gmac_response(
            PycaGcm(case["ek"]), SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256,
            case["server_system_title"], case["ak"], case["ctos"], case["f_ctos"],
        )  # fmt: skip


@pytest.mark.parametrize(
    ("length", "mechanism", "ok"),
    [(7, Mechanism.HLS_GMAC, False), (8, Mechanism.HLS_GMAC, True), (64, Mechanism.HLS_SHA256,
     True), (65, Mechanism.HLS_SHA256, False), (31, Mechanism.HLS_ECDSA, False),
     (32, Mechanism.HLS_ECDSA, True)],
)  # fmt: skip
def test_challenge_lengths(length: int, mechanism: Mechanism, ok: bool) -> None:
    if ok:
        assert check_challenge(b"\x01" * length, mechanism) == b"\x01" * length
    else:
        with pytest.raises(InputError, match="challenge"):
            check_challenge(b"\x01" * length, mechanism)


def test_sha256_message_orders_the_fields_as_the_green_book() -> None:
    st_c, st_s = bytes.fromhex("4D4D4D0000000001"), bytes.fromhex("4D4D4D0000BC614E")
    ctos, stoc = b"C" * 8, b"S" * 8
    secret = b"Gurux"
    # f(StoC) = SHA-256(secret || ST_C || ST_S || StoC || CtoS), computed by the client.
    f_stoc = hashlib.sha256(secret + sha256_message(st_c, st_s, stoc, ctos)).digest()
    assert f_stoc == hashlib.sha256(secret + st_c + st_s + stoc + ctos).digest()
    # f(CtoS) = SHA-256(secret || ST_S || ST_C || CtoS || StoC), computed by the server.
    assert sha256_message(st_s, st_c, ctos, stoc) == st_s + st_c + ctos + stoc
    with pytest.raises(ValueError, match="8 bytes"):
        sha256_message(st_c[:7], st_s, stoc, ctos)


ST_C = bytes.fromhex("4D4D4D0000000001")
ST_S = bytes.fromhex("4D4D4D0000BC614E")


def test_ecdsa_message_orders_the_fields_as_the_green_book() -> None:
    ctos, stoc = b"C" * 32, b"S" * 64
    # f(StoC) signs ST_C || ST_S || StoC || CtoS (the client); f(CtoS) the mirror (the server).
    assert ecdsa_message(ST_C, ST_S, stoc, ctos) == ST_C + ST_S + stoc + ctos
    assert ecdsa_message(ST_S, ST_C, ctos, stoc) == ST_S + ST_C + ctos + stoc
    # The same bytes as mechanism 6 hashes after its secret.
    assert ecdsa_message(ST_C, ST_S, stoc, ctos) == sha256_message(ST_C, ST_S, stoc, ctos)
    assert MIN_ECDSA_CHALLENGE == 32


@pytest.mark.parametrize(
    ("peer", "own", "field", "length"),
    [(31, 32, "peer_challenge", 31), (32, 65, "own_challenge", 65), (8, 64, "peer_challenge", 8)],
)
def test_ecdsa_message_needs_32_to_64_byte_challenges(
    peer: int, own: int, field: str, length: int
) -> None:
    with pytest.raises(InputError) as info:
        ecdsa_message(ST_C, ST_S, bytes(peer), bytes(own))
    assert info.value.field == field
    assert info.value.detail == f"a challenge for mechanism 7 is 32 to 64 bytes, got {length}"
    with pytest.raises(ValueError, match="own system title must be 8 bytes"):
        ecdsa_message(ST_C[:7], ST_S, bytes(32), bytes(32))


def test_ecdsa_response_length() -> None:
    assert ecdsa_response_length(SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256) == 64
    assert ecdsa_response_length(SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384) == 96
    with pytest.raises(InputError, match="suite 0 has no public-key algorithms"):
        ecdsa_response_length(SUITE0)


def test_mechanism_names() -> None:
    assert Mechanism.HLS_GMAC.mechanism_name == "2.16.756.5.8.2.5"


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=40))
def test_parse_gmac_response_raises_only_input_error(data: bytes) -> None:
    try:
        sc, ic, tag = parse_gmac_response(data)
    except InputError:
        return
    assert len(tag) == 12 and sc.authentication and not sc.encryption
    assert bytes([sc.to_byte()]) + ic.to_bytes(4, "big") + tag == data
