"""kms.dlms.kdf: the KDF vector files (notes 8.6 and self-generated, checked by hand with
gurux.dlms.java) against kms.dlms.kdf and pyca's ConcatKDFHash, pyca ECDH recomputing Z, and the
input checks.

gurux-dlms for Python (1.0.203) has no KDF to compare with (no ``generateKDF`` anywhere in the
package) and its ``GXEcdsa.generateSecret`` fails on any input (``int()`` of a bytes value), so
the Gurux cross-check of these vectors was made with gurux.dlms.java's
``GXSecure.generateKDF`` outside the test run (tests/vectors/README.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from hypothesis import given
from hypothesis import strategies as st

from kms.dlms.kdf import (
    COUNTER,
    TRANSACTION_ID_LENGTH,
    AlgorithmId,
    algorithm_id_for,
    concat_kdf,
    derived_key,
    derived_key_length,
    kdf_hash_name,
    other_info_ephemeral_unified,
    other_info_one_pass,
    other_info_static_unified,
    shared_secret_length,
)
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError
from tests.utils import load_nist_vectors, load_vectors_from_file

SUITE0 = SecuritySuite.AES_GCM_128
SUITE1 = SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256
SUITE2 = SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384
ST_U = bytes.fromhex("4D4D4D0000000001")
ST_V = bytes.fromhex("4D4D4D0000BC614E")
TXID = bytes.fromhex("0000000000000001")

VECTORS = [
    *load_vectors_from_file("dlms/custom/kdf-p256/vectors.txt", load_nist_vectors),
    *load_vectors_from_file("dlms/custom/kdf-p384/vectors.txt", load_nist_vectors),
]


def _other_info(case: dict[str, Any]) -> bytes:
    algorithm_id = AlgorithmId(int(case["algorithm_id"]))
    u = bytes.fromhex(case["party_u_system_title"])
    v = bytes.fromhex(case["party_v_system_title"])
    if case["scheme"] == "one_pass":
        return other_info_one_pass(algorithm_id, u, v)
    if case["scheme"] == "static_unified":
        return other_info_static_unified(algorithm_id, u, bytes.fromhex(case["transaction_id"]), v)
    assert case["scheme"] == "ephemeral_unified"
    return other_info_ephemeral_unified(algorithm_id, u, v)


def test_vector_files_are_complete() -> None:
    assert len(VECTORS) == 12
    assert {case["scheme"] for case in VECTORS} == {
        "one_pass",
        "static_unified",
        "ephemeral_unified",
    }
    assert sum("d_v" in case for case in VECTORS) == 10


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: f"suite{c['suite']}-{c['scheme']}")
def test_kdf_vectors(case: dict[str, Any]) -> None:
    suite = SecuritySuite(int(case["suite"]))
    z = bytes.fromhex(case["z"])
    other_info = _other_info(case)
    assert other_info == bytes.fromhex(case["other_info"])
    expected = bytes.fromhex(case["derived_key"])
    assert concat_kdf(suite, z, other_info) == expected
    # pyca's ConcatKDFHash, an independent implementation of SP 800-56A's one-step KDF.
    algorithm = hashes.SHA256() if suite is SUITE1 else hashes.SHA384()
    assert ConcatKDFHash(algorithm, len(expected), other_info).derive(z) == expected
    # The token path: COUNTER, then Z (C_DigestKey), then OtherInfo, cut by derived_key.
    digest = hashlib.new(kdf_hash_name(suite))
    for part in (COUNTER, z, other_info):
        digest.update(part)
    assert derived_key(suite, digest.digest()) == expected


@pytest.mark.parametrize("case", [c for c in VECTORS if "d_v" in c], ids=lambda c: c["scheme"])
def test_pyca_ecdh_recomputes_z(case: dict[str, Any]) -> None:
    curve: ec.EllipticCurve = ec.SECP256R1() if case["suite"] == "1" else ec.SECP384R1()
    d_u = ec.derive_private_key(int(case["d_u"], 16), curve)
    d_v = ec.derive_private_key(int(case["d_v"], 16), curve)
    z = bytes.fromhex(case["z"])
    assert d_u.exchange(ec.ECDH(), d_v.public_key()) == z
    assert d_v.exchange(ec.ECDH(), d_u.public_key()) == z


def test_notes_vectors_are_the_first_two() -> None:
    """docs/dlms-security.md 8.6 prints these bytes; the file carries them unchanged."""
    one_pass, static = VECTORS[0], VECTORS[1]
    assert one_pass["z"] == "6fa56cb9c3cc995acd44e0c987925ec5b132a0b7cc37e25be4055028dc715d5f"
    assert one_pass["other_info"] == "608574050803004d4d4d00000000014d4d4d0000bc614e"
    assert one_pass["derived_key"] == "db7f433d130e29f0e12c08ad081e856b"
    assert static["other_info"] == (
        "608574050803004d4d4d00000000010800000000000000014d4d4d0000bc614e"
    )
    assert static["derived_key"] == "0e17784ef61d839915d6bc3af7dcc8ad"
    # The RFC 6979 A.2.5 key is d_U of the notes; its public key is the RFC's.
    public = ec.derive_private_key(
        int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16),
        ec.SECP256R1(),
    ).public_key()
    assert public.public_numbers().x == int(
        "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6", 16
    )


# --- AlgorithmID and the suite tables ----------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm_id", "der"),
    [
        (AlgorithmId.AES_GCM_128, "60857405080300"),
        (AlgorithmId.AES_GCM_256, "60857405080301"),
        (AlgorithmId.AES_WRAP_128, "60857405080302"),
        (AlgorithmId.AES_WRAP_256, "60857405080303"),
    ],
)
def test_algorithm_id_der_content(algorithm_id: AlgorithmId, der: str) -> None:
    assert algorithm_id.der_content == bytes.fromhex(der)


def test_algorithm_id_is_the_content_of_the_oid_der() -> None:
    """2.16.756.5.8.3.n: 2*40+16 = 0x60, 756 = 0x85 0x74, then 5, 8, 3, n."""
    first, *rest = [2 * 40 + 16, 756, 5, 8, 3, 1]
    encoded = bytes([first])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.insert(0, 0x80 | (arc & 0x7F))
            arc >>= 7
        encoded += bytes(chunk)
    assert encoded == AlgorithmId.AES_GCM_256.der_content


@pytest.mark.parametrize(
    ("suite", "wrap", "expected"),
    [
        (SUITE1, False, AlgorithmId.AES_GCM_128),
        (SUITE1, True, AlgorithmId.AES_WRAP_128),
        (SUITE2, False, AlgorithmId.AES_GCM_256),
        (SUITE2, True, AlgorithmId.AES_WRAP_256),
    ],
)
def test_algorithm_id_for(suite: SecuritySuite, wrap: bool, expected: AlgorithmId) -> None:
    assert algorithm_id_for(suite, wrap=wrap) is expected


def test_suite_tables() -> None:
    assert (kdf_hash_name(SUITE1), kdf_hash_name(SUITE2)) == ("sha256", "sha384")
    assert (derived_key_length(SUITE1), derived_key_length(SUITE2)) == (16, 32)
    assert (shared_secret_length(SUITE1), shared_secret_length(SUITE2)) == (32, 48)
    assert COUNTER == b"\x00\x00\x00\x01"
    assert TRANSACTION_ID_LENGTH == 8


@pytest.mark.parametrize(
    "call",
    [
        lambda: algorithm_id_for(SUITE0),
        lambda: kdf_hash_name(SUITE0),
        lambda: derived_key_length(SUITE0),
        lambda: shared_secret_length(SUITE0),
        lambda: concat_kdf(SUITE0, bytes(32), b""),
        lambda: derived_key(SUITE0, bytes(32)),
        lambda: kdf_hash_name(7),  # type: ignore[arg-type]
    ],
)
def test_suites_without_key_agreement_are_input_errors(call: Any) -> None:
    with pytest.raises(InputError, match=r"has no key agreement; expected 1 or 2") as info:
        call()
    assert info.value.field == "security_suite"


# --- input checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (
            lambda: other_info_one_pass(AlgorithmId.AES_GCM_128, ST_U[:7], ST_V),
            "originator_system_title",
            "originator-system-title must be 8 bytes, got 7",
        ),
        (
            lambda: other_info_one_pass(AlgorithmId.AES_GCM_128, ST_U, b""),
            "recipient_system_title",
            "recipient-system-title must be 8 bytes, got 0",
        ),
        (
            lambda: other_info_static_unified(AlgorithmId.AES_GCM_128, ST_U, TXID[:7], ST_V),
            "transaction_id",
            "transaction-id must be 8 bytes, got 7",
        ),
        (
            lambda: other_info_static_unified(AlgorithmId.AES_GCM_128, ST_U, TXID + b"\0", ST_V),
            "transaction_id",
            "transaction-id must be 8 bytes, got 9",
        ),
        (
            lambda: other_info_static_unified(AlgorithmId.AES_GCM_128, ST_U, TXID, ST_V + b"\0"),
            "recipient_system_title",
            "recipient-system-title must be 8 bytes, got 9",
        ),
        (
            lambda: other_info_ephemeral_unified(AlgorithmId.AES_GCM_128, ST_U, ST_V[:4]),
            "server_system_title",
            "server-system-title must be 8 bytes, got 4",
        ),
        (
            lambda: other_info_ephemeral_unified(AlgorithmId.AES_GCM_128, b"", ST_V),
            "client_system_title",
            "client-system-title must be 8 bytes, got 0",
        ),
    ],
)
def test_other_info_rejects_lengths(call: Any, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    assert info.value.field == field
    assert info.value.detail == message


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: concat_kdf(SUITE1, bytes(31), b""), ValueError, "is 32 bytes, got 31"),
        (lambda: concat_kdf(SUITE2, bytes(32), b""), ValueError, "is 48 bytes, got 32"),
        (lambda: concat_kdf(SUITE1, "00" * 32, b""), TypeError, "shared_secret must be bytes"),
        (lambda: concat_kdf(SUITE1, bytes(32), "x"), TypeError, "other_info must be bytes"),
        (lambda: derived_key(SUITE1, bytes(48)), ValueError, "sha256 digest is 32 bytes, got 48"),
        (lambda: derived_key(SUITE2, bytes(32)), ValueError, "sha384 digest is 48 bytes, got 32"),
        (lambda: other_info_one_pass(4, ST_U, ST_V), ValueError, "algorithm_id must be 0..3"),
        (lambda: other_info_one_pass(True, ST_U, ST_V), TypeError, "must be an AlgorithmId"),
        (lambda: other_info_one_pass(0, ST_U.hex(), ST_V), TypeError, "must be bytes"),
        (lambda: other_info_static_unified(0, ST_U, 1, ST_V), TypeError, "must be bytes"),
    ],
)
def test_caller_bugs(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


@given(
    st.sampled_from([SUITE1, SUITE2]),
    st.binary(min_size=48, max_size=48),
    st.binary(max_size=40),
)
def test_concat_kdf_is_pyca_concat_kdf(suite: SecuritySuite, secret: bytes, other: bytes) -> None:
    z = secret[: shared_secret_length(suite)]
    algorithm = hashes.SHA256() if suite is SUITE1 else hashes.SHA384()
    length = derived_key_length(suite)
    assert concat_kdf(suite, z, other) == ConcatKDFHash(algorithm, length, other).derive(z)
