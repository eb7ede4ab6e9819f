"""General-signing (0xDF) between the head-end and a meter: sign in the token, verify with pyca.

The codec and the bytes a signature covers are :mod:`kms.dlms.general_signing` (Gurux's reading:
the content's own length octets are left out of :func:`~kms.dlms.general_signing.signed_data`).

* :meth:`GeneralSigningService.sign` wraps a content (usually an already ciphered APDU) for a known
  meter. The originator is the head-end (``client_system_title``), and the signature is made in the
  token with the KMS's own signing key of that system title (``kms entity create --type signing``)
  on the curve of the meter's suite: P-256 and SHA-256 for suite 1, P-384 and SHA-384 for suite 2.
  The digest is computed on the host (the hash is not secret) and the signature is the raw r || s.
  The transaction-id comes from the token's random number generator unless the caller gives one.
* :meth:`GeneralSigningService.verify` checks a DF from a meter. The originator must be a known
  meter, and its newest valid signing certificate on its suite's curve gives the public key
  (:func:`kms.services.common.peers.peer_public_key`). The recipient must be this head-end,
  unless the caller accepts any. The signature is checked on the host by pyca
  (:func:`kms.pki.ecdsa.verify`).

Errors: a malformed APDU raises :class:`~kms.errors.InputError` from the codec, naming the field
and offset. An unknown meter, or one without a valid signing certificate (none issued, revoked,
expired), raises :class:`~kms.errors.NotFoundError`; a retired meter
:class:`~kms.errors.ConflictError`; a suite 0 meter :class:`~kms.errors.InputError`. A DF
addressed to someone else raises :class:`~kms.errors.InputError` naming the recipient field: the
recipient is in the clear, so naming it tells nobody anything new. A signature that does not
verify, or has the wrong length for the suite, raises :class:`~kms.errors.InvalidSignature` and
says nothing about why, as HLS mechanism 7 does with its ``AuthenticationFailed``.

Nothing here is audited. As with APDU protection, one record per message would put a commit and
the audit chain's lock on every APDU. Creating and certifying the signing key is audited.
"""

from __future__ import annotations

from kms.db import MeterState, Session
from kms.db import repository as repo
from kms.dlms.general_signing import GeneralSigningApdu, parse_general_signing_apdu, signed_data
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import ConflictError, InputError, InvalidSignature, NotFoundError
from kms.pki import ecdsa, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import peers
from kms.services.common.resources import Resources

__all__ = ["TRANSACTION_ID_LENGTH", "GeneralSigningService"]

#: Bytes of a transaction-id drawn from the token when the caller gives none (Gurux uses 8).
TRANSACTION_ID_LENGTH = 8

_REFUSED = "the general-signing APDU's signature did not verify"


class GeneralSigningService:
    """General-signing for the head-end (module docstring), ``Services.general_signing``."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def sign(
        self,
        *,
        recipient_system_title: bytes,
        content: bytes,
        transaction_id: bytes | None = None,
        date_time: bytes = b"",
        other_information: bytes = b"",
    ) -> bytes:
        """The general-signing APDU carrying ``content`` from the head-end to the meter
        ``recipient_system_title``, signed in the token (module docstring)."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        client = self._resources.config.require_client_system_title()
        if not content:
            raise InputError("the content to sign is empty", field="content")
        with db.begin() as session:
            curve = profiles.curve_for_suite(_meter_suite(session, recipient_system_title))
            own = peers.own_key(session, client, CertificateType.DIGITAL_SIGNATURE, curve)
        if transaction_id is None:
            transaction_id = hsm.random(TRANSACTION_ID_LENGTH)
        template = GeneralSigningApdu(
            transaction_id=transaction_id,
            originator_system_title=client,
            recipient_system_title=recipient_system_title,
            date_time=date_time,
            other_information=other_information,
            content=content,
            signature=b"",
        )
        signature = hsm.sign_digest(own.key, ecdsa.digest(curve, signed_data(template)))
        width = ecdsa.CURVES[curve][2]
        if len(signature) != 2 * width:
            raise ValueError(f"the {curve} key {own.key.label} returned {len(signature)} bytes")
        return template.with_signature(signature).to_bytes()

    def verify(self, apdu: bytes, *, allow_any_recipient: bool = False) -> GeneralSigningApdu:
        """The general-signing APDU ``apdu`` from a meter, once its signature verified with the
        meter's signing certificate (module docstring for what is refused, and how)."""
        db = self._resources.database()
        parsed = parse_general_signing_apdu(apdu)
        if not allow_any_recipient:
            client = self._resources.config.require_client_system_title()
            if parsed.recipient_system_title != client:
                found = parsed.recipient_system_title.hex().upper() or "empty"
                raise InputError(
                    f"the APDU is addressed to {found}, not to this head-end "
                    f"({format_system_title(client)})",
                    field="recipient_system_title",
                )
        originator = parsed.originator_system_title
        with db.begin() as session:
            curve = profiles.curve_for_suite(_meter_suite(session, originator))
            public_key, _serial = peers.peer_public_key(
                session, originator, CertificateType.DIGITAL_SIGNATURE, curve
            )
        if len(parsed.signature) != 2 * ecdsa.CURVES[curve][2]:
            raise InvalidSignature(_REFUSED)
        try:
            ecdsa.verify(
                public_key,
                ecdsa.der_from_raw(parsed.signature),
                signed_data(parsed),
                ecdsa.hash_for_curve(curve),
            )
        except InvalidSignature:
            raise InvalidSignature(_REFUSED) from None
        return parsed


def _meter_suite(session: Session, system_title: bytes) -> SecuritySuite:
    """The suite of a known meter that is not retired."""
    title = format_system_title(system_title)
    meter = repo.meter_by_system_title(session, system_title)
    if meter is None:
        raise NotFoundError(f"no meter with system title {title}")
    if meter.state is MeterState.RETIRED:
        raise ConflictError(f"meter {title} is retired")
    return SecuritySuite(meter.suite)
