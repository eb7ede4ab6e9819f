"""kms.pki.ecdsa: raw <-> DER with pyca as the oracle, signing through a Signer, strict verify."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import algos, keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki import ecdsa
from tests.pki.support import PycaSigner, private_key, public_key_info

WIDTH = {"P-256": 32, "P-384": 48}
ORDER = {
    "P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P-384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


def test_hash_follows_the_curve() -> None:
    assert ecdsa.hash_for_curve("P-256") == "sha256"
    assert ecdsa.hash_for_curve("P-384") == "sha384"
    assert ecdsa.digest("P-256", b"abc") == hashlib.sha256(b"abc").digest()
    assert ecdsa.digest("P-384", b"abc") == hashlib.sha384(b"abc").digest()


@pytest.mark.parametrize("curve", ["P-521", "p-256", "secp256r1", ""])
def test_unknown_curve_is_a_caller_bug(curve: str) -> None:
    with pytest.raises(ValueError, match="unsupported curve"):
        ecdsa.hash_for_curve(curve)


@given(st.sampled_from(["P-256", "P-384"]), st.data())
def test_raw_and_der_round_trip_against_pyca(curve: str, data: st.DataObject) -> None:
    r = data.draw(st.integers(min_value=1, max_value=ORDER[curve] - 1))
    s = data.draw(st.integers(min_value=1, max_value=ORDER[curve] - 1))
    width = WIDTH[curve]
    raw = r.to_bytes(width, "big") + s.to_bytes(width, "big")
    der = ecdsa.der_from_raw(raw)
    assert der == encode_dss_signature(r, s)
    assert decode_dss_signature(der) == (r, s)
    assert ecdsa.raw_from_der(der, curve) == raw


@given(
    st.integers(min_value=1, max_value=80).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.data(),
)
def test_der_from_raw_is_asn1cryptos_encoding(half: bytes, data: st.DataObject) -> None:
    """The hand-written encoder (a batch of certificates encodes one signature each) agrees
    with asn1crypto's for any halves: zeros, top bits set, and contents past 127 octets."""
    other = data.draw(st.binary(min_size=len(half), max_size=len(half)))
    r, s = int.from_bytes(half, "big"), int.from_bytes(other, "big")
    assert ecdsa.der_from_raw(half + other) == algos.DSASignature({"r": r, "s": s}).dump()


@pytest.mark.parametrize("raw", [b"", b"\x01", bytes(63), bytes(97)])
def test_der_from_raw_refuses_odd_or_empty(raw: bytes) -> None:
    with pytest.raises(ValueError, match="r \\|\\| s of equal halves"):
        ecdsa.der_from_raw(raw)


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (encode_dss_signature(1, 2) + b"\x00", "bad DER"),
        (bytes.fromhex("3006020181020101"), "r is not a positive INTEGER"),  # gurux-style r
        (bytes.fromhex("3006020100020101"), "r is not a positive INTEGER"),
        (bytes.fromhex("300702020001020101"), "not DER"),  # 0x00 pad that is not needed
        (encode_dss_signature(1, 2**256), "s is longer than P-256 allows"),
        (b"\x04\x00", "bad DER"),
        (b"", "bad DER"),
    ],
)
def test_raw_from_der_is_strict(der: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ecdsa.raw_from_der(der, "P-256")


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_sign_hashes_by_curve_and_pyca_verifies(curve: str) -> None:
    key = private_key(curve, 11)
    signer = PycaSigner(key)
    signature = ecdsa.sign(signer, b"tbs bytes")
    assert signer.calls == [ecdsa.digest(curve, b"tbs bytes")]
    hash_algorithm = hashes.SHA256() if curve == "P-256" else hashes.SHA384()
    key.public_key().verify(signature, b"tbs bytes", ec.ECDSA(hash_algorithm))
    ecdsa.verify(public_key_info(key), signature, b"tbs bytes", ecdsa.hash_for_curve(curve))


class _LyingSigner:
    curve = "P-256"

    def sign_digest(self, digest: bytes) -> bytes:
        return bytes(96)


def test_sign_refuses_a_signer_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="a P-256 signer returned 96 bytes, expected 64"):
        ecdsa.sign(_LyingSigner(), b"data")


@pytest.fixture
def signed() -> tuple[keys.PublicKeyInfo, bytes]:
    key = private_key("P-256", 12)
    return public_key_info(key), ecdsa.sign(PycaSigner(key), b"message")


def test_verify_raises_and_never_returns_false(signed: tuple[keys.PublicKeyInfo, bytes]) -> None:
    public_key, signature = signed
    assert ecdsa.verify(public_key, signature, b"message", "sha256") is None
    with pytest.raises(InvalidSignature, match="signature does not verify"):
        ecdsa.verify(public_key, signature, b"messagf", "sha256")
    with pytest.raises(InvalidSignature):
        ecdsa.verify(public_key, signature, b"message", "sha384")
    with pytest.raises(InvalidSignature):
        ecdsa.verify(public_key, signature[:-1] + bytes([signature[-1] ^ 1]), b"message", "sha256")
    with pytest.raises(InvalidSignature):
        ecdsa.verify(public_key, b"\x30\x00", b"message", "sha256")
    with pytest.raises(ValueError, match="unsupported hash"):
        ecdsa.verify(public_key, signature, b"message", "sha512")


def _spki(key: object) -> keys.PublicKeyInfo:
    der = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return keys.PublicKeyInfo.load(der)


@pytest.mark.parametrize(
    ("curve", "expected"),
    [(ec.SECP256R1(), "P-256"), (ec.SECP384R1(), "P-384")],
)
def test_public_key_curve(curve: ec.EllipticCurve, expected: str) -> None:
    assert ecdsa.public_key_curve(_spki(ec.generate_private_key(curve).public_key())) == expected


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            rsa.generate_private_key(65537, 2048).public_key(),
            "public key algorithm is rsa, not id-ecPublicKey",
        ),
        (ec.generate_private_key(ec.SECP521R1()).public_key(), "curve secp521r1 is not P-256"),
        (ec.generate_private_key(ec.SECP256K1()).public_key(), "curve secp256k1 is not P-256"),
    ],
)
def test_public_key_curve_refuses_off_profile_keys(key: object, message: str) -> None:
    with pytest.raises(CertificateProfileError, match=message):
        ecdsa.public_key_curve(_spki(key))


def test_public_key_curve_refuses_unnamed_curves() -> None:
    named = public_key_info(private_key("P-256", 13))
    implicit = keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="implicit_ca", value=None),
            },
            "public_key": named["public_key"],
        }
    )
    with pytest.raises(CertificateProfileError, match="implicit_ca parameters, not as a named"):
        ecdsa.public_key_curve(keys.PublicKeyInfo.load(implicit.dump()))


def test_verify_names_a_key_that_is_not_on_its_curve() -> None:
    good = public_key_info(private_key("P-256", 14))
    point = bytearray(good["public_key"].native)
    point[-1] ^= 1  # y no longer matches x
    bad = keys.PublicKeyInfo({"algorithm": good["algorithm"], "public_key": bytes(point)})
    with pytest.raises(InputError, match="public key: not a valid P-256 point"):
        ecdsa.verify(keys.PublicKeyInfo.load(bad.dump()), b"\x30\x00", b"", "sha256")
