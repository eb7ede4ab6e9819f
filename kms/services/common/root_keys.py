"""Ceremonies on the key hierarchy: ``kms init`` and the transport-key import and generation.

Each function owns its transaction and appends its audit events in it, so the CLI (and the
ceremony scripts to come) only parse and print. The key work itself is
:mod:`kms.keystore.hierarchy`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kms.db import Database, RootKey
from kms.db.migrate import upgrade
from kms.errors import InputError
from kms.hsm import Hsm
from kms.keystore import hierarchy
from kms.keystore.hierarchy import InitOutcome
from kms.services.common import audit


@dataclass(frozen=True)
class InitReport:
    """What ``kms init`` did: the schema move and one outcome per root key."""

    schema_before: str | None
    schema_after: str
    root_keys: list[InitOutcome]


def initialise(hsm: Hsm, db: Database, actor: str) -> InitReport:
    """Bring the schema to head, then create or adopt the root keys (idempotent)."""
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
    return InitReport(before, after, outcomes)


def describe_transport_key(row: RootKey) -> dict[str, object]:
    """A transport key as plain data: label, algorithm, check value, time; never the key."""
    return {
        "label": row.label,
        "algorithm": row.algorithm,
        "kcv": row.check_value.hex().upper() if row.check_value else None,
        "created_at": row.created_at.isoformat(),
    }


def read_key_file(path: Path) -> bytes:
    """The key in a transport key file (hex text), with errors naming the file."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise InputError("cannot read the key file as text", source=str(path)) from None
    return hierarchy.parse_key_file(text, str(path))


def create_transport_key(
    hsm: Hsm, db: Database, actor: str, label: str, value: bytes | None, length: int
) -> RootKey:
    """Import ``value`` (a vendor's key) or generate one in the token, recorded and audited."""
    operation = "transport_key.import" if value is not None else "transport_key.generate"
    with hierarchy.undone_on_failure(hsm, db) as made, db.begin() as session:
        row = hierarchy.create_transport_key(hsm, session, label, value, length, made)
        audit.append(
            session, actor, [audit.AuditRecord(operation, label, describe_transport_key(row))]
        )
    return row
