"""CA key backup in the token (kms/hsm/trusted_wrap.py) against SoftHSM2: what the security
officer (SO) and the user may do with CKA_TRUSTED, the trusted backup key kept off the disk in
clear, CA keys wrapped only under it, and a backup restored into another token that signs.

Known answers come from outside the token: pyca/cryptography's RFC 5649 unwrap and PKCS#8 parser
over a wrapping key of known value, and pyca's ECDSA verification.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pkcs11.exceptions as p11e
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.keywrap import (
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from pkcs11 import Attribute, KeyType, ObjectClass

from kms.config import Config, Pin
from kms.errors import HsmError, InvalidUnwrap, PinIncorrect
from kms.hsm import Hsm, TokenKey, templates
from kms.services.pki.key_components import check_value
from tests.conftest import TestToken
from tests.spare_token import SpareToken, spare_token

LABEL = "kms-ca-backup-v1"
CA = "kms-ca-test"


@pytest.fixture
def spare(kms_config: Config) -> Iterator[SpareToken]:
    with spare_token(kms_config) as found:
        yield found


def _value() -> bytearray:
    return bytearray(secrets.token_bytes(32))


def _trusted(hsm: Hsm, token: TestToken, value: bytearray) -> TokenKey:
    return hsm.create_trusted_wrapping_key(Pin(token.so_pin), LABEL, LABEL.encode(), value)


def _attribute(hsm: Hsm, key: TokenKey, attribute: Attribute) -> object:
    return hsm.resolve(key)[attribute]


def _token_files() -> list[Path]:
    conf = Path(os.environ["SOFTHSM2_CONF"]).read_text(encoding="utf-8")
    line = next(x for x in conf.splitlines() if x.startswith("directories.tokendir"))
    return [p for p in Path(line.split("=", 1)[1].strip()).rglob("*") if p.is_file()]


def _spki(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- who may set CKA_TRUSTED (measured) -----------------------------------------------------------


def test_the_user_cannot_make_a_trusted_key(hsm: Hsm) -> None:
    template = {**templates.trusted_wrapping_key_by_so("x", b"x"), Attribute.PRIVATE: True}
    template[Attribute.VALUE] = bytes(32)
    with pytest.raises(p11e.AttributeReadOnly):
        hsm.pkcs11_session.create_object(template)


def test_the_so_can_make_public_objects_only(hsm: Hsm, token: TestToken) -> None:
    hsm.close()  # the SO cannot log in beside the user (login is per application)
    so = hsm.open_session(so_pin=token.so_pin)
    try:
        template = {**templates.trusted_wrapping_key_by_so("x", b"x"), Attribute.VALUE: bytes(32)}
        with pytest.raises(p11e.UserNotLoggedIn):
            so.create_object({**template, Attribute.PRIVATE: True})
        made = so.create_object(template)
        assert made[Attribute.TRUSTED] is True and made[Attribute.PRIVATE] is False
    finally:
        so.close()


def test_the_so_cannot_log_in_beside_the_user(hsm: Hsm, token: TestToken) -> None:
    with pytest.raises(p11e.AnotherUserAlreadyLoggedIn):
        hsm.open_session(so_pin=token.so_pin)


# --- the trusted backup key -----------------------------------------------------------------------


def test_the_backup_key_is_trusted_private_unmodifiable_and_only_wraps(
    hsm: Hsm, token: TestToken
) -> None:
    value = _value()
    expected_kcv = check_value(value)
    key = _trusted(hsm, token, value)
    wanted = {
        Attribute.TRUSTED: True,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.MODIFIABLE: False,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.WRAP: True,
        Attribute.UNWRAP: False,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
    }
    assert {a: _attribute(hsm, key, a) for a in wanted} == wanted
    assert hsm.check_value(key).hex().upper() == expected_kcv
    with pytest.raises(HsmError):
        hsm.read_value(key)
    # The SO's session object is gone: one object carries the label, the private token key.
    assert len(list(hsm.pkcs11_session.get_objects({Attribute.LABEL: LABEL}))) == 1


def test_the_backup_key_never_reaches_the_disk_in_clear(hsm: Hsm, token: TestToken) -> None:
    value = _value()
    raw = bytes(value)
    _trusted(hsm, token, value)
    for path in _token_files():
        data = path.read_bytes()
        assert raw not in data and raw.hex().encode() not in data, path


def test_the_user_login_survives_the_so_ceremony(hsm: Hsm, token: TestToken) -> None:
    hsm.create_binding_key("kms-binding-v1", b"b")
    before = hsm.mac(TokenKey("kms-binding-v1"), b"data")
    _trusted(hsm, token, _value())
    assert hsm.mac(TokenKey("kms-binding-v1"), b"data") == before
    assert len(hsm.random(8)) == 8


def test_a_wrong_so_pin_makes_nothing_and_the_user_stays_logged_in(
    hsm: Hsm, token: TestToken
) -> None:
    with pytest.raises(PinIncorrect, match="SO PIN"):
        hsm.create_trusted_wrapping_key(Pin("not-" + token.so_pin), LABEL, b"x", _value())
    assert not hsm.has_token_key(TokenKey(LABEL))
    assert not list(hsm.pkcs11_session.get_objects({Attribute.LABEL: LABEL}))
    assert len(hsm.random(8)) == 8


def test_the_so_cannot_log_in_while_another_hsm_holds_the_login(
    hsm: Hsm, token: TestToken, kms_config: Config
) -> None:
    sharer = Hsm(kms_config)  # shares the login the `hsm` fixture holds
    try:
        with pytest.raises(HsmError, match="process of its own"):
            _trusted(sharer, token, _value())
        assert not hsm.has_token_key(TokenKey(LABEL))
        assert len(sharer.random(8)) == 8 and len(hsm.random(8)) == 8
    finally:
        sharer.close()


# --- CA keys leave only under the trusted key -----------------------------------------------------


def _ca_key(hsm: Hsm, curve: str = "P-256", *, backup: bool = True) -> TokenKey:
    return hsm.create_ec_key_pair(CA, CA.encode(), curve, backup=backup)


def test_a_ca_key_is_not_wrapped_under_a_key_that_is_not_trusted(hsm: Hsm) -> None:
    ca = _ca_key(hsm)
    untrusted = hsm.create_transport_key("kms-untrusted", b"u", None, 32)  # WRAP, not TRUSTED
    with pytest.raises(HsmError, match="CKA_TRUSTED"):
        hsm.wrap_private_key(untrusted, ca)


def test_a_key_made_without_backup_is_not_wrapped_even_under_the_trusted_key(
    hsm: Hsm, token: TestToken
) -> None:
    trusted = _trusted(hsm, token, _value())
    with pytest.raises(HsmError, match="not extractable"):
        hsm.wrap_private_key(trusted, _ca_key(hsm, backup=False))


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_the_backup_is_rfc5649_over_pkcs8_of_the_ca_key(
    hsm: Hsm, token: TestToken, curve: str
) -> None:
    value = _value()
    known = bytes(value)
    trusted = _trusted(hsm, token, value)
    ca = _ca_key(hsm, curve)
    wrapped = hsm.wrap_private_key(trusted, ca)
    padded = aes_key_unwrap_with_padding(known, wrapped)
    # SoftHSM zero-pads the PKCS#8 to a multiple of 8 before RFC 5649 (measured): cut at the DER.
    assert len(padded) % 8 == 0
    der = padded[: padded[1] + 2]
    assert not any(padded[len(der) :])
    private = serialization.load_der_private_key(der, None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert _spki(private) == hsm.public_key_der(ca)


# --- restore into another token -------------------------------------------------------------------


def _restore(target: Hsm, value: bytes, wrapped: bytes, public_der: bytes) -> TokenKey:
    unwrapping = target.load_unwrapping_key(bytearray(value))
    try:
        key = target.unwrap_private_key(unwrapping, wrapped, CA, CA.encode())
    finally:
        target.destroy(unwrapping)
    target.create_public_key(CA, CA.encode(), public_der)
    return key


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_a_backup_restores_into_another_token_and_signs(
    hsm: Hsm, token: TestToken, spare: SpareToken, curve: str
) -> None:
    value = _value()
    known = bytes(value)
    ca = _ca_key(hsm, curve)
    public_der = hsm.public_key_der(ca)
    wrapped = hsm.wrap_private_key(_trusted(hsm, token, value), ca)
    target = Hsm(spare.config)
    try:
        restored = _restore(target, known, wrapped, public_der)
        attributes = target.attributes(restored)
        assert (attributes["token"], attributes["sensitive"]) == (True, True)
        assert (attributes["extractable"], attributes["wrap_with_trusted"]) == (True, True)
        assert _attribute(target, restored, Attribute.MODIFIABLE) is False
        assert target.public_key_der(restored) == public_der
        hash_ = hashes.SHA256() if curve == "P-256" else hashes.SHA384()
        digest = hashes.Hash(hash_)
        digest.update(b"signed by the restored CA key")
        message_hash = digest.finalize()
        raw = target.sign_digest(restored, message_hash)
        half = len(raw) // 2
        signature = encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        public = serialization.load_der_public_key(public_der)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, message_hash, ec.ECDSA(Prehashed(hash_)))
        # No session object stays behind: one private and one public object carry the label.
        found = list(target.pkcs11_session.get_objects({Attribute.LABEL: CA}))
        assert sorted(o[Attribute.CLASS] for o in found) == sorted(
            [ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY]
        )
    finally:
        target.close()


def test_a_standard_rfc5649_pkcs8_blob_restores_too(spare: SpareToken) -> None:
    value = secrets.token_bytes(32)
    private = ec.generate_private_key(ec.SECP384R1())
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    target = Hsm(spare.config)
    try:
        restored = _restore(target, value, aes_key_wrap_with_padding(value, pkcs8), _spki(private))
        assert target.public_key_der(restored) == _spki(private)
        assert target.resolve(restored)[Attribute.KEY_TYPE] == KeyType.EC
    finally:
        target.close()


def _damaged(wrapped: bytes) -> list[bytes]:
    flipped = bytearray(wrapped)
    flipped[len(flipped) // 2] ^= 0x01
    return [bytes(flipped), wrapped[:-8], wrapped[:8]]


def test_a_wrong_key_or_a_damaged_blob_is_invalid_unwrap_and_leaves_nothing(
    hsm: Hsm, token: TestToken, spare: SpareToken
) -> None:
    value = _value()
    known = bytes(value)
    wrapped = hsm.wrap_private_key(_trusted(hsm, token, value), _ca_key(hsm))
    target = Hsm(spare.config)
    try:
        cases = [(secrets.token_bytes(32), wrapped)] + [(known, bad) for bad in _damaged(wrapped)]
        for key_value, blob in cases:
            unwrapping = target.load_unwrapping_key(bytearray(key_value))
            with pytest.raises(InvalidUnwrap):
                target.unwrap_private_key(unwrapping, blob, CA, CA.encode())
            target.destroy(unwrapping)
        assert not list(target.pkcs11_session.get_objects({Attribute.LABEL: CA}))
    finally:
        target.close()
