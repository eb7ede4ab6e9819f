"""ECDSA signatures: SEC 1 v2.0 section 4.1 (the scheme), RFC 3279 section 2.2.3 (the DER
``Ecdsa-Sig-Value``, a SEQUENCE of two INTEGERs r and s) and FIPS 186-4 (curves P-256, P-384).

DLMS keeps signatures as raw ``r || s`` (64 bytes on P-256, 96 on P-384; notes section 1) and a
PKCS#11 token's CKM_ECDSA returns the same form, while X.509 certificates, CSRs and CRLs carry
the DER form. This module converts between the two, hashes with the hash that belongs to the
signing key's curve (SHA-256 for P-256, SHA-384 for P-384: the signature algorithm follows the
signer's key, notes section 11), and verifies with pyca/cryptography. It never holds a private
key: signing is delegated to a :class:`Signer`, which in production is a token object.

Exports:

* :class:`Signer` -- the protocol of a signing key (its curve and a raw ``sign_digest``).
* :func:`hash_for_curve` / :func:`digest` -- the hash of a curve, by name and applied.
* :func:`der_from_raw` / :func:`raw_from_der` -- ``r || s`` to DER and back, strictly.
* :func:`sign` -- a DER signature over data, made by a :class:`Signer`.
* :func:`verify` -- raises :class:`~kms.errors.InvalidSignature`, never returns False;
  :class:`Verifier` -- the same with one key loaded once.
* :func:`public_key_curve` -- "P-256" or "P-384" of a SubjectPublicKeyInfo, or a profile error.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from asn1crypto import algos, keys  # type: ignore[import-untyped, unused-ignore]
from cryptography import exceptions as pyca_exceptions
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki._asn1 import ASN1_ERRORS

__all__ = [
    "CURVES",
    "Signer",
    "Verifier",
    "der_from_raw",
    "digest",
    "hash_for_curve",
    "public_key_curve",
    "public_point",
    "raw_from_der",
    "sign",
    "verify",
]

#: The curves of the Green Book suites (notes section 1): name -> (asn1crypto named curve,
#: hash, length of r and of s in bytes).
CURVES: dict[str, tuple[str, str, int]] = {
    "P-256": ("secp256r1", "sha256", 32),
    "P-384": ("secp384r1", "sha384", 48),
}
_BY_NAMED_CURVE = {named: curve for curve, (named, _, _) in CURVES.items()}
_PYCA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
}


class Signer(Protocol):
    """A private key that signs a digest, e.g. an EC key in a PKCS#11 token used with CKM_ECDSA.

    The signer only sees a digest, so the hash is chosen here (by :attr:`curve`) and not by
    whoever implements the token side.
    """

    @property
    def curve(self) -> str:
        """The key's curve: ``"P-256"`` or ``"P-384"``."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """The raw ``r || s`` signature of ``digest``: 64 bytes on P-256, 96 on P-384."""
        ...


def _curve_entry(curve: str) -> tuple[str, str, int]:
    try:
        return CURVES[curve]
    except (KeyError, TypeError):
        raise ValueError(f"unsupported curve {curve!r}; expected P-256 or P-384") from None


def hash_for_curve(curve: str) -> str:
    """The hashlib name of the hash used with ``curve``: ``"sha256"`` or ``"sha384"``."""
    return _curve_entry(curve)[1]


def digest(curve: str, data: bytes) -> bytes:
    """``data`` hashed with the hash of ``curve``."""
    return hashlib.new(hash_for_curve(curve), bytes(data)).digest()


def der_from_raw(raw: bytes) -> bytes:
    """The DER ``Ecdsa-Sig-Value`` of a raw ``r || s`` signature (two halves of equal length).

    An odd or empty length cannot be split into r and s and is a caller bug (``ValueError``).
    """
    raw = bytes(raw)
    if not raw or len(raw) % 2:
        raise ValueError(
            f"raw ECDSA signature must be r || s of equal halves, got {len(raw)} bytes"
        )
    half = len(raw) // 2
    body = _der_unsigned(raw[:half]) + _der_unsigned(raw[half:])
    return b"\x30" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _der_unsigned(magnitude: bytes) -> bytes:
    """The DER INTEGER of a big-endian unsigned number, written out rather than through
    asn1crypto because a batch of certificates encodes one signature each (X.690 8.3: minimal
    octets, a 0x00 in front when the top bit is set)."""
    content = magnitude.lstrip(b"\x00") or b"\x00"
    if content[0] & 0x80:
        content = b"\x00" + content
    return b"\x02" + _der_length(len(content)) + content


def raw_from_der(der: bytes, curve: str) -> bytes:
    """The fixed-width ``r || s`` of a DER ``Ecdsa-Sig-Value`` made on ``curve``.

    Strict: a negative or oversized integer, trailing bytes or a non-minimal encoding raise
    :class:`~kms.errors.InputError`, since a lax decoder would give one signature several
    encodings.
    """
    width = _curve_entry(curve)[2]
    der = bytes(der)
    try:
        parsed = algos.DSASignature.load(der, strict=True)
        r, s = parsed["r"].native, parsed["s"].native
    except ASN1_ERRORS:
        raise InputError("ECDSA signature: bad DER Ecdsa-Sig-Value") from None
    for label, value in (("r", r), ("s", s)):
        if not isinstance(value, int) or value <= 0:
            raise InputError(f"ECDSA signature: {label} is not a positive INTEGER")
        if value.bit_length() > 8 * width:
            raise InputError(f"ECDSA signature: {label} is longer than {curve} allows")
    if algos.DSASignature({"r": r, "s": s}).dump() != der:
        raise InputError("ECDSA signature: not DER (non-minimal INTEGER or length encoding)")
    return bytes(r.to_bytes(width, "big") + s.to_bytes(width, "big"))


def sign(signer: Signer, data: bytes) -> bytes:
    """The DER ECDSA signature of ``data``, hashed by the signer's curve.

    A raw signature of the wrong length means the signer is not the key it claims to be (a
    P-384 token key behind a signer that says P-256); that is a configuration bug, ``ValueError``.
    """
    curve = signer.curve
    width = _curve_entry(curve)[2]
    raw = bytes(signer.sign_digest(digest(curve, data)))
    if len(raw) != 2 * width:
        raise ValueError(f"a {curve} signer returned {len(raw)} bytes, expected {2 * width}")
    return der_from_raw(raw)


def public_key_curve(public_key: keys.PublicKeyInfo) -> str:
    """``"P-256"`` or ``"P-384"``: the named curve of an id-ecPublicKey SubjectPublicKeyInfo.

    Anything else breaks the Green Book profile (notes section 6) and raises
    :class:`~kms.errors.CertificateProfileError` naming the algorithm or curve found.
    """
    if not isinstance(public_key, keys.PublicKeyInfo):
        raise TypeError(f"expected a PublicKeyInfo, not {type(public_key).__name__}")
    algorithm = public_key["algorithm"]
    name = algorithm["algorithm"].native
    if name != "ec":
        raise CertificateProfileError(
            f"public key algorithm is {name}, not id-ecPublicKey (P-256 or P-384)"
        )
    parameters = algorithm["parameters"]
    if parameters.name != "named":
        raise CertificateProfileError(
            f"public key curve is given as {parameters.name} parameters, not as a named curve "
            "(P-256 or P-384)"
        )
    named = parameters.chosen.native
    curve = _BY_NAMED_CURVE.get(named)
    if curve is None:
        raise CertificateProfileError(f"public key curve {named} is not P-256 or P-384")
    return curve


def public_point(public_key: keys.PublicKeyInfo) -> bytes:
    """The raw ``x || y`` of an EC public key (its uncompressed point without the 04 prefix):
    the form DLMS key agreement carries and :meth:`kms.hsm.Hsm.agree_key` takes. The point is
    checked to be on its curve (:class:`~kms.errors.InputError` otherwise)."""
    key = _pyca_public_key(public_key)
    encoded = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return encoded[1:]


def _pyca_public_key(public_key: keys.PublicKeyInfo) -> ec.EllipticCurvePublicKey:
    return _load_public_key(bytes(public_key.dump()), public_key_curve(public_key))


def _load_public_key(der: bytes, curve: str) -> ec.EllipticCurvePublicKey:
    try:
        loaded = serialization.load_der_public_key(der)
    except (ValueError, pyca_exceptions.UnsupportedAlgorithm):
        raise InputError(f"public key: not a valid {curve} point") from None
    if not isinstance(loaded, ec.EllipticCurvePublicKey):  # pragma: no cover - checked above
        raise InputError("public key: not an EC key")
    return loaded


def verify(
    public_key: keys.PublicKeyInfo, signature_der: bytes, data: bytes, hash_name: str
) -> None:
    """Check the DER ECDSA ``signature_der`` over ``data`` with ``public_key``, hashing with
    ``hash_name`` (``"sha256"`` or ``"sha384"``, taken from the signed object's algorithm).

    Raises :class:`~kms.errors.InvalidSignature` for a signature that does not verify, including
    one that is not even DER: an authenticity failure says nothing of why. A non-EC key or an
    unsupported curve is a :class:`~kms.errors.CertificateProfileError`, and a key that is not a
    point on its curve an :class:`~kms.errors.InputError`.
    """
    _hash(hash_name)
    Verifier(public_key).verify(signature_der, data, hash_name)


def _hash(hash_name: str) -> hashes.HashAlgorithm:
    try:
        return _PYCA_HASHES[hash_name]
    except (KeyError, TypeError):
        raise ValueError(f"unsupported hash {hash_name!r}; expected sha256 or sha384") from None


class Verifier:
    """One public key for many :func:`verify` calls: a batch of certificates is checked against
    one issuer, whose key is then decoded and its point validated once, not per certificate."""

    def __init__(self, public_key: keys.PublicKeyInfo) -> None:
        self._key = _pyca_public_key(public_key)

    @classmethod
    def from_der(cls, public_key_der: bytes, curve: str) -> Verifier:
        """A verifier of a DER SubjectPublicKeyInfo whose algorithm and named curve the caller
        has already matched byte for byte (:mod:`kms.pki.csr`'s hand decoder): the same errors
        as the constructor, without decoding the structure with asn1crypto first."""
        verifier = cls.__new__(cls)
        verifier._key = _load_public_key(bytes(public_key_der), curve)
        return verifier

    def verify(self, signature_der: bytes, data: bytes, hash_name: str) -> None:
        """As :func:`verify` with this key."""
        algorithm = ec.ECDSA(_hash(hash_name))
        try:
            self._key.verify(bytes(signature_der), bytes(data), algorithm)
        except (pyca_exceptions.InvalidSignature, ValueError):
            raise InvalidSignature("signature does not verify") from None
