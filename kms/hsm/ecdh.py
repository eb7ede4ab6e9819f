"""EC key agreement in the token: NIST SP 800-56A Rev. 3, ECC CDH (section 5.7.1.2) and the
one-step concatenation KDF (section 5.8.2.1 with a hash), as DLMS security suites 1 and 2 use
them (Green Book Ed. 8.x key agreement; docs/dlms-security.md section 5).

Suite 1 is P-256 with SHA-256 and suite 2 P-384 with SHA-384. After ECDH gives Z, the
x-coordinate of the shared point (32 or 48 bytes; the cofactor is 1), the key is::

    DerivedKey = leftmost key_length bytes of Hash(00000001 || Z || OtherInfo)

What SoftHSM 2.6.1 does and does not do decides the shape (measured, docs/token.md section 9):

* ``CKM_ECDH1_DERIVE`` takes only ``CKD_NULL`` (``CKD_SHA256_KDF`` answers
  ``CKR_MECHANISM_PARAM_INVALID``), so the token gives Z itself, as a generic-secret object.
* The peer's public key goes in as the uncompressed point ``04 || x || y``, the form PKCS#11
  requires every token to accept. SoftHSM also takes it DER-wrapped (``04 41 04 || x || y``), but
  refuses DLMS's bare ``x || y`` (``CKR_GENERAL_ERROR``). It refuses a point off the curve with
  the same bare error, so :func:`peer_point` checks the point with pyca/cryptography first and a
  bad one is an :class:`~kms.errors.InputError` that never reaches the token.
* A shorter ``CKA_VALUE_LEN`` on the derived object keeps the *rightmost* bytes of Z, so Z is
  always derived at its full length.
* ``CKA_EC_POINT`` comes back as a DER OCTET STRING around ``04 || x || y``.

The KDF runs where the profile's ``[flags] kdf`` says (:data:`kms.hsm.profile.KDF_LOCATIONS`):

``digest_key`` ("token-digest" in the audit record)
    Z is sensitive and unextractable; ``C_DigestInit``, ``C_DigestUpdate(counter)``,
    ``C_DigestKey(Z)``, ``C_DigestUpdate(OtherInfo)``, ``C_DigestFinal`` run in the token, so Z
    never leaves it. Only the digest, the derived key's bytes, comes out.
``host``
    Z is derived readable, read once into a ``bytearray``, hashed with :mod:`hashlib` and
    zeroised: the audited fallback for a token whose ``C_DigestKey`` cannot take it.

Either way the derived key goes straight back in as a sensitive session object, with the
template of the caller's :class:`~kms.hsm.templates.KeyUse`, and the host's ``bytearray`` is
zeroised; the Z object is destroyed. The bytes python-pkcs11 itself returns (the digest, a
readable Z) and packs (``CKA_VALUE``) are immutable copies the KMS cannot wipe: they are dropped
at once and never logged, as with every other value the adapter reads.

Exports: :data:`COUNTER`, :data:`CURVES`, :class:`Curve`, :class:`AgreedKey`, :func:`curve`,
:func:`peer_point`, :func:`point_from_attribute`, and the operations :class:`kms.hsm.Hsm` offers
as methods (:func:`generate_ephemeral_key_pair`, :func:`create_key_agreement_key_pair`,
:func:`public_point`, :func:`load_known_ephemeral_key`, :func:`agree_key`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import KDF, Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.util.ec import encode_named_curve_parameters

from kms import errors
from kms.hsm import templates
from kms.hsm._token_access import TokenAccess
from kms.hsm.session import Key, SessionKey, TokenKey
from kms.hsm.templates import KeyUse
from kms.memory import zeroise

__all__ = [
    "AGREED_KEY_USES",
    "COUNTER",
    "CURVES",
    "KDF_LOCATION_HOST",
    "KDF_LOCATION_TOKEN",
    "AgreedKey",
    "Curve",
    "agree_key",
    "create_key_agreement_key_pair",
    "curve",
    "generate_ephemeral_key_pair",
    "load_known_ephemeral_key",
    "peer_point",
    "point_from_attribute",
    "public_point",
]

#: The 32-bit big-endian counter of the KDF's single hash block (SP 800-56A 5.8.2.1).
COUNTER = b"\x00\x00\x00\x01"

#: ``AgreedKey.kdf_location`` values, for the audit record.
KDF_LOCATION_TOKEN = "token-digest"  # noqa: S105 - a place, not a password
KDF_LOCATION_HOST = "host"

#: Uses an agreed key may be made for: AES keys that cipher or wrap. ``*_FOR_USE`` never leave the
#: token again; ``EK``, ``AK`` and ``KEK`` are extractable, to be sealed under the storage key when
#: the agreed key becomes a meter's stored key (security setup method 3; the AK is AAD material
#: with no mechanism of its own, so its session object can do nothing but be wrapped).
AGREED_KEY_USES = (KeyUse.EK_FOR_USE, KeyUse.KEK_FOR_USE, KeyUse.EK, KeyUse.KEK, KeyUse.AK)


@dataclass(frozen=True)
class Curve:
    """A curve of DLMS key agreement and the KDF hash its suite pairs with it."""

    name: str
    coordinate_length: int
    #: The profile job naming the digest mechanism of the in-token KDF.
    digest_job: str
    #: The :mod:`hashlib` name of the same hash, for the host KDF.
    hash_name: str
    hash_length: int
    #: DER of the named curve's OID (``CKA_EC_PARAMS``).
    ec_params: bytes
    pyca: ec.EllipticCurve


CURVES = {
    "P-256": Curve(
        "P-256",
        32,
        "kdf_digest_256",
        "sha256",
        32,
        bytes(encode_named_curve_parameters("secp256r1")),
        ec.SECP256R1(),
    ),
    "P-384": Curve(
        "P-384",
        48,
        "kdf_digest_384",
        "sha384",
        48,
        bytes(encode_named_curve_parameters("secp384r1")),
        ec.SECP384R1(),
    ),
}


@dataclass(frozen=True)
class AgreedKey:
    """A key agreed with a peer: the session key, and where its KDF ran (for the audit record:
    ``"token-digest"`` or ``"host"``)."""

    key: SessionKey
    kdf_location: str


def curve(name: str) -> Curve:
    """The curve called ``name`` (``"P-256"`` or ``"P-384"``); another name is a caller bug."""
    try:
        return CURVES[name]
    except KeyError:
        raise ValueError(f"unknown curve {name!r} (expected P-256 or P-384)") from None


def peer_point(spec: Curve, peer_public: bytes) -> bytes:
    """The peer's public key ``x || y`` as ``04 || x || y``, once it is known to be on the curve.

    A wrong length, a point off the curve, a coordinate not below the field prime and the
    all-zero stand-in for the point at infinity are :class:`~kms.errors.InputError`.
    """
    if not isinstance(peer_public, bytes | bytearray):
        raise TypeError("the peer public key is bytes (x || y)")
    expected = 2 * spec.coordinate_length
    if len(peer_public) != expected:
        raise errors.InputError(
            f"{len(peer_public)} bytes; a {spec.name} public key x || y is {expected}",
            field="peer_public_key",
        )
    encoded = b"\x04" + bytes(peer_public)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(spec.pyca, encoded)
    except ValueError:
        raise errors.InputError(f"not a point on {spec.name}", field="peer_public_key") from None
    return encoded


def point_from_attribute(spec: Curve, ec_point: bytes) -> bytes:
    """``x || y`` from a public key's ``CKA_EC_POINT``: a DER OCTET STRING around the
    uncompressed point (SoftHSM), or that point bare (some other tokens)."""
    length = 1 + 2 * spec.coordinate_length  # 04 || x || y, under 128 bytes for both curves
    if len(ec_point) == length + 2 and ec_point[:2] == bytes((0x04, length)):
        ec_point = ec_point[2:]
    if len(ec_point) != length or ec_point[0] != 0x04:
        raise errors.HsmError(f"the token returned a {spec.name} public point in a form not known")
    return bytes(ec_point[1:])


# --- operations (Hsm's methods call these; each runs its token work under TokenAccess.call) ---


def generate_ephemeral_key_pair(hsm: TokenAccess, curve_name: str) -> tuple[SessionKey, bytes]:
    """An ephemeral key pair as session objects: the private half (derive only, sensitive, never
    extractable) and the public point ``x || y``. The public object is destroyed once read."""
    spec = curve(curve_name)
    mech = hsm.profile.mechanism("ec_key_pair_gen")

    def generate() -> tuple[Any, bytes]:
        params = hsm.pkcs11_session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: spec.ec_params}, local=True
        )
        public, private = params.generate_keypair(
            store=False,
            capabilities=MechanismFlag(0),
            mechanism=mech,
            public_template=templates.ephemeral_public_key(),
            private_template=templates.ephemeral_private_key(),
        )
        try:
            point = point_from_attribute(spec, bytes(public[Attribute.EC_POINT]))
        except BaseException:
            private.destroy()
            raise
        finally:
            public.destroy()
        return private, point

    private, point = hsm.call(f"generate ephemeral {spec.name} key pair", generate)
    return hsm.session_key(private, spec.coordinate_length, KeyUse.EPHEMERAL), point


def create_key_agreement_key_pair(
    hsm: TokenAccess, label: str, key_id: bytes, curve_name: str
) -> TokenKey:
    """A static key-agreement key pair as token objects (derive-only private half)."""
    spec = curve(curve_name)
    mech = hsm.profile.mechanism("ec_key_pair_gen")

    def generate() -> None:
        params = hsm.pkcs11_session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: spec.ec_params}, local=True
        )
        params.generate_keypair(
            store=True,
            capabilities=MechanismFlag(0),
            mechanism=mech,
            public_template=templates.key_agreement_public_key(label, key_id),
            private_template=templates.key_agreement_private_key(label, key_id),
        )

    hsm.call(f"generate {spec.name} key-agreement key pair", generate)
    return TokenKey(label, "private")


def public_point(hsm: TokenAccess, key: TokenKey) -> bytes:
    """``x || y`` of the public half of a token EC key pair (either half may be named)."""
    public = TokenKey(key.label, "public")

    def read() -> bytes:
        obj = hsm.resolve(public)
        spec = _curve_of(obj)
        return point_from_attribute(spec, bytes(obj[Attribute.EC_POINT]))

    return hsm.call("read public point", read, idempotent=True)


def load_known_ephemeral_key(hsm: TokenAccess, curve_name: str, value: bytes) -> SessionKey:
    """An EC private key of known value as a derive-only session object, for known-answer
    tests of key agreement only (never a real key)."""
    spec = curve(curve_name)
    if len(value) != spec.coordinate_length:
        raise ValueError(f"a {spec.name} private value is {spec.coordinate_length} bytes")
    template = templates.known_answer_ec_private_key()
    template[Attribute.EC_PARAMS] = spec.ec_params
    template[Attribute.VALUE] = bytes(value)
    obj = hsm.call("create self-test EC key", lambda: hsm.pkcs11_session.create_object(template))
    return hsm.session_key(obj, spec.coordinate_length, KeyUse.EPHEMERAL)


def agree_key(
    hsm: TokenAccess,
    private: Key,
    peer_public: bytes,
    curve_name: str,
    other_info: bytes,
    key_length: int,
    use: KeyUse,
) -> AgreedKey:
    """ECDH of ``private`` with the peer's ``x || y``, then the concatenation KDF over Z and
    ``other_info``, into a sensitive session key for ``use`` (module docstring)."""
    spec = curve(curve_name)
    if isinstance(private, SessionKey) and private.use is not KeyUse.EPHEMERAL:
        raise ValueError(f"key agreement needs an EC private key, not a {private.use.value} key")
    if isinstance(private, TokenKey) and private.object_class != "private":
        raise ValueError("key agreement needs the private half of a key pair")
    if use not in AGREED_KEY_USES:
        raise ValueError(f"an agreed key is an AES EK, AK or KEK, not a {use.value} key")
    if key_length not in (16, 32) or key_length > spec.hash_length:
        raise ValueError(f"an agreed AES key is 16 or 32 bytes, not {key_length}")
    if not isinstance(other_info, bytes | bytearray):
        raise TypeError("OtherInfo is bytes")
    derive = hsm.profile.optional_mechanism("ec_derive")
    on_host = hsm.profile.kdf == "host"
    digest = None if on_host else hsm.profile.optional_mechanism(spec.digest_job)
    point = peer_point(spec, peer_public)  # a bad point never reaches the token
    info = bytes(other_info)
    key_template = templates.session_key(use)

    def kdf_in_token(z: Any) -> bytearray:
        return bytearray(hsm.pkcs11_session.digest([COUNTER, z, info], mechanism=digest))

    def kdf_on_host(z: Any) -> bytearray:
        secret = bytearray(z[Attribute.VALUE])
        try:
            hasher = hashlib.new(spec.hash_name)
            hasher.update(COUNTER)
            hasher.update(secret)
            hasher.update(info)
            return bytearray(hasher.digest())
        finally:
            zeroise(secret)

    def agree() -> Any:
        base = hsm.resolve(private)
        if _curve_of(base) is not spec:
            raise ValueError(f"the private key is not on {spec.name}")
        z = _derive_shared_secret(base, spec, derive, point, readable=on_host)
        try:
            derived = kdf_on_host(z) if on_host else kdf_in_token(z)
        finally:
            z.destroy()
        value = memoryview(derived)[:key_length]
        try:
            return hsm.pkcs11_session.create_object({**key_template, Attribute.VALUE: value})
        finally:
            value.release()
            zeroise(derived)

    obj = hsm.call(f"agree {spec.name} key", agree)
    location = KDF_LOCATION_HOST if on_host else KDF_LOCATION_TOKEN
    return AgreedKey(hsm.session_key(obj, key_length, use), location)


def _derive_shared_secret(
    base: Any, spec: Curve, mechanism: Mechanism, point: bytes, *, readable: bool
) -> Any:
    """Z as a generic-secret session object: CKM_ECDH1_DERIVE with CKD_NULL and no shared data
    (all SoftHSM takes), at Z's full length (a shorter one keeps Z's rightmost bytes)."""
    return base.derive_key(
        KeyType.GENERIC_SECRET,
        spec.coordinate_length * 8,
        capabilities=MechanismFlag(0),
        mechanism=mechanism,
        mechanism_param=(KDF.NULL, None, point),
        template=templates.shared_secret(readable=readable),
    )


def _curve_of(obj: Any) -> Curve:
    """The curve of an EC key object, from its ``CKA_EC_PARAMS``."""
    try:
        params = bytes(obj[Attribute.EC_PARAMS])
    except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
        raise ValueError("not an EC key") from None
    for spec in CURVES.values():
        if spec.ec_params == params:
            return spec
    raise ValueError("an EC key on a curve DLMS does not use")
