"""Certification requests: RFC 2986 (PKCS #10 v1.7) as a meter returns one from security setup
method 5, ``generate_certificate_request`` (docs/dlms-security.md section 4: DER, subject
``CN=<hex system title>``), with the key and algorithm rules of the Green Book profile (section 6).

A CSR is untrusted input from a device. :func:`load_csr` decodes it strictly, checks its key and
signature algorithm against the profile, verifies the self-signature (proof that the meter holds
the private key) and pulls out the system title. The KMS then issues a certificate built from
the system title and the key, never from the CSR's subject or requested attributes, so nothing
else in the CSR can reach a certificate.

Decisions:

* The subject CN may be upper- or lower-case hex. Gurux writes upper case; the certificate gets
  the canonical upper-case subject either way (:func:`kms.pki.names.name_system_title_any_case`).
* The signature hash must be the one of the key's curve (SHA-256 for a P-256 key, SHA-384 for
  P-384), because the suite fixes both and Gurux pairs them so.
* CSRs of the exact shape meters send (version 0, subject ``CN=<16 hex characters>`` only, an
  uncompressed key, no attributes, the curve's own hash) are decoded by hand, each tag, length
  and OID compared, because the asn1crypto decode costs as much as the signature check; every
  other CSR goes through the strict decoder, which words the refusals. Both end in the same
  signature check and give the same answer for the same bytes.
* Only the uncompressed EC point form (04 || x || y) is taken; compressed and hybrid points are
  refused: DLMS carries public keys as x || y (security setup methods 3 to 5), so a certificate
  with another form would be one that Gurux, and likely a meter, cannot read. RFC 5480 allows
  compressed points; the profile here does not.
* A signature whose r or s is encoded as a negative INTEGER (gurux-dlms 1.0.203 omits the 0x00
  pad when the top bit is set, so about three CSRs in four) is not a valid ECDSA signature and
  fails as :class:`~kms.errors.InvalidSignature`, as it does in OpenSSL and pyca.

Exports:

* :class:`CertificateRequest` -- what the KMS keeps of a verified CSR.
* :func:`load_csr` -- DER or PEM to a verified :class:`CertificateRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import core, csr, keys, x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.phases import NO_PHASES, Phases
from kms.pki._asn1 import HASH_OF_ALGORITHM, SIGNATURE_ALGORITHMS, decode_der, is_pem, pem_blocks
from kms.pki._der import DerError, read_header
from kms.pki.ecdsa import Verifier, hash_for_curve, public_key_curve
from kms.pki.names import SYSTEM_TITLE_LENGTH, name_system_title_any_case

__all__ = ["CertificateRequest", "load_csr"]

_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
_WHAT = "CSR"
#: The phase (:mod:`kms.phases`) of the self-signature check.
SIGNATURE_PHASE = "CSR: signature verify (pyca)"
_SEQUENCE, _BIT_STRING = 0x30, 0x03


@dataclass(frozen=True)
class CertificateRequest:
    """A CSR whose signature verified and whose key and subject fit the profile.

    ``der`` is the request as received (the DER inside a PEM), kept for the audit trail;
    ``curve`` is ``"P-256"`` or ``"P-384"``.
    """

    der: bytes
    subject: x509.Name
    system_title: bytes
    public_key: keys.PublicKeyInfo
    curve: str


def load_csr(
    data: bytes, source: str | None = None, *, phases: Phases = NO_PHASES
) -> CertificateRequest:
    """The verified request in ``data`` (DER, or PEM labelled CERTIFICATE REQUEST).

    Raises :class:`~kms.errors.InputError` for bytes that are not a strict PKCS #10 structure
    (``source`` is named), :class:`~kms.errors.CertificateProfileError` for a key, algorithm or
    subject the profile forbids, and :class:`~kms.errors.InvalidSignature` when the
    self-signature does not verify. The self-signature check is reported to ``phases`` as
    ``"CSR: signature verify (pyca)"`` (:mod:`kms.phases`).
    """
    if is_pem(data):
        blocks = pem_blocks(data, _LABELS, _WHAT, source)
        if len(blocks) != 1:
            raise InputError(f"{_WHAT}: {len(blocks)} PEM blocks, expected one", source=source)
        data = blocks[0]
    plain = _plain(data) if isinstance(data, bytes | bytearray) else None
    if plain is not None:
        return _plain_request(bytes(data), plain, source, phases)
    return _decoded_request(data, source, phases)


def _plain_request(
    data: bytes,
    parts: tuple[bytes, bytes, bytes, str, str, bytes],
    source: str | None,
    phases: Phases,
) -> CertificateRequest:
    """A CSR of the common shape (:func:`_plain`): only the signature is left to check; the
    asn1crypto subject and key are loaded lazily, for whoever reads them."""
    info_der, subject, public_key_der, curve, hash_name, signature = parts
    with phases.phase(SIGNATURE_PHASE):
        _check_signature(
            lambda: Verifier.from_der(public_key_der, curve), signature, info_der, hash_name, source
        )
    return CertificateRequest(
        der=data,
        subject=x509.Name.load(subject),
        system_title=bytes.fromhex(subject[-2 * SYSTEM_TITLE_LENGTH :].decode("ascii")),
        public_key=keys.PublicKeyInfo.load(public_key_der),
        curve=curve,
    )


def _decoded_request(data: bytes, source: str | None, phases: Phases) -> CertificateRequest:
    """Any other CSR, through the strict decoder: every rule checked in turn and named."""
    request = decode_der(csr.CertificationRequest, data, _WHAT, source)
    info = request["certification_request_info"]
    version = info["version"].native
    if version != "v1":
        raise InputError(
            f"{_WHAT}: version field is {version}, RFC 2986 defines only 0 (v1)", source=source
        )

    public_key = info["subject_pk_info"]
    try:
        curve = public_key_curve(public_key)
    except CertificateProfileError as error:
        raise CertificateProfileError(f"CSR {error.message}") from None
    point = public_key["public_key"].native
    if point[:1] != b"\x04":
        form = "a compressed" if point[:1] in (b"\x02", b"\x03") else "a hybrid or unknown"
        raise CertificateProfileError(
            f"CSR public key is {form} {curve} point (first byte {point[:1].hex() or 'none'}); "
            "the profile takes the uncompressed form 04 || x || y (DLMS carries keys as x || y, "
            "and Gurux reads no other)"
        )
    algorithm = request["signature_algorithm"]
    name = algorithm["algorithm"].native
    if name not in SIGNATURE_ALGORITHMS:
        raise CertificateProfileError(
            f"CSR signature algorithm {name} is not ecdsa-with-SHA256 or ecdsa-with-SHA384"
        )
    if not isinstance(algorithm["parameters"], core.Void):
        raise CertificateProfileError(
            "CSR signature algorithm parameters are present (RFC 5758 3.2: must be absent)"
        )
    hash_name = HASH_OF_ALGORITHM[name]
    if hash_name != hash_for_curve(curve):
        raise CertificateProfileError(
            f"CSR for a {curve} key is signed with {SIGNATURE_ALGORITHMS[name]}; "
            f"the suite pairs {curve} with {hash_for_curve(curve).upper()}"
        )
    with phases.phase(SIGNATURE_PHASE):
        _check_signature(
            lambda: Verifier(public_key),
            request["signature"].native,
            bytes(info.dump()),
            hash_name,
            source,
        )
    try:
        system_title = name_system_title_any_case(info["subject"])
    except CertificateProfileError as error:
        raise CertificateProfileError(f"CSR {error.message}") from None
    return CertificateRequest(
        der=bytes(data),
        subject=info["subject"],
        system_title=system_title,
        public_key=public_key,
        curve=curve,
    )


def _check_signature(
    verifier: Callable[[], Verifier],
    signature: bytes,
    info_der: bytes,
    hash_name: str,
    source: str | None,
) -> None:
    """The self-signature, proof that the meter holds the key; a key that is no point on its
    curve is bad input (the verifier is made here so that its error is worded alike)."""
    try:
        verifier().verify(signature, info_der, hash_name)
    except InvalidSignature:
        raise InvalidSignature("CSR signature does not verify") from None
    except InputError as error:
        raise InputError(f"{_WHAT}: {error.message}", source=source) from None


# --- the common shape, decoded by hand --------------------------------------------------------

#: SubjectPublicKeyInfo up to the point, for an uncompressed point: id-ecPublicKey with the
#: named curve, then the BIT STRING header, no unused bits and the 04 of SEC 1 2.3.3.
_KEY_PREFIXES = {
    bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004"): "P-256",
    bytes.fromhex("3076301006072a8648ce3d020106052b8104002203620004"): "P-384",
}
_KEY_LENGTHS = {"P-256": 91, "P-384": 120}
#: Name of one RDN holding one commonName of 16 characters, as UTF8String or PrintableString.
_SUBJECT_PREFIXES = (
    bytes.fromhex("301b3119301706035504030c10"),
    bytes.fromhex("301b3119301706035504031310"),
)
_SUBJECT_LENGTH = 29
_VERSION_1 = bytes.fromhex("020100")
_NO_ATTRIBUTES = bytes.fromhex("a000")
#: signatureAlgorithm ecdsa-with-SHA256 / -SHA384, parameters absent (RFC 5758 3.2).
_ALGORITHMS = {
    bytes.fromhex("300a06082a8648ce3d040302"): "sha256",
    bytes.fromhex("300a06082a8648ce3d040303"): "sha384",
}
_HEX = frozenset(b"0123456789ABCDEFabcdef")


def _plain(data: bytes | bytearray) -> tuple[bytes, bytes, bytes, str, str, bytes] | None:
    """The parts of a CSR of exactly the shape meters send, or None for anything else:
    (DER CertificationRequestInfo, DER subject, DER subjectPublicKeyInfo, curve, hash name,
    DER signature).

    Why: decoding a CSR with asn1crypto (strict, every field forced) costs about as much as
    verifying its signature. A meter's CSR is version 0, ``CN=<16 hex characters>`` and nothing
    else in the subject, an uncompressed P-256 or P-384 key, no attributes, and the signature
    algorithm of the key's curve. Bytes of exactly that shape -- every tag, length (minimal, DER)
    and OID compared here -- are what the strict decoder accepts and reads the same way; anything
    else, however slightly different, returns None and goes through the decoder and its error
    messages (tests/pki/test_csr_fast.py holds the two to the same answers).
    """
    data = bytes(data)
    try:
        tag, start, end = read_header(data, 0, len(data))
        info_tag, info_start, info_end = read_header(data, start, len(data))
        algorithm_end = read_header(data, info_end, len(data))[2]
        signature_tag, signature_start, signature_end = read_header(data, algorithm_end, len(data))
    except DerError:
        return None
    if tag != _SEQUENCE or info_tag != _SEQUENCE or end != len(data) or signature_end != end:
        return None
    hash_name = _ALGORITHMS.get(data[info_end:algorithm_end])
    signature = data[signature_start:signature_end]
    if hash_name is None or signature_tag != _BIT_STRING or signature[:1] != b"\x00":
        return None
    subject_end = info_start + len(_VERSION_1) + _SUBJECT_LENGTH
    if data[info_start : subject_end - _SUBJECT_LENGTH] != _VERSION_1:
        return None
    subject = data[subject_end - _SUBJECT_LENGTH : subject_end]
    title = subject[len(_SUBJECT_PREFIXES[0]) :]
    if subject[: len(_SUBJECT_PREFIXES[0])] not in _SUBJECT_PREFIXES or not _HEX.issuperset(title):
        return None
    key_prefix = next((k for k in _KEY_PREFIXES if data.startswith(k, subject_end)), None)
    if key_prefix is None:
        return None
    curve = _KEY_PREFIXES[key_prefix]
    key_end = subject_end + _KEY_LENGTHS[curve]
    if data[key_end:info_end] != _NO_ATTRIBUTES or hash_name != hash_for_curve(curve):
        return None
    return data[start:info_end], subject, data[subject_end:key_end], curve, hash_name, signature[1:]
