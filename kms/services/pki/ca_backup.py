"""CA key backup and restore (issue 5): a CA's private key leaves the token only wrapped under a
``CKA_TRUSTED`` key, which officers can rebuild from their key components where it is restored.

Three ceremonies, each one transaction with its audit record:

``create_backup_key``
    Officers bring key components (:mod:`kms.services.pki.key_components`: two or more, 32 random
    bytes each, in files that each officer keeps apart); their XOR is the backup wrapping key,
    which the security officer (SO PIN) makes ``CKA_TRUSTED`` in the token
    (:mod:`kms.hsm.trusted_wrap`). Each component's check value (KCV) is shown so that its holder
    can confirm it; the key's KCV goes into the audit record (``ca.backup_key.create``). This is
    a named exception to invariant 1, in the manner of every key-component ceremony: the
    components are plaintext on the host (each alone says nothing of the key), and so, for the
    one call that puts it into the token, is their XOR (SoftHSM has no
    ``CKM_XOR_BASE_AND_DATA``), held in a ``bytearray`` zeroised at once. The key can only wrap:
    nothing ever unwraps under it in the token that backs up. No M-of-N approval: the SO PIN and
    the presence of every component holder are the dual control, and a trusted key by itself
    lets nothing out: a backup names its wrapping key's KCV in the approved request, so a key
    made from an operator's own components is never one the officers approved.
``backup_ca_key``
    M-of-N approved (``backup-ca-key`` with ``{"ca": name, "wrapping_key_kcv": KCV}``, the KCV
    officers saw printed when the key was made from their components): the CA's private key is
    wrapped in
    the token under the trusted key and written to a backup file (:data:`BACKUP_FORMAT`), the
    audit record (``ca.backup``) naming the file's SHA-256 and the wrapping key's KCV.
``restore_ca_key``
    M-of-N approved (``restore-ca-key`` with ``{"ca": name}``), in a KMS whose database records
    the CA (a replacement token, or a standby site with a copy of the database): the components
    rebuild the wrapping key as an unwrap-only session key, the private key is unwrapped into the
    token under the label the database records, its public half is made from the certificate,
    and a test signature must verify against the certificate before anything commits
    (``ca.restore``).

The backup file holds no key byte but the wrapped blob. What guards the rest: the blob by RFC
5649's integrity check under the wrapping key; its pairing with the certificate by the test
signature; the certificate by the database's own record of the CA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys  # type: ignore[import-untyped, unused-ignore]

from kms.config import Pin
from kms.db import CertificateAuthority, Session
from kms.db import pki_repository as pki_repo
from kms.db.base import utcnow
from kms.errors import (
    ConflictError,
    HsmError,
    InputError,
    InvalidSignature,
    InvalidUnwrap,
    NotFoundError,
)
from kms.formats.backup import BACKUP_FORMAT, CaKeyBackup, backup_document, load_backup
from kms.hsm import Hsm, SessionKey, TokenKey
from kms.memory import zeroise
from kms.pki import ecdsa, encoding
from kms.services.common import audit
from kms.services.common.approvals import (
    ApprovalFile,
    ApprovalService,
    CeremonyRequest,
    approvers,
    write_ceremony_file,
)
from kms.services.common.resources import Resources
from kms.services.pki.key_components import (
    COMPONENT_LENGTH,
    check_value,
    combine,
    component_file,
    read_components,
)

#: The backup file is kms.formats.backup's; named here too for the CLI, which reaches it only
#: through the services.
__all__ = [
    "BACKUP_FORMAT",
    "DEFAULT_BACKUP_KEY_LABEL",
    "BackupKeyReport",
    "BackupReport",
    "CaBackupService",
    "CaKeyBackup",
    "load_backup",
]

DEFAULT_BACKUP_KEY_LABEL = "kms-ca-backup-v1"
_RESTORE_CHECK = b"dlms-kms/ca-restore-check/v1"


# --- the backup file ------------------------------------------------------------------------------


# --- the ceremonies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupKeyReport:
    """What the backup key ceremony made: a label and check values, never a key byte."""

    label: str
    kcv: str
    component_kcvs: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "kcv": self.kcv, "component_kcvs": self.component_kcvs}


@dataclass(frozen=True)
class BackupReport:
    """What a backup or restore ceremony did (never a key byte)."""

    ca: str
    curve: str
    key_label: str
    wrapping_key_kcv: str
    file: str
    file_sha256: str
    approvals: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class CaBackupService:
    """The CA key backup ceremonies (module docstring)."""

    def __init__(self, resources: Resources, approvals: ApprovalService) -> None:
        self._resources = resources
        self._approvals = approvals

    def generate_components(
        self, *, actor: str, paths: Sequence[Path], label: str = DEFAULT_BACKUP_KEY_LABEL
    ) -> list[str]:
        """New random key components from the token's RNG, each written to a new file of
        ``paths`` (mode 0600, never overwriting), for the backup key ``label`` to be made from;
        audited (``ca.backup_key.components.generate``, with the components' check values, never
        a key byte). Returns the check values. No file is left behind if one cannot be made."""
        db = self._resources.database()
        hsm = self._resources.hsm()
        made: list[Path] = []
        try:
            with db.begin() as session:
                kcvs: list[str] = []
                for path in paths:
                    value = bytearray(hsm.random(COMPONENT_LENGTH))
                    try:
                        kcvs.append(check_value(value))
                        data = component_file(bytes(value))
                    finally:
                        zeroise(value)
                    try:
                        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    except FileExistsError:
                        raise InputError(
                            "already exists; --generate writes new component files only",
                            source=str(path),
                        ) from None
                    except OSError as exc:
                        raise InputError(
                            f"cannot write: {exc.strerror}", source=str(path)
                        ) from None
                    made.append(path)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                details = {
                    "components": len(kcvs),
                    "component_kcvs": kcvs,
                    "files": [str(p) for p in paths],
                }
                audit.append(
                    session,
                    actor,
                    [audit.AuditRecord("ca.backup_key.components.generate", label, details)],
                )
        except BaseException:
            for path in made:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return kcvs

    def create_backup_key_from_files(
        self,
        *,
        actor: str,
        so_pin: Pin,
        paths: Sequence[Path],
        generate: bool = False,
        label: str = DEFAULT_BACKUP_KEY_LABEL,
    ) -> BackupKeyReport:
        """:meth:`create_backup_key` from the officers' component files; with ``generate``, new
        random components are written to ``paths`` first (:meth:`generate_components`)."""
        if generate:
            self.generate_components(actor=actor, paths=paths, label=label)
        return self.create_backup_key(
            actor=actor, so_pin=so_pin, components=read_components(paths), label=label
        )

    def create_backup_key(
        self,
        *,
        actor: str,
        so_pin: Pin,
        components: Sequence[bytearray],
        label: str = DEFAULT_BACKUP_KEY_LABEL,
    ) -> BackupKeyReport:
        """The trusted backup wrapping key, from the officers' components (zeroised here)."""
        try:
            db = self._resources.database()
            hsm = self._resources.hsm()
        except BaseException:
            for component in components:
                zeroise(component)
            raise
        try:
            component_kcvs = [check_value(c) for c in components]
            value = combine(components)
        finally:
            for component in components:
                zeroise(component)
        made: TokenKey | None = None
        try:
            kcv = check_value(value)
            if hsm.has_token_key(TokenKey(label)):
                raise ConflictError(f"the token already holds a key labelled {label!r}")
            with db.begin() as session:
                made = hsm.create_trusted_wrapping_key(so_pin, label, label.encode(), value)
                zeroise(value)
                token_kcv = hsm.check_value(made).hex().upper()
                if token_kcv != kcv:
                    raise HsmError(
                        f"the token reports check value {token_kcv} for {label}, not {kcv}"
                    )
                details = {
                    "kcv": kcv,
                    "components": len(components),
                    "component_kcvs": component_kcvs,
                }
                audit.append(
                    session, actor, [audit.AuditRecord("ca.backup_key.create", label, details)]
                )
        except BaseException:
            if made is not None:
                hsm.destroy_token_key(made)
            raise
        finally:
            zeroise(value)
        return BackupKeyReport(label, kcv, component_kcvs)

    def backup_ca_key(
        self,
        *,
        actor: str,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
        ca_name: str,
        out: Path,
        wrapping_key_label: str = DEFAULT_BACKUP_KEY_LABEL,
    ) -> BackupReport:
        """Wrap the private key of CA ``ca_name`` under the trusted backup key and write the backup
        file ``out`` (which must not exist); the file is removed again if the ceremony fails."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        written = False
        try:
            with db.begin() as session:
                wrapping_key = TokenKey(wrapping_key_label)
                kcv = hsm.check_value(wrapping_key).hex().upper()
                approved = self._approvals.verify(
                    session,
                    request,
                    approvals,
                    ceremony="backup-ca-key",
                    parameters={"ca": ca_name, "wrapping_key_kcv": kcv},
                )
                authority = _authority(session, ca_name)
                mechanism = hsm.profile.mechanism_names().get("ca_key_wrap", "")
                wrapped = hsm.wrap_private_key(
                    wrapping_key, TokenKey(authority.key_label, "private")
                )
                approval_info = approvers(approved)
                cert = encoding.load_certificate(authority.certificate.der, f"CA {authority.name}")
                data = backup_document(
                    ca=authority.name,
                    role=authority.role.value,
                    suite=authority.suite,
                    curve=authority.curve,
                    key_label=authority.key_label,
                    certificate_pem=encoding.certificate_pem(cert).decode("ascii"),
                    wrapping_key_label=wrapping_key.label,
                    wrapping_key_kcv=kcv,
                    mechanism=mechanism,
                    wrapped_key=wrapped,
                    created_at=utcnow().isoformat(),
                    request_id=approval_info["request_id"],
                    approved_by=approval_info["approved_by"],
                )
                write_ceremony_file(out, data)
                written = True
                digest = hashlib.sha256(data).hexdigest()
                details = {
                    "key_label": authority.key_label,
                    "wrapping_key_label": wrapping_key_label,
                    "wrapping_key_kcv": kcv,
                    "mechanism": mechanism,
                    "file": str(out),
                    "file_sha256": digest,
                    **approval_info,
                }
                audit.append(session, actor, [audit.AuditRecord("ca.backup", ca_name, details)])
                report = BackupReport(
                    ca_name,
                    authority.curve,
                    authority.key_label,
                    kcv,
                    str(out),
                    digest,
                    approval_info,
                )
        except BaseException:
            if written:
                out.unlink(missing_ok=True)
            raise
        return report

    def restore_ca_key(
        self,
        *,
        actor: str,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
        backup: CaKeyBackup,
        components: Sequence[bytearray],
    ) -> BackupReport:
        """Bring a backed-up CA key into this KMS's token under the label its database records.

        Components that do not rebuild the wrapping key, or a blob that fails its integrity check,
        raise :class:`~kms.errors.InvalidUnwrap`; a key that does not pair with the certificate,
        :class:`~kms.errors.InvalidSignature`. Either way the token is left as it was.
        """
        try:
            value = combine(components)
        finally:
            for component in components:
                zeroise(component)
        try:
            db = self._resources.database()  # the schema gate before the token login
            hsm = self._resources.hsm()
        except BaseException:
            zeroise(value)
            raise
        unwrapping: SessionKey | None = None
        made: TokenKey | None = None
        try:
            with db.begin() as session:
                approved = self._approvals.verify(
                    session,
                    request,
                    approvals,
                    ceremony="restore-ca-key",
                    parameters={"ca": backup.ca},
                )
                authority = _authority(session, backup.ca)
                _check_backup_matches(authority, backup)
                label = authority.key_label
                if hsm.has_token_key(TokenKey(label, "private")) or hsm.has_token_key(
                    TokenKey(label, "public")
                ):
                    raise ConflictError(
                        f"token {hsm.token_label!r} already holds the key of CA {backup.ca} "
                        f"({label})"
                    )
                kcv = check_value(value)
                if kcv != backup.wrapping_key_kcv:
                    raise InvalidUnwrap(
                        "the key components do not rebuild the backup's wrapping key (its check "
                        f"value is {backup.wrapping_key_kcv}, theirs {kcv})"
                    )
                unwrapping = hsm.load_unwrapping_key(value)
                zeroise(value)
                made = hsm.unwrap_private_key(unwrapping, backup.wrapped_key, label, label.encode())
                public_info = _public_key_info(backup)
                hsm.create_public_key(label, label.encode(), bytes(public_info.dump()))
                _check_pairing(hsm, made, backup, public_info, request.request_id)
                approval_info = approvers(approved)
                digest = hashlib.sha256(backup.certificate_der).hexdigest()
                details = {
                    "key_label": label,
                    "token": hsm.token_label,
                    "wrapping_key_kcv": kcv,
                    "backup": backup.source,
                    "backup_created_at": backup.created_at,
                    "certificate_sha256": digest,
                    **approval_info,
                }
                audit.append(session, actor, [audit.AuditRecord("ca.restore", backup.ca, details)])
                report = BackupReport(
                    backup.ca, backup.curve, label, kcv, backup.source, digest, approval_info
                )
        except BaseException:
            if made is not None:
                hsm.destroy_key_pair(made)
            raise
        finally:
            zeroise(value)
            if unwrapping is not None:
                hsm.destroy(unwrapping)
        return report


def _authority(session: Session, name: str) -> CertificateAuthority:
    authority = pki_repo.authority_by_name(session, name)
    if authority is None:
        raise NotFoundError(f"no CA named {name!r} (kms ca list)")
    return authority


def _check_backup_matches(authority: CertificateAuthority, backup: CaKeyBackup) -> None:
    """The backup must be of the CA the database records: same certificate, curve and label."""
    if authority.certificate.der != backup.certificate_der:
        raise InputError(
            f"the backup's certificate is not the one this database records for CA "
            f"{authority.name}",
            source=backup.source,
        )
    if authority.key_label != backup.key_label or authority.curve != backup.curve:
        raise InputError(
            f"the backup names key {backup.key_label} ({backup.curve}); this database records "
            f"{authority.key_label} ({authority.curve}) for CA {authority.name}",
            source=backup.source,
        )


def _public_key_info(backup: CaKeyBackup) -> keys.PublicKeyInfo:
    certificate = encoding.load_certificate(backup.certificate_der, backup.source)
    return certificate["tbs_certificate"]["subject_public_key_info"]


def _check_pairing(
    hsm: Hsm, key: TokenKey, backup: CaKeyBackup, public: keys.PublicKeyInfo, request_id: str
) -> None:
    """A test signature by the restored key must verify with the certificate's public key."""
    data = _RESTORE_CHECK + request_id.encode("ascii")
    signature = ecdsa.sign(hsm.signer(key, backup.curve), data)
    try:
        ecdsa.verify(public, signature, data, ecdsa.hash_for_curve(backup.curve))
    except InvalidSignature:
        raise InvalidSignature(
            f"the restored key does not pair with the certificate of CA {backup.ca}"
        ) from None
