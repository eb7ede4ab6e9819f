"""EC key agreement in the token (kms/hsm/ecdh.py) against a real SoftHSM2 token.

Z never leaves the token in the ``digest_key`` path, so no test reads it: an agreed key is proved
by what it does. An EK encrypts under AES-GCM in the token and must give what pyca's ``AESGCM``
gives under the key pyca derives from the same inputs (``ec.ECDH`` then ``ConcatKDFHash``); a
KEK wraps a known key to what pyca's ``aes_key_wrap`` gives, and unwraps what pyca wrapped.
Known answers: the KDF vectors of docs/dlms-security.md section 8.6, and the self-generated
vectors under tests/vectors/dlms/custom/kdf-p256 and kdf-p384 (pyca-generated, checked by a
pure-Python verifier; see their header).

Every agreement runs under both KDF locations of the profile (``[flags] kdf``): the reference
``softhsm2.toml`` (``digest_key``) and a copy of it saying ``host``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from pkcs11 import Attribute, KeyType, ObjectClass

from kms.config import Config
from kms.errors import (
    HsmError,
    InputError,
    TokenKeyNotFound,
    UnsupportedMechanism,
    UnsupportedReason,
)
from kms.hsm import Hsm, KeyUse, SessionKey, TokenKey, ecdh
from kms.hsm.profile import PROFILE_DIR
from tests.utils import load_nist_vectors, load_vectors_from_file

REFERENCE = (PROFILE_DIR / "softhsm2.toml").read_text(encoding="utf-8")
CURVES = {
    "P-256": (ec.SECP256R1(), hashes.SHA256(), 16),
    "P-384": (ec.SECP384R1(), hashes.SHA384(), 32),
}
KDF_LOCATIONS = {"digest_key": "token-digest", "host": "host"}

# docs/dlms-security.md 8.6 (P-256, suite 1): d_U is RFC 6979's P-256 key (A.2.5); Z is given,
# d_V only in part, so the test builds a peer point that gives this Z (see _peer_for_z).
D_U = bytes.fromhex("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
Z_86 = bytes.fromhex("6FA56CB9C3CC995ACD44E0C987925EC5B132A0B7CC37E25BE4055028DC715D5F")
VECTORS_86 = [
    pytest.param(
        "608574050803004D4D4D00000000014D4D4D0000BC614E",
        "DB7F433D130E29F0E12C08AD081E856B",
        id="one-pass",
    ),
    pytest.param(
        "608574050803004D4D4D00000000010800000000000000014D4D4D0000BC614E",
        "0E17784EF61D839915D6BC3AF7DCC8AD",
        id="static-unified",
    ),
]

CUSTOM = [
    pytest.param(folder, v, id=f"{folder}-COUNT{i}")
    for folder in ("kdf-p256", "kdf-p384")
    for i, v in enumerate(
        load_vectors_from_file(f"dlms/custom/{folder}/vectors.txt", load_nist_vectors)
    )
    if "d_u" in v
]

# P-256 domain parameters (SEC 2 2.4.2 / FIPS 186-4 D.1.2.3), for _peer_for_z's arithmetic.
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# --- helpers ---------------------------------------------------------------------------------


def _xy(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


def _public(curve: str, xy: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(CURVES[curve][0], b"\x04" + xy)


def _pyca_key(curve: str, z: bytes, other_info: bytes, length: int) -> bytes:
    return ConcatKDFHash(CURVES[curve][1], length, other_info).derive(z)


def _other_info() -> bytes:
    """AlgorithmID (AES-GCM-128) || ST_U || ST_V, with random titles."""
    return bytes.fromhex("60857405080300") + secrets.token_bytes(16)


def assert_key_is(hsm: Hsm, key: SessionKey, value: bytes) -> None:
    """``key`` (in the token) behaves as the AES key ``value`` (known to pyca)."""
    assert key.length == len(value)
    if key.use in (KeyUse.EK, KeyUse.EK_FOR_USE):
        iv, aad, plaintext = secrets.token_bytes(12), b"\x30" + bytes(16), secrets.token_bytes(21)
        expected = AESGCM(value).encrypt(iv, plaintext, aad)
        assert hsm.gcm_encrypt(key, iv, aad, plaintext, 128) == expected
        assert hsm.gcm_decrypt(key, iv, aad, expected, 128) == plaintext
        return
    assert key.use in (KeyUse.KEK, KeyUse.KEK_FOR_USE)
    known = secrets.token_bytes(16)
    assert hsm.wrap_key(key, hsm.load_known_key(known)) == aes_key_wrap(value, known)
    sent = secrets.token_bytes(32)
    received = hsm.unwrap_key(key, aes_key_wrap(value, sent), KeyUse.EK_FOR_USE, 32)
    iv = secrets.token_bytes(12)
    expected = AESGCM(sent).encrypt(iv, b"block", b"")
    assert hsm.gcm_encrypt(received, iv, b"", b"block", 128) == expected


def _peer_for_z(d: int, z: bytes) -> bytes:
    """A P-256 point Q (x || y) with x(d * Q) == z: lift z to S on the curve and take
    Q = d^-1 * S. This lets the 8.6 vector, which gives Z and d_U but not d_V, run in the token."""
    p = P256_P
    x = int.from_bytes(z, "big")
    rhs = (pow(x, 3, p) - 3 * x + P256_B) % p
    y = pow(rhs, (p + 1) // 4, p)  # p = 3 mod 4
    assert y * y % p == rhs, "Z is not the x of a P-256 point"

    def add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
        if a is None:
            return b
        if b is None:
            return a
        if a[0] == b[0] and (a[1] + b[1]) % p == 0:
            return None
        if a == b:
            slope = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, p) % p
        else:
            slope = (b[1] - a[1]) * pow(b[0] - a[0], -1, p) % p
        rx = (slope * slope - a[0] - b[0]) % p
        return rx, (slope * (a[0] - rx) - a[1]) % p

    k, point, result = pow(d, -1, P256_N), (x, y), None
    while k:
        if k & 1:
            result = add(result, point)
        point = add(point, point)
        k >>= 1
    assert result is not None
    return result[0].to_bytes(32, "big") + result[1].to_bytes(32, "big")


def _profile(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _host_kdf_profile(tmp_path: Path) -> str:
    assert REFERENCE.count('kdf = "digest_key"') == 1
    text = REFERENCE.replace('kdf = "digest_key"', 'kdf = "host"')
    return _profile(tmp_path, text.replace('name = "softhsm2"', 'name = "host-kdf"'), "host-kdf")


@pytest.fixture(params=list(KDF_LOCATIONS))
def kdf_hsm(request: pytest.FixtureRequest, kms_config: Config, tmp_path: Path) -> Iterator[Hsm]:
    """The adapter on the test token, under a profile whose KDF runs in the token or on the host."""
    profile = "softhsm2" if request.param == "digest_key" else _host_kdf_profile(tmp_path)
    adapter = Hsm(dataclasses.replace(kms_config, hsm_profile=profile))
    assert adapter.profile.kdf == request.param
    try:
        yield adapter
    finally:
        adapter.close()


def _capabilities(hsm: Hsm, key: SessionKey | TokenKey) -> dict[str, bool]:
    """The capability attributes of an EC private key. (Using one it lacks fails in
    python-pkcs11 already: it gives the object no ``sign`` method when CKA_SIGN is false.)"""
    obj = hsm.resolve(key)
    names = ("DERIVE", "SIGN", "DECRYPT", "UNWRAP", "SIGN_RECOVER")
    return {name: bool(obj[Attribute[name]]) for name in names}


DERIVE_ONLY = {
    "DERIVE": True,
    "SIGN": False,
    "DECRYPT": False,
    "UNWRAP": False,
    "SIGN_RECOVER": False,
}


def _generic_secrets(hsm: Hsm) -> int:
    """How many generic-secret session objects the session holds (a Z left behind is one)."""
    query = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.TOKEN: False,
    }
    return len(list(hsm.pkcs11_session.get_objects(query)))


# --- agreement against pyca ------------------------------------------------------------------


@pytest.mark.parametrize("use", [KeyUse.EK_FOR_USE, KeyUse.KEK_FOR_USE], ids=lambda u: u.value)
@pytest.mark.parametrize("curve", list(CURVES))
def test_an_ephemeral_agreement_gives_the_key_pyca_derives(
    kdf_hsm: Hsm, curve: str, use: KeyUse
) -> None:
    pyca_curve, _, length = CURVES[curve]
    peer = ec.generate_private_key(pyca_curve)
    private, own = kdf_hsm.generate_ephemeral_key_pair(curve)
    assert len(own) == 2 * private.length == {"P-256": 64, "P-384": 96}[curve]
    other_info = _other_info()

    agreed = kdf_hsm.agree_key(private, _xy(peer.public_key()), curve, other_info, length, use)

    assert agreed.kdf_location == KDF_LOCATIONS[kdf_hsm.profile.kdf]
    assert (agreed.key.use, agreed.key.length) == (use, length)
    z = peer.exchange(ec.ECDH(), _public(curve, own))
    assert_key_is(kdf_hsm, agreed.key, _pyca_key(curve, z, other_info, length))
    kdf_hsm.destroy(private)


@pytest.mark.parametrize("curve", list(CURVES))
def test_a_static_key_agreement_key_agrees_with_pyca(kdf_hsm: Hsm, curve: str) -> None:
    pyca_curve, _, length = CURVES[curve]
    private = kdf_hsm.create_key_agreement_key_pair(f"kms-ka-{curve}", b"ka-1", curve)
    own = kdf_hsm.public_point(private)
    assert own == kdf_hsm.public_point(TokenKey(private.label, "public"))
    peer = ec.generate_private_key(pyca_curve)
    other_info = _other_info()

    agreed = kdf_hsm.agree_key(
        private, _xy(peer.public_key()), curve, other_info, length, KeyUse.EK_FOR_USE
    )

    z = peer.exchange(ec.ECDH(), _public(curve, own))
    assert_key_is(kdf_hsm, agreed.key, _pyca_key(curve, z, other_info, length))


@pytest.mark.parametrize("use", [KeyUse.EK, KeyUse.KEK], ids=lambda u: u.value)
def test_an_agreed_key_may_be_made_to_be_sealed_under_the_storage_key(
    hsm: Hsm, use: KeyUse
) -> None:
    """EK and KEK (not *_FOR_USE) are extractable, so an agreed key that becomes a meter's
    stored key can be wrapped like any per-meter key."""
    peer = ec.generate_private_key(ec.SECP384R1())
    private, own = hsm.generate_ephemeral_key_pair("P-384")
    other_info = _other_info()
    agreed = hsm.agree_key(private, _xy(peer.public_key()), "P-384", other_info, 32, use)
    value = _pyca_key("P-384", peer.exchange(ec.ECDH(), _public("P-384", own)), other_info, 32)
    kek = hsm.load_known_key(bytes(range(16)))
    assert hsm.wrap_key(kek, agreed.key) == aes_key_wrap(bytes(range(16)), value)
    assert (hsm.attributes(agreed.key)["sensitive"], hsm.attributes(agreed.key)["extractable"]) == (
        True,
        True,
    )


# --- known answers ----------------------------------------------------------------------------


def test_the_peer_point_built_for_the_8_6_vector_gives_its_z() -> None:
    """The construction of _peer_for_z, checked by pyca's own ECDH."""
    d_u = ec.derive_private_key(int.from_bytes(D_U, "big"), ec.SECP256R1())
    peer = _public("P-256", _peer_for_z(int.from_bytes(D_U, "big"), Z_86))
    assert d_u.exchange(ec.ECDH(), peer) == Z_86


@pytest.mark.parametrize(("other_info", "derived"), VECTORS_86)
def test_the_notes_8_6_kdf_vector_in_the_token(kdf_hsm: Hsm, other_info: str, derived: str) -> None:
    private = kdf_hsm.load_known_ephemeral_key("P-256", D_U)
    peer = _peer_for_z(int.from_bytes(D_U, "big"), Z_86)

    agreed = kdf_hsm.agree_key(
        private, peer, "P-256", bytes.fromhex(other_info), 16, KeyUse.EK_FOR_USE
    )

    assert_key_is(kdf_hsm, agreed.key, bytes.fromhex(derived))


@pytest.mark.parametrize(("folder", "vector"), CUSTOM)
def test_the_custom_kdf_vectors_in_the_token(
    kdf_hsm: Hsm, folder: str, vector: dict[str, Any]
) -> None:
    curve = {"kdf-p256": "P-256", "kdf-p384": "P-384"}[folder]
    d_v = ec.derive_private_key(int(vector["d_v"], 16), CURVES[curve][0])
    derived = bytes.fromhex(vector["derived_key"])
    # AlgorithmID 0/1 names AES-GCM, 2/3 AES key wrap: prove the key by what it is for.
    use = KeyUse.EK_FOR_USE if vector["algorithm_id"] in ("0", "1") else KeyUse.KEK_FOR_USE
    private = kdf_hsm.load_known_ephemeral_key(curve, bytes.fromhex(vector["d_u"]))

    agreed = kdf_hsm.agree_key(
        private,
        _xy(d_v.public_key()),
        curve,
        bytes.fromhex(vector["other_info"]),
        len(derived),
        use,
    )

    assert_key_is(kdf_hsm, agreed.key, derived)


# --- what the token holds ---------------------------------------------------------------------


@pytest.mark.parametrize("curve", list(CURVES))
def test_an_ephemeral_private_key_is_a_sensitive_derive_only_session_object(
    hsm: Hsm, curve: str
) -> None:
    private, _ = hsm.generate_ephemeral_key_pair(curve)
    attrs = hsm.attributes(private)
    assert (attrs["token"], attrs["sensitive"], attrs["extractable"]) == (False, True, False)
    assert (attrs["always_sensitive"], attrs["never_extractable"]) == (True, True)
    assert _capabilities(hsm, private) == DERIVE_ONLY
    with pytest.raises(HsmError):
        hsm.read_value(private)


def test_the_ephemeral_public_half_is_not_left_in_the_session(hsm: Hsm) -> None:
    def publics() -> int:
        query = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.TOKEN: False}
        return len(list(hsm.pkcs11_session.get_objects(query)))

    before = publics()
    hsm.generate_ephemeral_key_pair("P-256")
    assert publics() == before


@pytest.mark.parametrize("curve", list(CURVES))
def test_a_static_key_agreement_key_is_a_derive_only_token_object(hsm: Hsm, curve: str) -> None:
    private = hsm.create_key_agreement_key_pair("kms-ka", b"ka-1", curve)
    attrs = hsm.attributes(private)
    assert (attrs["token"], attrs["sensitive"], attrs["extractable"]) == (True, True, False)
    assert _capabilities(hsm, private) == DERIVE_ONLY
    with pytest.raises(HsmError):
        hsm.read_value(private)
    assert len(hsm.public_point(private)) == {"P-256": 64, "P-384": 96}[curve]


@pytest.mark.parametrize("curve", list(CURVES))
def test_public_point_is_the_key_public_key_der_describes(hsm: Hsm, curve: str) -> None:
    signing = hsm.create_ec_key_pair(f"kms-sign-{curve}", b"s-1", curve)
    spki = load_der_public_key(hsm.public_key_der(signing))
    assert isinstance(spki, ec.EllipticCurvePublicKey)
    assert hsm.public_point(signing) == _xy(spki)


@pytest.mark.parametrize("use", [KeyUse.EK_FOR_USE, KeyUse.KEK_FOR_USE], ids=lambda u: u.value)
def test_an_agreed_key_for_use_is_sensitive_and_never_extractable(hsm: Hsm, use: KeyUse) -> None:
    private, _ = hsm.generate_ephemeral_key_pair("P-256")
    peer = ec.generate_private_key(ec.SECP256R1())
    agreed = hsm.agree_key(private, _xy(peer.public_key()), "P-256", _other_info(), 16, use)
    attrs = hsm.attributes(agreed.key)
    assert (attrs["token"], attrs["sensitive"], attrs["extractable"]) == (False, True, False)
    with pytest.raises(HsmError):
        hsm.read_value(agreed.key)
    with pytest.raises(HsmError):  # CKR_KEY_UNEXTRACTABLE
        hsm.wrap_key(hsm.load_known_key(bytes(16)), agreed.key)


def test_z_is_never_readable_in_the_digest_key_path_and_is_destroyed(
    kdf_hsm: Hsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spy on the Z object tries to read it the moment it exists. Under ``host`` the same spy
    reads Z and finds pyca's value, so the spy is able to see a readable Z."""
    seen: dict[str, Any] = {}
    real = ecdh._derive_shared_secret

    def spy(*args: Any, **kwargs: Any) -> Any:
        z = real(*args, **kwargs)
        as_key = kdf_hsm.session_key(z, 32, KeyUse.SECRET)
        seen["attributes"] = kdf_hsm.attributes(as_key)
        try:
            seen["value"] = kdf_hsm.read_value(as_key)
        except HsmError as exc:
            seen["error"] = exc
        return z

    monkeypatch.setattr(ecdh, "_derive_shared_secret", spy)
    peer = ec.generate_private_key(ec.SECP256R1())
    private, own = kdf_hsm.generate_ephemeral_key_pair("P-256")
    before = _generic_secrets(kdf_hsm)

    kdf_hsm.agree_key(private, _xy(peer.public_key()), "P-256", _other_info(), 16, KeyUse.EK)

    assert _generic_secrets(kdf_hsm) == before  # Z was destroyed
    attrs = seen["attributes"]
    if kdf_hsm.profile.kdf == "digest_key":
        assert (attrs["sensitive"], attrs["extractable"]) == (True, False)
        assert "value" not in seen
        assert isinstance(seen["error"], HsmError)
    else:
        assert (attrs["sensitive"], attrs["extractable"]) == (False, True)
        assert seen["value"] == peer.exchange(ec.ECDH(), _public("P-256", own))


def test_an_ephemeral_key_is_gone_after_destroy(hsm: Hsm) -> None:
    private, _ = hsm.generate_ephemeral_key_pair("P-256")
    peer = _xy(ec.generate_private_key(ec.SECP256R1()).public_key())
    hsm.destroy(private)
    with pytest.raises(TokenKeyNotFound):
        hsm.agree_key(private, peer, "P-256", _other_info(), 16, KeyUse.EK_FOR_USE)


# --- bad input --------------------------------------------------------------------------------


def _p256_point() -> bytes:
    return _xy(ec.derive_private_key(0x5EED, ec.SECP256R1()).public_key())


def _off_curve() -> bytes:
    point = bytearray(_p256_point())
    point[-1] ^= 0x01
    return bytes(point)


BAD_POINTS = [
    pytest.param(_off_curve(), "not a point on P-256", id="off-curve"),
    pytest.param(bytes(64), "not a point on P-256", id="infinity-as-zeros"),
    pytest.param(P256_P.to_bytes(32, "big") + _p256_point()[32:], "not a point", id="x-is-p"),
    pytest.param(b"\x04" + _p256_point(), "65 bytes", id="with-04-prefix"),
    pytest.param(_p256_point()[:63], "63 bytes", id="short"),
    pytest.param(b"\x00", "1 bytes", id="sec1-infinity"),
    pytest.param(_xy(ec.generate_private_key(ec.SECP384R1()).public_key()), "96", id="p384"),
]


@pytest.mark.parametrize(("point", "message"), BAD_POINTS)
def test_an_invalid_peer_point_is_an_input_error_raised_before_the_token(
    hsm: Hsm, point: bytes, message: str
) -> None:
    # The private key is destroyed: had the token been asked, it would answer that the key is
    # gone (TokenKeyNotFound, as in the test above), not InputError.
    private, _ = hsm.generate_ephemeral_key_pair("P-256")
    hsm.destroy(private)
    with pytest.raises(InputError) as info:
        hsm.agree_key(private, point, "P-256", _other_info(), 16, KeyUse.EK_FOR_USE)
    assert info.value.field == "peer_public_key"
    assert message in str(info.value)


def test_caller_bugs_are_value_errors(hsm: Hsm) -> None:
    private, _ = hsm.generate_ephemeral_key_pair("P-384")
    point = _p256_point()
    with pytest.raises(ValueError, match="unknown curve"):
        hsm.generate_ephemeral_key_pair("P-521")
    with pytest.raises(ValueError, match="16 or 32"):
        hsm.agree_key(private, point, "P-256", b"", 24, KeyUse.EK_FOR_USE)
    with pytest.raises(ValueError, match="AK_FOR_USE"):
        hsm.agree_key(private, point, "P-256", b"", 16, KeyUse.AK_FOR_USE)
    with pytest.raises(ValueError, match="not on P-256"):  # a P-384 key, a P-256 point
        hsm.agree_key(private, point, "P-256", b"", 16, KeyUse.EK_FOR_USE)
    aes = hsm.generate_key(KeyUse.EK, 16)
    with pytest.raises(ValueError, match="EC private key"):
        hsm.agree_key(aes, point, "P-256", b"", 16, KeyUse.EK_FOR_USE)


# --- the profile ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "curve"),
    [("ec_derive", "P-256"), ("kdf_digest_256", "P-256"), ("kdf_digest_384", "P-384")],
)
def test_a_profile_without_a_key_agreement_job_refuses_naming_it(
    kms_config: Config, tmp_path: Path, job: str, curve: str
) -> None:
    lines = [line for line in REFERENCE.splitlines() if not line.startswith(f"{job} = ")]
    assert len(lines) == len(REFERENCE.splitlines()) - 1
    adapter = Hsm(
        dataclasses.replace(kms_config, hsm_profile=_profile(tmp_path, "\n".join(lines), job))
    )
    try:
        private, _ = adapter.generate_ephemeral_key_pair(curve)
        peer = _xy(ec.generate_private_key(CURVES[curve][0]).public_key())
        with pytest.raises(UnsupportedMechanism) as info:
            adapter.agree_key(private, peer, curve, b"", 16, KeyUse.EK_FOR_USE)
        assert info.value.reason is UnsupportedReason.MISSING_FROM_PROFILE
        assert job in str(info.value)
    finally:
        adapter.close()


def test_the_host_kdf_needs_no_digest_job(kms_config: Config, tmp_path: Path) -> None:
    text = (PROFILE_DIR / "softhsm2.toml").read_text(encoding="utf-8")
    text = text.replace('kdf = "digest_key"', 'kdf = "host"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith("kdf_digest_"))
    adapter = Hsm(dataclasses.replace(kms_config, hsm_profile=_profile(tmp_path, text, "bare")))
    try:
        peer = ec.generate_private_key(ec.SECP384R1())
        private, own = adapter.generate_ephemeral_key_pair("P-384")
        agreed = adapter.agree_key(
            private, _xy(peer.public_key()), "P-384", b"oi", 32, KeyUse.EK_FOR_USE
        )
        assert agreed.kdf_location == "host"
        z = peer.exchange(ec.ECDH(), _public("P-384", own))
        assert_key_is(
            adapter, agreed.key, hashlib.sha384(b"\x00\x00\x00\x01" + z + b"oi").digest()[:32]
        )
    finally:
        adapter.close()
