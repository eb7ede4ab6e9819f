"""kms.dlms.hls: the Green Book HLS-GMAC vector (8.2) with pyca as the cipher, dlms-cosem's gmac
as a second oracle, strict parsing of f(), challenge lengths and mechanism 6's message."""

from __future__ import annotations

import hashlib

import pytest
from dlms_cosem.security import SecurityControlField
from dlms_cosem.security import gmac as cosem_gmac
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.hls import (
    Mechanism,
    check_challenge,
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
