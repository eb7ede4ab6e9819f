"""M-of-N approvals: no ceremony on the CA hierarchy runs on one person's say.

The flow:

1. ``kms ceremony request NAME`` writes a *request*: canonical JSON (sorted keys, no spaces) naming
   the ceremony, its parameters, a random id from the token and an expiry. Those exact bytes are
   what officers sign, so an officer can check and sign the file with their own tools (``openssl
   dgst -sha256 -sign officer.pem request.json``) as well as with ``kms ceremony approve``.
2. Each officer signs the request with their own ECDSA key (P-256 with SHA-256, P-384 with
   SHA-384), registered beforehand with ``kms officer add``, and hands in an *approval* file:
   ``{"officer": name, "request_id": id, "signature": DER hex}``.
3. The ceremony script verifies the request (its ceremony and parameters are the ones being run,
   it has not expired, its id was never used) and at least M approvals from distinct, active
   officers, *before* it touches the token; any invalid approval refuses the whole ceremony, as
   a forged one is a sign of tampering. The verified approvals are stored in the ceremony's own
   transaction, so a request runs once, and the audit record names the officers.

The officers' keys are theirs, not the KMS's: they never enter the token. M and N are fixed in
the database when the first officer is registered (the configuration must keep agreeing, or every
ceremony step refuses). Registering officers needs no approval until M have ever been registered
(bootstrap, audited); from then on adding one is itself a ceremony. N caps the active officers.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kms.config import Config
from kms.db import (
    Approval,
    CeremonyPolicy,
    CeremonyRun,
    Officer,
    OfficerState,
    Session,
)
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.errors import ApprovalError, ConfigError, ConflictError, InputError
from kms.formats.ceremony import (
    APPROVAL_FORMAT,
    CEREMONIES,
    REQUEST_FORMAT,
    ApprovalFile,
    CeremonyRequest,
    approval_file,
    check_parameters,
    describe_parameters,
    load_approval,
    load_request,
    request_document,
)
from kms.formats.files import write_new
from kms.services.common import audit
from kms.services.common.resources import Resources

#: The request and approval files are kms.formats.ceremony's; they are named here too, because
#: every ceremony of every domain reaches them through this module.
__all__ = [
    "APPROVAL_FORMAT",
    "CEREMONIES",
    "DEFAULT_LIFETIME",
    "REQUEST_FORMAT",
    "ApprovalFile",
    "ApprovalService",
    "CeremonyRequest",
    "approval_file",
    "approvers",
    "ceremony_parameters",
    "describe_officer",
    "describe_parameters",
    "load_approval",
    "load_request",
    "make_request",
    "officer_key_fingerprint",
    "sign_request",
    "write_ceremony_file",
]

DEFAULT_LIFETIME = datetime.timedelta(hours=24)
_HASHES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}


def write_ceremony_file(path: Path, data: bytes) -> None:
    """Write a request, an approval or a backup: never over an existing file."""
    write_new(path, data, what="ceremony file")


def make_request(
    request_id: str,
    ceremony: str,
    parameters: Mapping[str, Any],
    *,
    lifetime: datetime.timedelta = DEFAULT_LIFETIME,
    now: datetime.datetime | None = None,
) -> CeremonyRequest:
    """A request for ``ceremony`` with the id ``request_id`` (32 hex digits; the service draws it
    from the token's RNG: :meth:`ApprovalService.new_request`)."""
    created = (now or utcnow()).replace(microsecond=0)
    document = request_document(ceremony, parameters, request_id, created, created + lifetime)
    return load_request(document, "request")


def ceremony_parameters(ceremony: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``ceremony`` picked from ``given`` (every parameter a front end can
    take, ``None`` where not given); an InputError names what is missing or does not belong."""
    wanted = CEREMONIES[ceremony]
    parameters = {k: v for k, v in given.items() if k in wanted}
    missing = [k for k, v in parameters.items() if v is None]
    extra = [k for k, v in given.items() if k not in wanted and v is not None]
    if missing or extra:
        raise InputError(
            f"{ceremony} takes {', '.join(sorted(wanted)) or 'no parameters'}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; not {', '.join(extra)}" if extra else "")
        )
    return parameters


def _load_officer_private_key(
    private_key_pem: bytes, password: bytes | None
) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(private_key_pem, password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError("cannot load the officer's private key (PEM, passphrase?)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _HASHES:
        raise InputError("an officer's key is an EC P-256 or P-384 key")
    return key


def sign_request(
    request: CeremonyRequest, officer: str, private_key_pem: bytes, password: bytes | None
) -> bytes:
    """An officer's side: sign ``request`` with their own EC key (PEM); returns the approval
    file. Runs on the officer's machine; the key never reaches the KMS. It checks nothing
    against the register of officers: :meth:`ApprovalService.approve` does."""
    key = _load_officer_private_key(private_key_pem, password)
    signature = key.sign(request.text, ec.ECDSA(_HASHES[key.curve.name]()))
    return approval_file(officer, request, signature)


def _load_officer_key(der_or_pem: bytes, source: str) -> tuple[bytes, ec.EllipticCurvePublicKey]:
    try:
        if der_or_pem.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(der_or_pem)
        else:
            key = serialization.load_der_public_key(der_or_pem)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(
            "not a public key (PEM or DER SubjectPublicKeyInfo)", source=source
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _HASHES:
        raise InputError("an officer's key must be EC P-256 or P-384", source=source)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der, key


def officer_key_fingerprint(der_or_pem: bytes, source: str = "public key") -> str:
    """SHA-256 of an officer's SubjectPublicKeyInfo (hex): what an add-officer request names."""
    der, _key = _load_officer_key(der_or_pem, source)
    return hashlib.sha256(der).hexdigest()


class ApprovalService:
    """The officers and the M-of-N approvals of ceremonies (module docstring). Every domain's
    ceremonies verify their approvals through :meth:`verify`, inside their own transaction."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    @property
    def _config(self) -> Config:
        return self._resources.config

    def new_request(
        self,
        ceremony: str,
        parameters: Mapping[str, Any],
        *,
        lifetime: datetime.timedelta = DEFAULT_LIFETIME,
        now: datetime.datetime | None = None,
    ) -> CeremonyRequest:
        """A fresh request for ``ceremony``, its id drawn from the token's RNG."""
        check_parameters(ceremony, parameters, "request")
        request_id = self._resources.hsm().random(16).hex()
        return make_request(request_id, ceremony, parameters, lifetime=lifetime, now=now)

    def approve(
        self,
        request: CeremonyRequest,
        officer: str,
        private_key_pem: bytes,
        password: bytes | None,
    ) -> bytes:
        """:func:`sign_request`, once the register agrees: ``officer`` is registered and active,
        and the private key's public key is the one registered for them. A wrong key is refused
        here, when the approval is made, not at the ceremony that would use it. Reads the
        database only (never the token) and writes nothing; ApprovalError names the officer."""
        key = _load_officer_private_key(private_key_pem, password)
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        fingerprint = hashlib.sha256(der).hexdigest()
        with self._resources.database().begin() as session:
            row = pki_repo.officer_by_name(session, officer)
            state = row.state if row is not None else None
            registered = row.key_fingerprint if row is not None else None
        if state is None:
            raise ApprovalError(f"{officer!r} is not a registered officer (kms officer list)")
        if state is not OfficerState.ACTIVE:
            raise ApprovalError(f"officer {officer!r} was removed; their approvals count for none")
        if fingerprint != registered:
            raise ApprovalError(
                f"the key given is not the one registered for officer {officer!r} (its public "
                f"key's SHA-256 is {fingerprint[:16]}..., the registered one's "
                f"{str(registered)[:16]}...)"
            )
        return sign_request(request, officer, private_key_pem, password)

    def verify(
        self,
        session: Session,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
        *,
        ceremony: str,
        parameters: Mapping[str, Any],
        now: datetime.datetime | None = None,
    ) -> list[Approval]:
        """Check ``request`` is the ceremony being run and carries M valid approvals; stage the
        approval rows in ``session`` (they commit with the ceremony). Raises ApprovalError
        naming the problem; nothing is written then."""
        if request.ceremony != ceremony or dict(request.parameters) != dict(parameters):
            raise ApprovalError(
                f"the request approves {request.ceremony} "
                f"({describe_parameters(request.parameters) or 'no parameters'}), "
                f"not {ceremony} ({describe_parameters(parameters) or 'no parameters'})"
            )
        if (now or utcnow()) >= request.expires_at:
            raise ApprovalError(f"request {request.request_id} expired at {request.expires_at}")
        if pki_repo.request_used(session, request.request_id):
            raise ApprovalError(f"request {request.request_id} was already used by a ceremony")
        required, _officers = self.quorum(session)
        officers = {o.name: o for o in pki_repo.active_officers(session)}
        seen: set[str] = set()
        rows = []
        for approval in approvals:
            where = approval.source
            officer = officers.get(approval.officer)
            if officer is None:
                raise ApprovalError(f"{where}: {approval.officer!r} is not an active officer")
            if approval.officer in seen:
                raise ApprovalError(f"{where}: officer {approval.officer!r} approved twice")
            if approval.request_id != request.request_id:
                raise ApprovalError(f"{where}: the approval is for another request")
            _der, key = _load_officer_key(officer.public_key, f"officer {officer.name}")
            try:
                key.verify(approval.signature, request.text, ec.ECDSA(_HASHES[key.curve.name]()))
            except (PycaInvalidSignature, ValueError):
                raise ApprovalError(
                    f"{where}: the signature of officer {approval.officer!r} does not verify"
                ) from None
            seen.add(approval.officer)
            rows.append(
                Approval(
                    request_id=request.request_id,
                    ceremony=request.ceremony,
                    officer=officer,
                    request=request.text.decode(),
                    signature=approval.signature,
                )
            )
        if len(rows) < required:
            raise ApprovalError(
                f"{request.ceremony} needs {required} officer approvals "
                f"(M of N = {required} of {_officers}); {len(rows)} given"
            )
        # Claim the request before any token work: a second run of it, even with other officers'
        # approvals and on another node, fails here on the unique request id.
        repo.add(session, CeremonyRun(request_id=request.request_id, ceremony=request.ceremony))
        for row in rows:
            repo.add(session, row)
        session.flush()
        return rows

    def quorum(self, session: Session) -> tuple[int, int]:
        """M and N as the database fixed them at the first ceremony step."""
        row = self.policy(session)
        return row.approvals, row.officers

    def policy(self, session: Session) -> CeremonyPolicy:
        """The ceremony policy as the database fixed it at the first ceremony step (M, N, and
        whether revoking a CA certificate is a ceremony); the configuration must agree (a quorum
        each process read from its own environment would be no control)."""
        config = self._config
        row = pki_repo.ceremony_policy(session)
        if row is None:
            row = CeremonyPolicy(
                approvals=config.ceremony_approvals,
                officers=config.ceremony_officers,
                ca_revocation_ceremony=config.ca_revocation_ceremony,
            )
            repo.add(session, row)
            return row
        if (row.approvals, row.officers) != (config.ceremony_approvals, config.ceremony_officers):
            raise ConfigError(
                f"the ceremony quorum was fixed at {row.approvals} of {row.officers} when the "
                f"first officer was registered, but ceremony_approvals / ceremony_officers (or "
                f"KMS_CEREMONY_APPROVALS / KMS_CEREMONY_OFFICERS) say {config.ceremony_approvals} "
                f"of {config.ceremony_officers}: set them back; the quorum does not change"
            )
        if row.ca_revocation_ceremony != config.ca_revocation_ceremony:
            fixed = "true" if row.ca_revocation_ceremony else "false"
            raise ConfigError(
                f"ca_revocation_ceremony was fixed at {fixed} when the first officer was "
                "registered, but ca_revocation_ceremony (or KMS_CA_REVOCATION_CEREMONY) says "
                f"otherwise: set it back to {fixed}; the policy does not change"
            )
        return row

    def ca_revocation_needs_ceremony(self, session: Session) -> bool:
        """The fixed ceremony policy's word (the configuration must agree with it); with no
        policy row yet (no officer ever registered, so no CA made by a ceremony) the
        configuration's, and nothing is fixed by a revocation."""
        if pki_repo.ceremony_policy(session) is None:
            return self._config.ca_revocation_ceremony
        return self.policy(session).ca_revocation_ceremony

    def register_officer(
        self,
        session: Session,
        name: str,
        public_key: bytes,
        *,
        request: CeremonyRequest | None = None,
        approvals: Sequence[ApprovalFile] = (),
        source: str = "public key",
    ) -> tuple[Officer, list[Approval]]:
        """Add an officer in ``session``: free while fewer than M are registered (bootstrap), an
        ``add-officer`` ceremony after that; never more than N."""
        if not name or len(name) > 64 or not name.isprintable():
            raise InputError("an officer name is 1 to 64 printable characters", field="name")
        der, _key = _load_officer_key(public_key, source)
        fingerprint = hashlib.sha256(der).hexdigest()
        if pki_repo.officer_by_name(session, name) is not None:
            raise ConflictError(f"an officer named {name!r} is already registered")
        if pki_repo.officer_by_fingerprint(session, fingerprint) is not None:
            raise ConflictError("another officer already registered this public key")
        required, cap = self.quorum(session)
        active = pki_repo.active_officers(session)
        if len(active) >= cap:
            raise ConflictError(
                f"{len(active)} officers are registered, the quorum's N (ceremony_officers)"
            )
        rows: list[Approval] = []
        # Bootstrap ends for good once M officers were ever registered, not while M are active.
        if pki_repo.officers_ever(session) >= required:
            if request is None:
                raise ApprovalError(
                    f"{len(active)} officers are registered: adding one is an add-officer "
                    f"ceremony needing {required} approvals (kms ceremony request add-officer)"
                )
            rows = self.verify(
                session,
                request,
                approvals,
                ceremony="add-officer",
                parameters={"name": name, "public_key_sha256": fingerprint},
            )
        officer = Officer(
            name=name, public_key=der, key_fingerprint=fingerprint, state=OfficerState.ACTIVE
        )
        repo.add(session, officer)
        return officer, rows

    def add_officer(
        self,
        *,
        actor: str,
        name: str,
        public_key: bytes,
        request: CeremonyRequest | None = None,
        approvals: Sequence[ApprovalFile] = (),
        source: str = "public key",
    ) -> dict[str, object]:
        """:meth:`register_officer` in its own transaction, audited."""
        with self._resources.database().begin() as session:
            officer, used = self.register_officer(
                session, name, public_key, request=request, approvals=approvals, source=source
            )
            session.flush()
            info = describe_officer(officer)
            audit.append(
                session,
                actor,
                [
                    audit.AuditRecord(
                        "officer.add",
                        name,
                        {"key_sha256": officer.key_fingerprint, **approvers(used)},
                    )
                ],
            )
        return info

    def remove_officer(
        self,
        *,
        actor: str,
        name: str,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
    ) -> dict[str, object]:
        """Take an officer out (a lost or compromised key): a ``remove-officer`` ceremony.
        Refused when it would leave fewer than M active officers, since no ceremony could run
        after."""
        with self._resources.database().begin() as session:
            used = self.verify(
                session,
                request,
                approvals,
                ceremony="remove-officer",
                parameters={"name": name},
            )
            officer = pki_repo.officer_by_name(session, name)
            if officer is None or officer.state is not OfficerState.ACTIVE:
                raise ConflictError(f"{name!r} is not an active officer")
            required, _cap = self.quorum(session)
            if len(pki_repo.active_officers(session)) - 1 < required:
                raise ConflictError(
                    f"removing {name!r} would leave fewer than M = {required} active officers"
                )
            officer.state = OfficerState.REMOVED
            info = describe_officer(officer)
            audit.append(
                session, actor, [audit.AuditRecord("officer.remove", name, approvers(used))]
            )
        return info

    def list_officers(self) -> list[dict[str, object]]:
        """The active officers, as plain data."""
        with self._resources.database().begin() as session:
            return [describe_officer(o) for o in pki_repo.active_officers(session)]


def describe_officer(officer: Officer) -> dict[str, object]:
    return {
        "name": officer.name,
        "key_sha256": officer.key_fingerprint,
        "state": officer.state.value,
        "created_at": officer.created_at.isoformat(),
    }


def approvers(rows: Sequence[Approval]) -> dict[str, object]:
    """What the audit record of a ceremony says about its approvals: who, and a digest of each
    signature, so that the approval rows are bound into the hash-chained trail."""
    return {
        "request_id": rows[0].request_id if rows else None,
        "approved_by": sorted(row.officer.name for row in rows),
        "approval_signatures": {
            row.officer.name: hashlib.sha256(row.signature).hexdigest() for row in rows
        },
    }
