"""Importing a meter's HLS secret (mechanism 6): an audited ceremony, like a transport key's.

The secret of HLS-SHA-256 is set in the meter by its maker or an earlier owner, so it enters the
KMS in plaintext once, from a file (never the command line): a named, audited exception to
docs/architecture.md, invariant 1. It becomes a sensitive session object at once, is wrapped under
the storage key (RFC 3394 where its length allows, else RFC 5649) and bound to its row like every
per-meter key, and the session object is destroyed. Each import adds a version (Vault style):
the new one is ACTIVE, the older ACTIVE one RETIRED, all in one transaction with its audit
record. The check value recorded is the token's ``CKA_CHECK_VALUE`` of a generic secret (the
first 3 bytes of its SHA-1), to compare with the maker's.
"""

from __future__ import annotations

from dataclasses import dataclass

from kms.db import KeyRole, KeyState, KeyVersion
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.obis import format_logical_name, security_setup_logical_name
from kms.dlms.system_title import format_system_title
from kms.errors import NotFoundError
from kms.formats.key_file import read_hls_secret
from kms.keystore import hierarchy
from kms.keystore.blobs import KeyIdentity, seal_secret
from kms.services.common import audit
from kms.services.common.resources import Resources

__all__ = ["HlsSecretService", "ImportedSecret", "read_hls_secret"]


@dataclass(frozen=True)
class ImportedSecret:
    """What an import stored: metadata and check value only."""

    system_title: str
    logical_name: str
    version: int
    length: int
    kcv: str


class HlsSecretService:
    """The HLS secrets of mechanism 6 (module docstring), ``Services.hls_secrets``."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def import_secret(
        self, system_title: bytes, setup: int, value: bytes, *, actor: str
    ) -> ImportedSecret:
        """Store ``value`` as the next ACTIVE HLS secret of the meter's security setup ``setup``."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        logical_name = security_setup_logical_name(setup)
        title = format_system_title(system_title)
        with db.begin() as session:
            root = hierarchy.load_root_keys(hsm, session)
            meter = repo.meter_by_system_title(session, system_title)
            if meter is None:
                raise NotFoundError(f"no meter with system title {title}")
            found = next((s for s in meter.setups if s.logical_name == logical_name), None)
            if found is None:
                raise NotFoundError(
                    f"meter {title} has no security setup {format_logical_name(logical_name)}"
                )
            versions = [k for k in found.keys if k.role is KeyRole.HLS_SECRET]
            version = max((k.version for k in versions), default=0) + 1
            identity = KeyIdentity(system_title, logical_name, KeyRole.HLS_SECRET.value, version)
            secret = hsm.import_secret(value)
            try:
                sealed = seal_secret(hsm, root, secret, identity)
                kcv = hsm.check_value(secret)
            finally:
                hsm.destroy(secret)
            now = utcnow()
            for older in versions:
                if older.state is KeyState.ACTIVE:
                    older.state = KeyState.RETIRED
            repo.add(
                session,
                KeyVersion(
                    security_setup_id=found.id,
                    role=KeyRole.HLS_SECRET,
                    version=version,
                    state=KeyState.ACTIVE,
                    key_length=len(value),
                    wrapped_key=sealed.wrapped_key,
                    wrapping_key_label=sealed.wrapping_key_label,
                    wrapping_key_version=sealed.wrapping_key_version,
                    binding_mac=sealed.binding_mac,
                    check_value=kcv,
                    created_at=now,
                    activated_at=now,
                ),
            )
            record = audit.AuditRecord(
                "hls_secret.import",
                identity.describe(),
                {"length": len(value), "kcv": kcv.hex().upper(), "plaintext_import": True},
            )
            audit.append(session, actor, [record])
        return ImportedSecret(
            title, format_logical_name(logical_name), version, len(value), kcv.hex().upper()
        )
