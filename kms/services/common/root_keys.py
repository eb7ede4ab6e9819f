"""Ceremonies on the key hierarchy: ``kms init`` and the transport-key import and generation.

:class:`RootKeyService` (``Services.root_keys``) owns each use case's transaction and appends its
audit events in it, so the CLI (and the ceremony scripts to come) only parse and print. The key
work itself is :mod:`kms.keystore.hierarchy`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from kms.db import RootKey, RootKeyPurpose
from kms.db import repository as repo
from kms.db.migrate import upgrade
from kms.formats.key_file import read_transport_key
from kms.keystore import hierarchy
from kms.keystore.hierarchy import InitOutcome
from kms.services.common import audit
from kms.services.common.resources import Resources

__all__ = ["InitReport", "RootKeyService", "describe_transport_key", "read_transport_key"]


@dataclass(frozen=True)
class InitReport:
    """What ``kms init`` did: the token, the schema move and one outcome per root key."""

    schema_before: str | None
    schema_after: str
    root_keys: list[InitOutcome]
    token: str = ""


def describe_transport_key(row: RootKey) -> dict[str, object]:
    """A transport key as plain data: label, algorithm, check value, time; never the key."""
    return {
        "label": row.label,
        "algorithm": row.algorithm,
        "kcv": row.check_value.hex().upper() if row.check_value else None,
        "created_at": row.created_at.isoformat(),
    }


class RootKeyService:
    """The root keys and transport keys of the token (module docstring)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def initialise(self, *, actor: str) -> InitReport:
        """Bring the schema to head, then create or adopt the root keys (idempotent)."""
        db = self._resources.database(migrated=False)
        hsm = self._resources.hsm()
        before, after = upgrade(db.engine)
        # A key made before a failed commit is destroyed again (or adopted by the next run).
        with hierarchy.undone_on_failure(hsm, db) as made, db.begin() as session:
            outcomes = hierarchy.initialise(hsm, session, made)
            changed = [o for o in outcomes if o.action != "present"]
            if changed:
                audit.append(
                    session,
                    actor,
                    [
                        audit.AuditRecord(
                            f"root_key.{o.action}",
                            o.label,
                            {"purpose": o.purpose, "algorithm": o.algorithm},
                        )
                        for o in changed
                    ],
                )
        return InitReport(before, after, outcomes, hsm.token_label)

    def create_transport_key(
        self, *, actor: str, label: str, value: bytes | None, length: int
    ) -> dict[str, object]:
        """Import ``value`` (a vendor's key) or generate one in the token, recorded and audited;
        returns it as :func:`describe_transport_key` does."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        operation = "transport_key.import" if value is not None else "transport_key.generate"
        with hierarchy.undone_on_failure(hsm, db) as made, db.begin() as session:
            row = hierarchy.create_transport_key(hsm, session, label, value, length, made)
            described = describe_transport_key(row)
            audit.append(session, actor, [audit.AuditRecord(operation, label, described)])
        return described

    def transport_keys(self) -> list[dict[str, object]]:
        """The transport keys recorded (labels, algorithms, check values): the database only."""
        with self._resources.database().begin() as session:
            return [
                describe_transport_key(r) for r in repo.root_keys(session, RootKeyPurpose.TRANSPORT)
            ]
