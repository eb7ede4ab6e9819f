"""The public-key half of the simulated meter (suites 1 and 2): its key pairs, certificates and
HLS-ECDSA, with pyca/cryptography only. Like :mod:`tests.interop.meter`, which drives it from
action-requests, it never imports ``kms``.

Behaviour (Blue Book security setup methods 4..6, Green Book HLS mechanism 7; docs/dlms-security.md
sections 3, 4 and 6):

* Curves and hashes by suite: P-256 with SHA-256 (suite 1), P-384 with SHA-384 (suite 2); a raw
  signature is r || s of 32 or 48 bytes each.
* ``generate_key_pair`` (types 0 digital signature, 1 key agreement, 2 TLS) makes a fresh pyca key
  and drops the own certificate of that type, which no longer matches any key held.
* ``generate_certificate_request`` returns a PKCS #10 CSR in DER, subject ``CN=<16 upper-case hex
  ST>``, signed with the key pair of that type (the suite's hash); no key pair, no CSR.
* ``import_certificate`` needs X.509 v3 DER that pyca parses and encodes back to the very same
  bytes, inside its validity period now. A CA certificate (basicConstraints cA) is kept as an
  authority. Any other has a 16-hex-digit CN (a system title), a key on the suite's curve and a
  keyUsage that names its type (digitalSignature only: 0; keyAgreement only: 1; both with an
  extendedKeyUsage: 2). If its key is one of the meter's own key pairs it must name the meter's
  system title and the type that key pair was made for, and becomes the meter's own certificate;
  a certificate for the meter's system title with a key it does not hold is refused. Otherwise it
  is a peer's (the head-end's) and replaces the peer's earlier one of that type.
* Trust: once it has trust anchors (``trust_anchors``, or :meth:`MeterPki.install_trust_anchor`;
  out of band, as at manufacture: notes section 6 says anchors cannot be imported) the meter
  requires every imported certificate to be signed directly by an anchor or by an authority
  imported before it (pyca ``verify_directly_issued_by``). Without anchors the chain is not
  checked.
* HLS-ECDSA: f(CtoS) = ECDSA with the meter's signing key over ST_S || ST_C || CtoS || StoC;
  the client's f(StoC) over ST_C || ST_S || StoC || CtoS is verified with the public key of the
  client's digital-signature certificate imported by method 6.

Refusals raise :class:`PkiRefused` with the reason; :mod:`tests.interop.meter` turns them into
action-results.
"""

from __future__ import annotations

import datetime
import enum
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

__all__ = ["KeyPairType", "MeterPki", "PkiRefused"]

_CURVES: dict[int, tuple[type[ec.EllipticCurve], type[hashes.SHA256 | hashes.SHA384], int]] = {
    1: (ec.SECP256R1, hashes.SHA256, 32),
    2: (ec.SECP384R1, hashes.SHA384, 48),
}
_SYSTEM_TITLE_CN = re.compile(r"[0-9A-F]{16}")
_POINT = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


class KeyPairType(enum.IntEnum):
    """The certificate_type / key pair enum of security setup methods 4 and 5."""

    DIGITAL_SIGNATURE = 0
    KEY_AGREEMENT = 1
    TLS = 2


class PkiRefused(Exception):
    """A request the meter turns down, with the reason."""


class MeterPki:
    """Key pairs and certificates of one security setup of a suite 1 or 2 meter."""

    def __init__(
        self, system_title: bytes, suite: int, trust_anchors: tuple[bytes, ...] = ()
    ) -> None:
        if suite not in _CURVES:
            raise ValueError(f"public-key security needs suite 1 or 2, got {suite}")
        curve, hash_, width = _CURVES[suite]
        self.system_title = bytes(system_title)
        self.suite = suite
        self._curve = curve()
        self._hash = hash_()
        self._width = width
        self._key_pairs: dict[KeyPairType, ec.EllipticCurvePrivateKey] = {}
        self._own: dict[KeyPairType, x509.Certificate] = {}
        self._peers: dict[tuple[bytes, KeyPairType], x509.Certificate] = {}
        self._anchors = [x509.load_der_x509_certificate(der) for der in trust_anchors]
        self._authorities: list[x509.Certificate] = []

    # --- inspection -------------------------------------------------------------------------

    def public_key(self, kind: KeyPairType) -> bytes | None:
        """The uncompressed point 04 || x || y of the key pair of ``kind``, if there is one."""
        key = self._key_pairs.get(kind)
        return None if key is None else key.public_key().public_bytes(*_POINT)

    def own_certificate(self, kind: KeyPairType) -> bytes | None:
        cert = self._own.get(kind)
        return None if cert is None else cert.public_bytes(serialization.Encoding.DER)

    def peer_certificate(self, system_title: bytes, kind: KeyPairType) -> bytes | None:
        cert = self._peers.get((bytes(system_title), kind))
        return None if cert is None else cert.public_bytes(serialization.Encoding.DER)

    def authorities(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self._authorities]

    def install_trust_anchor(self, der: bytes) -> None:
        """Out of band, as at manufacture: from now on every import must chain to an anchor."""
        self._anchors.append(x509.load_der_x509_certificate(der))

    # --- methods 4, 5 and 6 -----------------------------------------------------------------

    def generate_key_pair(self, kind: KeyPairType) -> None:
        self._key_pairs[kind] = ec.generate_private_key(self._curve)
        self._own.pop(kind, None)

    def certificate_request(self, kind: KeyPairType) -> bytes:
        key = self._key_pairs.get(kind)
        if key is None:
            raise PkiRefused(f"no {kind.name} key pair to make a CSR for")
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, self.system_title.hex().upper())]
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, self._hash)
        return csr.public_bytes(serialization.Encoding.DER)

    def import_certificate(self, der: bytes) -> str:
        """Keep the certificate; returns where it went: "authority", "own" or "peer"."""
        try:
            cert = x509.load_der_x509_certificate(der)
            reencoded = cert.public_bytes(serialization.Encoding.DER)
        except ValueError as exc:
            raise PkiRefused(f"certificate does not parse: {exc}") from None
        if reencoded != der:
            raise PkiRefused("certificate is not DER (pyca encodes it differently)")
        if cert.version is not x509.Version.v3:
            raise PkiRefused("certificate is not X.509 v3")
        now = datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PkiRefused("certificate is outside its validity period")
        self._check_issuer(cert)
        if _is_ca(cert):
            self._authorities.append(cert)
            return "authority"
        title, kind, key = self._end_entity(cert)
        point = key.public_bytes(*_POINT)
        held = [
            k
            for k, key in self._key_pairs.items()
            if key.public_key().public_bytes(*_POINT) == point
        ]
        if held:
            if title != self.system_title:
                raise PkiRefused("certificate of an own key names another system title")
            if held[0] is not kind:
                raise PkiRefused(f"certificate of the {held[0].name} key says {kind.name}")
            self._own[kind] = cert
            return "own"
        if title == self.system_title:
            raise PkiRefused("certificate for this meter with a key it does not hold")
        self._peers[(title, kind)] = cert
        return "peer"

    def _check_issuer(self, cert: x509.Certificate) -> None:
        if not self._anchors:
            return
        for issuer in [*self._anchors, *self._authorities]:
            if issuer.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return
        raise PkiRefused("certificate is not signed by a trusted authority")

    def _end_entity(
        self, cert: x509.Certificate
    ) -> tuple[bytes, KeyPairType, ec.EllipticCurvePublicKey]:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = names[0].value if len(names) == 1 else ""
        if not isinstance(common_name, str) or not _SYSTEM_TITLE_CN.fullmatch(common_name):
            raise PkiRefused("subject CN is not a system title (16 upper-case hex digits)")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != self._curve.name:
            raise PkiRefused(f"certificate key is not on the suite {self.suite} curve")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            raise PkiRefused("end-entity certificate without keyUsage") from None
        signs, agrees = usage.value.digital_signature, usage.value.key_agreement
        try:
            cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            extended = True
        except x509.ExtensionNotFound:
            extended = False
        kinds = {
            (True, False, False): KeyPairType.DIGITAL_SIGNATURE,
            (False, True, False): KeyPairType.KEY_AGREEMENT,
            (True, True, True): KeyPairType.TLS,
        }
        kind = kinds.get((signs, agrees, extended))
        if kind is None or not usage.critical:
            raise PkiRefused("keyUsage names no certificate type (or is not critical)")
        return bytes.fromhex(common_name), kind, key

    # --- HLS-ECDSA (mechanism 7) ------------------------------------------------------------

    def f_ctos(self, client: bytes, ctos: bytes, stoc: bytes) -> bytes:
        """The meter's answer: raw r || s over ST_S || ST_C || CtoS || StoC."""
        key = self._key_pairs.get(KeyPairType.DIGITAL_SIGNATURE)
        if key is None:
            raise PkiRefused("no digital signature key pair")
        message = self.system_title + client + ctos + stoc
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(self._hash)))
        return r.to_bytes(self._width, "big") + s.to_bytes(self._width, "big")

    def check_f_stoc(self, client: bytes, stoc: bytes, ctos: bytes, f_stoc: bytes) -> None:
        """Verify the client's f(StoC) over ST_C || ST_S || StoC || CtoS with its certificate."""
        cert = self._peers.get((client, KeyPairType.DIGITAL_SIGNATURE))
        if cert is None:
            raise PkiRefused(f"no digital signature certificate for client {client.hex()}")
        if len(f_stoc) != 2 * self._width:
            raise PkiRefused(f"f(StoC) is {len(f_stoc)} bytes, not {2 * self._width}")
        der = encode_dss_signature(
            int.from_bytes(f_stoc[: self._width], "big"),
            int.from_bytes(f_stoc[self._width :], "big"),
        )
        message = client + self.system_title + stoc + ctos
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)  # checked at import
        try:
            key.verify(der, message, ec.ECDSA(self._hash))
        except InvalidSignature:
            raise PkiRefused("f(StoC) does not verify") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
