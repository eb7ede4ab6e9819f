"""Key agreement with a suite 1 or 2 meter: security setup method 3 (key_agreement), the
Ephemeral Unified Model C(2e, 0s, ECC CDH) of docs/dlms-security.md section 5, instead of
key_transfer.

The exchange spans two calls, often two processes (the station writes the request to the meter
and brings its answer back):

1. :meth:`KeyAgreementService.start`: for each key asked for (GUEK, GBEK, GAK, KEK), an ephemeral
   key pair is generated in the token as a *token* object that can only derive (so it survives until
   the answer comes, and never leaves the token, not even wrapped), its public point signed with the
   KMS's own signing key (``kms entity create --type signing``) over key_id || x || y; the
   action-request goes to the station and the pending agreement is recorded with an expiry.
2. :meth:`KeyAgreementService.complete`: the meter's answer carries its own ephemeral key per
   key_id, signed with its signing key; each signature is checked against the meter's certificate,
   then ECDH in the token and the SP 800-56A concatenation KDF (OtherInfo = AlgorithmID || ST_client
   || ST_server) make the key, which is sealed under the storage key as the next version of that
   role (PENDING, as provisioning leaves them; ``kms provision confirm`` activates), and the
   ephemeral key pairs are destroyed. The audit record says where the KDF ran (in the token over Z,
   or on the host) as the HSM profile decided.

AlgorithmID: AES-GCM-128/256 for GUEK, GBEK and GAK; AES-WRAP-128/256 for the KEK. The notes leave
the KEK's open (section 10); Gurux hard-codes AES-GCM-128. Key agreement on an ACTIVE meter is key
renewal, which is not built yet: it is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass

from kms.db import (
    AgreementState,
    KeyAgreement,
    KeyRole,
    KeyState,
    KeyVersion,
    MeterState,
    SecuritySetup,
    Session,
    after_commit,
)
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms import kdf
from kms.dlms.action_request import ACTION_RESPONSE, action_response_return_data
from kms.dlms.key_agreement import (
    KeyAgreementEntry,
    ephemeral_key_data,
    ephemeral_signed_data,
    key_agreement_request,
    parse_ephemeral_key_data,
    parse_key_agreement_response_data,
)
from kms.dlms.key_transfer import KeyId
from kms.dlms.obis import security_setup_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import (
    AuthenticationFailed,
    ConflictError,
    InputError,
    InvalidSignature,
    KMSError,
    NotFoundError,
)
from kms.hsm import Hsm, KeyUse, SessionKey, TokenKey
from kms.keystore import hierarchy
from kms.keystore.blobs import KeyIdentity, seal
from kms.pki import ecdsa, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import audit, peers
from kms.services.common.resources import Resources

__all__ = ["DEFAULT_LIFETIME", "ROLE_OF_KEY_ID", "KeyAgreementService", "StartedAgreement"]

ROLE_OF_KEY_ID = {
    KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY: KeyRole.GUEK,
    KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY: KeyRole.GBEK,
    KeyId.AUTHENTICATION_KEY: KeyRole.GAK,
    KeyId.MASTER_KEY: KeyRole.KEK,
}
_USE_OF_ROLE = {
    KeyRole.GUEK: KeyUse.EK,
    KeyRole.GBEK: KeyUse.EK,
    KeyRole.GAK: KeyUse.AK,
    KeyRole.KEK: KeyUse.KEK,
}
DEFAULT_LIFETIME = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class StartedAgreement:
    handle: str
    apdu: bytes
    expires_at: datetime.datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "handle": self.handle,
            "apdu": self.apdu.hex().upper(),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class _Context:
    setup: SecuritySetup
    suite: SecuritySuite
    curve: str
    client: bytes


class KeyAgreementService:
    """Key agreement with a suite 1 or 2 meter (module docstring), ``Services.key_agreements``."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def _context(self, session: Session, system_title: bytes, instance: int) -> _Context:
        meter = repo.meter_by_system_title(session, system_title)
        title = format_system_title(system_title)
        if meter is None:
            raise NotFoundError(f"unknown meter {title}")
        suite = SecuritySuite(meter.suite)
        if suite is SecuritySuite.AES_GCM_128:
            raise InputError(f"meter {title} is a suite 0 meter: key agreement needs suite 1 or 2")
        if meter.state is not MeterState.PENDING:
            raise ConflictError(
                f"meter {title} is {meter.state.value}: key agreement replaces the keys of a meter "
                "being provisioned; renewing an active meter's keys is not built yet"
            )
        logical_name = security_setup_logical_name(instance)
        setup = next((s for s in meter.setups if s.logical_name == logical_name), None)
        if setup is None:
            raise NotFoundError(f"meter {title} has no security setup {instance}")
        return _Context(
            setup,
            suite,
            profiles.curve_for_suite(suite),
            self._resources.config.require_client_system_title(),
        )

    def start(
        self,
        system_title: bytes,
        key_ids: Sequence[KeyId],
        *,
        actor: str,
        setup: int = 0,
        lifetime: datetime.timedelta = DEFAULT_LIFETIME,
    ) -> StartedAgreement:
        """Make the key_agreement action-request for ``key_ids`` (module docstring, step 1)."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        if not key_ids or len(set(key_ids)) != len(key_ids):
            raise InputError("name each key to agree once (GUEK, GBEK, GAK, KEK)", field="keys")
        made: list[TokenKey] = []
        try:
            with db.begin() as session:
                now = utcnow()
                self._expire(hsm, session, now)
                ctx = self._context(session, system_title, setup)
                own = peers.own_key(
                    session, ctx.client, CertificateType.DIGITAL_SIGNATURE, ctx.curve
                )
                # Fail now rather than at the answer: the meter's signatures need its certificate.
                peers.peer_public_key(
                    session, system_title, CertificateType.DIGITAL_SIGNATURE, ctx.curve
                )
                handle = hsm.random(16).hex()
                entries, stored = [], []
                for key_id in key_ids:
                    label = f"kms-agree-{handle}-{int(key_id)}"
                    made.append(hsm.create_key_agreement_key_pair(label, label.encode(), ctx.curve))
                    point = hsm.public_point(made[-1])
                    signed = ephemeral_signed_data(key_id, point)
                    signature = hsm.sign_digest(own.key, ecdsa.digest(ctx.curve, signed))
                    entries.append(KeyAgreementEntry(key_id, ephemeral_key_data(point, signature)))
                    stored.append({"key_id": int(key_id), "label": label, "public": point.hex()})
                apdu = key_agreement_request(entries, logical_name=ctx.setup.logical_name)
                row = KeyAgreement(
                    handle=handle,
                    setup=ctx.setup,
                    state=AgreementState.PENDING,
                    entries=json.dumps(stored),
                    expires_at=now + lifetime,
                )
                repo.add(session, row)
                audit.append(
                    session,
                    actor,
                    [
                        audit.AuditRecord(
                            "key_agreement.start",
                            format_system_title(system_title),
                            {
                                "handle": handle,
                                "setup": setup,
                                "keys": [ROLE_OF_KEY_ID[k].value for k in key_ids],
                                "signed_with": own.serial,
                            },
                        )
                    ],
                )
                started = StartedAgreement(handle, apdu, row.expires_at)
        except BaseException:
            for key in made:
                hsm.destroy_key_pair(key)
            raise
        return started

    def complete(self, handle: str, response: bytes, *, actor: str) -> dict[str, object]:
        """Check the meter's answer and store the agreed keys (module docstring, step 2).

        ``response`` is the action-response (``C7 ...``) or its return data alone. A signature that
        does not verify raises AuthenticationFailed and the agreement stays pending (a forged answer
        must not cancel the real one); anything else wrong is named."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        agreed: list[SessionKey] = []
        with db.begin() as session:
            now = utcnow()
            row = pki_repo.lock_key_agreement(session, handle)
            if row is None:
                raise NotFoundError(f"no key agreement {handle!r}")
            if row.state is not AgreementState.PENDING:
                raise ConflictError(f"key agreement {handle} is {row.state.value.lower()}")
            if row.expires_at <= now:
                raise ConflictError(
                    f"key agreement {handle} expired at {row.expires_at.isoformat()}"
                )
            meter = row.setup.meter
            ctx = self._context(session, meter.system_title, row.setup.logical_name[4])
            pending = {KeyId(e["key_id"]): e for e in json.loads(row.entries)}
            answers = _answers(response, ctx.suite, set(pending))
            public_key, serial = peers.peer_public_key(
                session, meter.system_title, CertificateType.DIGITAL_SIGNATURE, ctx.curve
            )
            points = {}
            for key_id, data in answers.items():
                point, signature = parse_ephemeral_key_data(data, ctx.suite)
                try:
                    ecdsa.verify(
                        public_key,
                        ecdsa.der_from_raw(signature),
                        ephemeral_signed_data(key_id, point),
                        ecdsa.hash_for_curve(ctx.curve),
                    )
                except InvalidSignature:
                    raise AuthenticationFailed(
                        f"the meter's signature on its {ROLE_OF_KEY_ID[key_id].value} "
                        "ephemeral key does not verify"
                    ) from None
                points[key_id] = point
            root = hierarchy.load_root_keys(hsm, session)
            stored: list[dict[str, object]] = []
            locations = set()
            try:
                for key_id, point in points.items():
                    role = ROLE_OF_KEY_ID[key_id]
                    algorithm = kdf.algorithm_id_for(ctx.suite, wrap=role is KeyRole.KEK)
                    other_info = kdf.other_info_ephemeral_unified(
                        algorithm, ctx.client, meter.system_title
                    )
                    result = hsm.agree_key(
                        TokenKey(pending[key_id]["label"], "private"),
                        point,
                        ctx.curve,
                        other_info,
                        ctx.suite.key_length,
                        _USE_OF_ROLE[role],
                    )
                    agreed.append(result.key)
                    locations.add(result.kdf_location)
                    stored.append(
                        self._store(hsm, session, root, ctx, role, result.key, algorithm.name)
                    )
            finally:
                for key in agreed:
                    hsm.destroy(key)
            subject = format_system_title(meter.system_title)
            info: dict[str, object] = {
                "handle": handle,
                "system_title": subject,
                "keys": stored,
                "kdf": sorted(locations)[0] if len(locations) == 1 else sorted(locations),
                "meter_certificate": serial,
            }
            audit.append(
                session,
                actor,
                [audit.AuditRecord("key_agreement.complete", subject, info)],
            )
            self._finish(hsm, session, row, AgreementState.COMPLETED, now)
        return info

    def _store(
        self,
        hsm: Hsm,
        session: Session,
        root: hierarchy.RootKeys,
        ctx: _Context,
        role: KeyRole,
        key: SessionKey,
        algorithm: str,
    ) -> dict[str, object]:
        """Seal ``key`` as the next version of ``role``; older PENDING versions are retired (never
        overwritten)."""
        versions = [k for k in ctx.setup.keys if k.role is role]
        version = 1 + max((k.version for k in versions), default=0)
        for old in versions:
            if old.state is KeyState.PENDING:
                old.state = KeyState.RETIRED
        identity = KeyIdentity(
            ctx.setup.meter.system_title, ctx.setup.logical_name, role.value, version
        )
        sealed = seal(hsm, root, key, identity)
        kcv = hsm.check_value(key)
        repo.add(
            session,
            KeyVersion(
                setup=ctx.setup,
                role=role,
                version=version,
                state=KeyState.PENDING,
                key_length=ctx.suite.key_length,
                wrapped_key=sealed.wrapped_key,
                wrapping_key_label=sealed.wrapping_key_label,
                wrapping_key_version=sealed.wrapping_key_version,
                binding_mac=sealed.binding_mac,
                check_value=kcv,
            ),
        )
        return {
            "role": role.value,
            "version": version,
            "kcv": kcv.hex().upper(),
            "algorithm": algorithm,
        }

    def cancel(self, handle: str, *, actor: str) -> None:
        """Give up a pending agreement: its ephemeral keys are destroyed."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        with db.begin() as session:
            row = pki_repo.lock_key_agreement(session, handle)
            if row is None:
                raise NotFoundError(f"no key agreement {handle!r}")
            if row.state is not AgreementState.PENDING:
                raise ConflictError(f"key agreement {handle} is {row.state.value.lower()}")
            self._finish(hsm, session, row, AgreementState.CANCELLED, utcnow())
            audit.append(session, actor, [audit.AuditRecord("key_agreement.cancel", handle, {})])

    def _expire(self, hsm: Hsm, session: Session, now: datetime.datetime) -> None:
        """Pending agreements past their expiry are cancelled and their keys destroyed."""
        for row in pki_repo.expired_key_agreements(session, now):
            self._finish(hsm, session, row, AgreementState.CANCELLED, now)

    def _finish(
        self,
        hsm: Hsm,
        session: Session,
        row: KeyAgreement,
        state: AgreementState,
        now: datetime.datetime,
    ) -> None:
        """Close ``row``; its ephemeral keys are destroyed once that is committed (a failed commit
        must leave a pending agreement with its keys, not without)."""
        row.state = state
        row.finished_at = now
        labels = [entry["label"] for entry in json.loads(row.entries)]

        def destroy() -> None:
            for label in labels:
                with contextlib.suppress(KMSError):
                    hsm.destroy_key_pair(TokenKey(label, "private"))

        after_commit(session, destroy)


def _answers(response: bytes, suite: SecuritySuite, asked: set[KeyId]) -> dict[KeyId, bytes]:
    data = bytes(response)
    if data[:1] == bytes([ACTION_RESPONSE]):
        data = action_response_return_data(data, source="key_agreement response")
    entries = parse_key_agreement_response_data(data)
    found: dict[KeyId, bytes] = {}
    for entry in entries:
        if entry.key_id not in asked:
            raise InputError(f"the meter answered for {entry.key_id.name}, which was not asked for")
        if entry.suite is not suite:
            raise InputError(
                f"the meter's {entry.key_id.name} key is not on the curve of suite {int(suite)}"
            )
        found[entry.key_id] = entry.key_ciphered_data
    missing = asked - set(found)
    if missing:
        names = ", ".join(sorted(k.name for k in missing))
        raise InputError(f"the meter's answer lacks {names}")
    return found
