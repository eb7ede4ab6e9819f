"""Queries and bulk writes the services need, so that no service imports SQLAlchemy.

Bulk inserts go through Core ``insert()`` on the tables (one executemany per chunk; SQLAlchemy's
insertmanyvalues batches it on PostgreSQL) and read the new ids back with one select, rather than
the ORM's unit of work, which would cost a flush per object at 100,000 meters.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from kms.db.base import ModelBase
from kms.db.models import (
    Association,
    AuditCheckpoint,
    AuditEvent,
    Direction,
    InvocationCounter,
    KeyState,
    KeyVersion,
    Meter,
    MeterState,
    RootKey,
    RootKeyPurpose,
    SecuritySetup,
)

#: Core tables for bulk inserts (typed as ``Table``, unlike a model's ``__table__``).
_TABLES = ModelBase.metadata.tables

# --- root keys --------------------------------------------------------------------------------


def root_keys(session: Session, purpose: RootKeyPurpose | None = None) -> list[RootKey]:
    """Recorded root keys, newest version first within a purpose."""
    query = select(RootKey).order_by(RootKey.purpose, RootKey.version.desc(), RootKey.label)
    if purpose is not None:
        query = query.where(RootKey.purpose == purpose)
    return list(session.scalars(query))


def root_key_by_label(session: Session, label: str) -> RootKey | None:
    """The root key recorded under ``label``."""
    return session.scalars(select(RootKey).where(RootKey.label == label)).one_or_none()


def add(session: Session, obj: object) -> None:
    """Add one ORM object to the session (and flush, so constraint errors surface here)."""
    session.add(obj)
    session.flush()


# --- meters -----------------------------------------------------------------------------------


def meters_by_system_title(session: Session, titles: Iterable[bytes]) -> dict[bytes, Meter]:
    """Existing meters among ``titles``, with their setups and keys loaded."""
    wanted = list(titles)
    found: dict[bytes, Meter] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = (
            select(Meter)
            .where(Meter.system_title.in_(chunk))
            .options(selectinload(Meter.setups).selectinload(SecuritySetup.keys))
        )
        for meter in session.scalars(query):
            found[meter.system_title] = meter
    return found


def meter_by_system_title(session: Session, title: bytes) -> Meter | None:
    """One meter with its setups and keys, or ``None``."""
    return meters_by_system_title(session, [title]).get(title)


class MeterRef(NamedTuple):
    """What certificate issuance needs of a meter: its id, suite and state, no setups or keys."""

    id: int
    system_title: bytes
    suite: int
    state: MeterState


def meter_refs_by_system_title(session: Session, titles: Iterable[bytes]) -> dict[bytes, MeterRef]:
    """Existing meters among ``titles`` as :class:`MeterRef`, one SELECT of four columns per 500
    titles: a batch of CSRs is checked without loading every meter's setups and keys (which
    :func:`meters_by_system_title` does, at three SELECTs and many objects per meter)."""
    wanted = list(dict.fromkeys(titles))
    found: dict[bytes, MeterRef] = {}
    for start in range(0, len(wanted), 500):
        query = select(Meter.id, Meter.system_title, Meter.suite, Meter.state).where(
            Meter.system_title.in_(wanted[start : start + 500])
        )
        for meter_id, title, suite, state in session.execute(query):
            found[title] = MeterRef(meter_id, title, suite, state)
    return found


def list_meters(
    session: Session, state: MeterState | None = None, limit: int | None = None
) -> list[Meter]:
    """Meters ordered by system title."""
    query = select(Meter).order_by(Meter.system_title)
    if state is not None:
        query = query.where(Meter.state == state)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_meters(session: Session) -> dict[str, int]:
    """Number of meters per state."""
    rows = session.execute(select(Meter.state, func.count()).group_by(Meter.state))
    return {state.value: count for state, count in rows}


def insert_meters(session: Session, rows: Sequence[dict[str, Any]]) -> dict[bytes, int]:
    """Insert meters; returns their ids by system title.

    One executemany and one select, not ``RETURNING``: SQLite cannot keep RETURNING rows in
    parameter order for a batch, so SQLAlchemy would fall back to one statement per row.
    """
    if not rows:
        return {}
    session.execute(insert(_TABLES["meter"]), list(rows))
    titles = [row["system_title"] for row in rows]
    ids: dict[bytes, int] = {}
    for start in range(0, len(titles), 500):
        query = select(Meter.id, Meter.system_title).where(
            Meter.system_title.in_(titles[start : start + 500])
        )
        ids.update((title, meter_id) for meter_id, title in session.execute(query))
    return ids


def insert_setups(session: Session, rows: Sequence[dict[str, Any]]) -> dict[tuple[int, bytes], int]:
    """Insert security setups; returns their ids by (meter id, logical name)."""
    if not rows:
        return {}
    session.execute(insert(_TABLES["security_setup"]), list(rows))
    meter_ids = sorted({row["meter_id"] for row in rows})
    ids: dict[tuple[int, bytes], int] = {}
    for start in range(0, len(meter_ids), 500):
        query = select(SecuritySetup.id, SecuritySetup.meter_id, SecuritySetup.logical_name).where(
            SecuritySetup.meter_id.in_(meter_ids[start : start + 500])
        )
        ids.update(((meter_id, ln), setup_id) for setup_id, meter_id, ln in session.execute(query))
    return ids


def insert_key_versions(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert key versions."""
    if rows:
        session.execute(insert(_TABLES["key_version"]), list(rows))


def activate_meter(session: Session, meter: Meter, when: datetime.datetime) -> int:
    """Move a PENDING meter and its PENDING key versions to ACTIVE; returns keys activated."""
    meter.state = MeterState.ACTIVE
    meter.confirmed_at = when
    setup_ids = [setup.id for setup in meter.setups]
    result = session.execute(
        update(KeyVersion)
        .where(KeyVersion.security_setup_id.in_(setup_ids), KeyVersion.state == KeyState.PENDING)
        .values(state=KeyState.ACTIVE, activated_at=when)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- invocation counters ----------------------------------------------------------------------


def lock_invocation_counter(
    session: Session, key_version_id: int, direction: Direction, initial: int
) -> InvocationCounter:
    """The counter row of a key version and direction, locked until the transaction ends.

    A missing row is created at ``initial`` first (``ON CONFLICT DO NOTHING``, so two processes
    creating it at once both end up locking the one row). PostgreSQL locks the row
    (``SELECT ... FOR UPDATE``); SQLite's ``BEGIN IMMEDIATE`` already holds the database's write
    lock for the whole transaction.
    """
    values = {"key_version_id": key_version_id, "direction": direction, "next_free": initial}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(InvocationCounter).values(values).on_conflict_do_nothing()
        )
    elif dialect == "sqlite":
        session.execute(sqlite.insert(InvocationCounter).values(values).on_conflict_do_nothing())
    else:  # pragma: no cover - make_engine accepts only these two
        raise NotImplementedError(dialect)
    query = (
        select(InvocationCounter)
        .where(
            InvocationCounter.key_version_id == key_version_id,
            InvocationCounter.direction == direction,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def lock_association(session: Session, association_id: int) -> Association:
    """An association row, locked until the transaction ends (its dedicated key's counters)."""
    query = (
        select(Association)
        .where(Association.id == association_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def association_by_handle(session: Session, handle: str) -> Association | None:
    """The association named ``handle``, with its setup and meter loaded."""
    query = (
        select(Association)
        .where(Association.handle == handle)
        .options(selectinload(Association.setup).selectinload(SecuritySetup.meter))
    )
    return session.scalars(query).one_or_none()


def invocation_counter(session: Session, key_version_id: int, direction: Direction) -> int | None:
    """``next_free`` of a key version and direction without locking it, or ``None``."""
    query = select(InvocationCounter.next_free).where(
        InvocationCounter.key_version_id == key_version_id,
        InvocationCounter.direction == direction,
    )
    return session.scalars(query).one_or_none()


def key_version_states(session: Session, ids: Sequence[int]) -> dict[int, KeyState]:
    """The current state of each of these key versions (a missing one is left out)."""
    query = select(KeyVersion.id, KeyVersion.state).where(KeyVersion.id.in_(list(ids)))
    return {key_id: state for key_id, state in session.execute(query)}


def audit_head(session: Session) -> AuditEvent | None:
    """The newest audit event."""
    return session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()


def insert_audit_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append audit events (the caller holds the chain lock and computed the hashes)."""
    if rows:
        session.execute(insert(_TABLES["audit_event"]), list(rows))


def audit_events(session: Session, after_seq: int = 0, batch: int = 5000) -> Iterable[AuditEvent]:
    """Every audit event in sequence order, streamed in batches."""
    last = after_seq
    while True:
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def audit_checkpoints(session: Session) -> list[AuditCheckpoint]:
    """Every checkpoint, oldest first."""
    return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


def audit_event(session: Session, seq: int) -> AuditEvent | None:
    """The audit event ``seq``, or ``None``."""
    return session.get(AuditEvent, seq)


def find_audit_events(
    session: Session,
    *,
    after_seq: int | None = None,
    since: datetime.datetime | None = None,
    operation: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """The audit events matching every filter given, oldest first; with ``limit``, the newest
    ``limit`` of them."""
    query = select(AuditEvent)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if operation is not None:
        query = query.where(AuditEvent.operation == operation)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    query = query.order_by(AuditEvent.seq.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(list(session.scalars(query))))


def audit_checkpoint_covering(session: Session, seq: int) -> AuditCheckpoint | None:
    """The earliest checkpoint whose signature covers event ``seq`` (its seq is ``seq`` or
    later), or ``None``."""
    query = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.seq >= seq)
        .order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
        .limit(1)
    )
    return session.scalars(query).first()


def last_audit_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The newest checkpoint."""
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    return session.scalars(query).first()
