"""The one error hierarchy of the KMS.

Every error the KMS raises on purpose derives from :class:`KMSError`, so the CLI can catch one root
and turn it into an exit status (:func:`exit_status_for`). Below the root there are five families,
after Vault's split between caller faults and server faults:

* :class:`KMSUsageError` -- the caller asked for something wrong (bad input, unknown meter, a
  database that is not migrated). Exit status 2.
* :class:`CryptoError` -- a cryptographic check failed (:class:`InvalidTag`,
  :class:`InvalidSignature`, :class:`InvalidUnwrap`, :class:`InvalidBinding`) or a mechanism is
  missing (:class:`UnsupportedMechanism`). Exit status 3. An authenticity failure says nothing
  about *why* it failed, as pyca's Fernet raises a bare ``InvalidToken``.
* :class:`HsmError` -- the PKCS#11 token failed or refused (wrong PIN, token absent, lost session).
  Exit status 4.
* :class:`DatabaseError` -- the metadata database failed. Exit status 5.
* :class:`IntegrityError` -- stored state was tampered with (audit chain, checkpoint).
  Exit status 6.

Each class carries a stable ``code`` (a dotted string other tools may match on) and messages never
carry a PIN or a key byte: callers format only metadata (labels, system titles, row numbers) into
them. Caller *bugs* (a wrong argument type or length in library code) stay ``TypeError`` and
``ValueError``, as in pyca/cryptography.
"""

from __future__ import annotations

import enum


class KMSError(Exception):
    """Root of every error the KMS raises on purpose."""

    code: str = "kms.error"
    exit_status: int = 1
    #: The DLMS exception-response (0xD8 ...) a server would answer this failure with, where the
    #: Green Book defines one; set by the APDU services, shown by ``--json``.
    exception_response: bytes | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """A machine-readable form for ``--json`` output."""
        out: dict[str, object] = {"error": self.code, "message": self.message}
        if self.exception_response is not None:
            out["exception_response"] = self.exception_response.hex().upper()
        return out


# --- usage errors -----------------------------------------------------------------------------


class KMSUsageError(KMSError):
    """The caller asked for something the KMS will not do."""

    code = "usage"
    exit_status = 2


class ConfigError(KMSUsageError):
    """Configuration (kms.toml or the environment) is missing or invalid."""

    code = "usage.config"


class InputError(KMSUsageError):
    """A value supplied by the caller is malformed; names the source, row and field."""

    code = "usage.input"

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        where = []
        if source is not None:
            where.append(source)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full)
        self.detail = message
        self.source = source
        self.row = row
        self.field = field

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update({"source": self.source, "row": self.row, "field": self.field})
        return out


class NotFoundError(KMSUsageError):
    """A named object (meter, key label, root key) does not exist."""

    code = "usage.not_found"


class ConflictError(KMSUsageError):
    """The request conflicts with stored state (duplicate meter, a key in the wrong state)."""

    code = "usage.conflict"


class CertificateProfileError(KMSUsageError):
    """A certificate, CSR or CRL breaks the Green Book profile (or the meter's record); the
    message names the rule it breaks. Bad DER or PEM is an :class:`InputError`."""

    code = "usage.certificate_profile"


class ApprovalError(KMSUsageError):
    """A ceremony lacks its M-of-N officer approvals, or one of them is invalid; nothing ran."""

    code = "usage.approval"


class KeyStateError(ConflictError):
    """A key exists but its state forbids this use (PENDING, RETIRED, REVOKED, DESTROYED)."""

    code = "usage.key_state"


class InvocationCounterExhausted(ConflictError):
    """A key's sending invocation counters are used up; the key must be renewed."""

    code = "usage.invocation_counter_exhausted"


class SchemaOutdatedError(KMSUsageError):
    """The database schema is behind the code; the message names the command that fixes it."""

    code = "usage.schema_outdated"


class NotInitialisedError(KMSUsageError):
    """The token has no root keys yet (``kms init`` has not run)."""

    code = "usage.not_initialised"


# --- crypto failures --------------------------------------------------------------------------


class CryptoError(KMSError):
    """A cryptographic operation or check failed."""

    code = "crypto"
    exit_status = 3


class InvalidTag(CryptoError):
    """A GCM/GMAC tag did not verify."""

    code = "crypto.invalid_tag"


class AuthenticationFailed(CryptoError):
    """A peer's HLS authentication response did not verify (says nothing of why)."""

    code = "crypto.authentication_failed"


class InvocationCounterError(CryptoError):
    """A received invocation counter is not above the last one accepted for that key (replay).

    ``expected`` is the lowest counter that would have been accepted.
    """

    code = "crypto.invocation_counter"

    def __init__(self, message: str, expected: int) -> None:
        super().__init__(message)
        self.expected = expected


class InvalidSignature(CryptoError):
    """A signature did not verify."""

    code = "crypto.invalid_signature"


class InvalidCertificatePath(CryptoError):
    """A certificate chain does not validate: it does not reach the configured trust anchor,
    an issuer is expired or revoked, or a signature in it fails. Names the certificate and the
    reason (a path failure is a public fact, unlike a bad MAC)."""

    code = "crypto.certificate_path"


class InvalidUnwrap(CryptoError):
    """A wrapped key failed its integrity check on unwrap (RFC 3394 IV mismatch, bad length)."""

    code = "crypto.invalid_unwrap"


class InvalidBinding(CryptoError):
    """A stored key blob does not belong to the row it was read from, or was edited."""

    code = "crypto.invalid_binding"


class UnsupportedReason(enum.Enum):
    """Why a mechanism cannot be used; public so tests never import a private name."""

    MISSING_FROM_TOKEN = "missing_from_token"  # noqa: S105
    MISSING_FROM_PROFILE = "missing_from_profile"
    NOT_YET_IMPLEMENTED = "not_yet_implemented"


class UnsupportedMechanism(CryptoError):
    """The token or the HSM profile lacks a mechanism the operation needs."""

    code = "crypto.unsupported_mechanism"

    def __init__(self, message: str, reason: UnsupportedReason) -> None:
        super().__init__(message)
        self.reason = reason


# --- HSM failures -----------------------------------------------------------------------------


class HsmError(KMSError):
    """The PKCS#11 token failed or refused an operation."""

    code = "hsm"
    exit_status = 4


class TokenNotFound(HsmError):
    """No token with the configured label is present in the module's slots."""

    code = "hsm.token_not_found"


class PinIncorrect(HsmError):
    """The token refused the user PIN (the PIN itself is never repeated)."""

    code = "hsm.pin_incorrect"


class PinLocked(HsmError):
    """The token locked the user PIN after too many failures."""

    code = "hsm.pin_locked"


class SessionLost(HsmError):
    """The session or the device went away; idempotent calls are retried before this escapes."""

    code = "hsm.session_lost"


class TokenKeyNotFound(HsmError):
    """A token object the KMS recorded (a root key, a transport key) is missing from the token."""

    code = "hsm.key_not_found"


# --- database and integrity -------------------------------------------------------------------


class DatabaseError(KMSError):
    """The metadata database failed."""

    code = "database"
    exit_status = 5


class IntegrityError(KMSError):
    """Stored state was altered outside the KMS (audit chain, checkpoint signature)."""

    code = "integrity"
    exit_status = 6


class AuditChainBroken(IntegrityError):
    """The audit hash chain or a checkpoint signature does not verify."""

    code = "integrity.audit_chain"


def exit_status_for(error: BaseException) -> int:
    """The CLI exit status for an error: the one place that maps families to statuses."""
    if isinstance(error, KMSError):
        return error.exit_status
    return 1
