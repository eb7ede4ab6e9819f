"""docs/architecture.md, invariant 6: the audit log is hash-chained, its checkpoints are signed
in the token,
and deletion, edit or reordering is detected.

Every tampering test builds the same chain through :mod:`kms.services.common.audit` (two
checkpoints, events before and after each), then changes the database *directly with SQL*, as
someone with write access to the database but not to the token would, commits, and shows that
:func:`kms.services.common.audit.verify` raises :class:`kms.errors.AuditChainBroken`. Variants of
one kind of tampering run as subtests over the same chain, each tampering inside a transaction that
is rolled back after the check. Where an attacker could, the chain is rebuilt consistently (the
hashes are unkeyed SHA-256), to show that the token-signed checkpoints are what catches it.

A checkpoint naming a key the token lacks, and a newest checkpoint deleted together with the
events it covers (caught by the anchor the token keeps), are detected too.

The concurrency tests run two appenders at once, as two threads each with its own
:class:`kms.db.Database`, and as two processes on the same database URL (neither process shares
the parent's :class:`kms.hsm.Hsm`), and show the chain never forks.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, select, text, update
from sqlalchemy.orm import Session

from kms.db import AuditCheckpoint, AuditEvent, Database, ModelBase
from kms.errors import AuditChainBroken
from kms.services.common import audit
from kms.services.common.audit import GENESIS, AuditRecord, VerifyReport
from tests.kms_fixtures import Kms

EVENTS = ModelBase.metadata.tables[AuditEvent.__tablename__]
CHECKPOINTS = ModelBase.metadata.tables[AuditCheckpoint.__tablename__]
#: Every column of an event but its sequence number: "the contents" of a row.
CONTENT_COLUMNS = [c.name for c in EVENTS.columns if c.name != "seq"]

#: The chain every tampering test starts from:
#:   1-4 records, 5 = audit.checkpoint (checkpoint 1 at seq 5),
#:   6-8 records, 9 = audit.checkpoint (checkpoint 2 at seq 9), 10-11 records.
FIRST_CHECKPOINT, LAST_CHECKPOINT, HEAD = 5, 9, 11


def _records(prefix: str, count: int) -> list[AuditRecord]:
    return [
        AuditRecord(
            "meter.provision",
            f"4D4D4D{prefix}{i:08X}",
            {"suite": i % 3, "setups": {"0.0.43.0.0.255": {"GUEK": f"{i:06X}"}}},
        )
        for i in range(count)
    ]


def _append(kms: Kms, records: list[AuditRecord], actor: str = "pytest") -> int:
    with kms.db.begin() as session:
        return audit.append(session, actor, records)


def _checkpoint(kms: Kms) -> None:
    with kms.db.begin() as session:
        audit.checkpoint(kms.hsm, session, kms.root.audit, "pytest")


def _verify(kms: Kms) -> VerifyReport:
    with kms.db.begin() as session:
        return audit.verify(kms.hsm, session)


@pytest.fixture
def chain(kms: Kms) -> Kms:
    """The KMS with the chain described at :data:`HEAD`, verified once before any tampering."""
    assert _append(kms, _records("A", 2)) == 2
    assert _append(kms, _records("B", 2), actor="operator-1") == 4
    _checkpoint(kms)
    _append(kms, _records("C", 3))
    _checkpoint(kms)
    assert _append(kms, _records("D", 2)) == HEAD
    report = _verify(kms)
    assert (report.events, report.checkpoints, report.head_seq) == (HEAD, 2, HEAD)
    return kms


def _tamper(kms: Kms, change: Callable[[Connection], Any]) -> None:
    """Change the database outside the KMS: a plain connection, plain statements, committed."""
    with kms.db.engine.begin() as conn:
        change(conn)


def _event(conn: Connection, seq: int) -> dict[str, Any]:
    return dict(conn.execute(select(EVENTS).where(EVENTS.c.seq == seq)).one()._mapping)


def _expect_broken(kms: Kms, match: str | None = None) -> AuditChainBroken:
    """Verify (in a transaction of its own, as ``kms audit verify`` does) and expect a break."""
    with pytest.raises(AuditChainBroken, match=match) as caught:
        _verify(kms)
    return caught.value


def _expect_broken_then_undo(
    kms: Kms, change: Callable[[Connection], Any], match: str | None = None
) -> AuditChainBroken:
    """Tamper in a transaction, verify inside it, and roll the tampering back.

    For the variants run as subtests of one test over one chain: the verifying session is bound
    to the tampering connection, so it sees the change, and the rollback restores the chain for
    the next variant.
    """
    with kms.db.engine.connect() as conn:
        transaction = conn.begin()
        try:
            change(conn)
            with (
                Session(bind=conn) as session,
                pytest.raises(AuditChainBroken, match=match) as caught,
            ):
                audit.verify(kms.hsm, session)
        finally:
            transaction.rollback()
    return caught.value


def _rechain(conn: Connection, from_seq: int = 1) -> None:
    """Recompute every hash from ``from_seq`` on, as an attacker with database access can."""
    rows = conn.execute(select(EVENTS).where(EVENTS.c.seq >= from_seq).order_by(EVENTS.c.seq))
    prev = GENESIS
    if from_seq > 1:
        prev = conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == from_seq - 1)).scalar_one()
    for row in list(rows):
        record = audit.canonical(
            row.seq,
            row.occurred_at,
            row.actor,
            row.operation,
            row.subject,
            row.outcome,
            row.details,
        )
        digest = audit.chain_hash(bytes(prev), record)
        conn.execute(
            update(EVENTS).where(EVENTS.c.seq == row.seq).values(prev_hash=prev, hash=digest)
        )
        prev = digest


# --- the untouched chain ----------------------------------------------------------------------


def test_append_checkpoint_and_verify_report_the_counts(kms: Kms) -> None:
    assert _verify(kms) == VerifyReport(0, 0, 0, GENESIS.hex())  # an empty log verifies
    assert _append(kms, _records("A", 3)) == 3
    assert _append(kms, _records("B", 2), actor="operator-1") == 5
    _checkpoint(kms)  # itself audited first: event 6

    report = _verify(kms)

    assert report.events == 6
    assert report.checkpoints == 1
    assert report.head_seq == 6
    with kms.db.engine.connect() as conn:
        head = _event(conn, 6)
        checkpoint = conn.execute(select(CHECKPOINTS)).one()
    assert report.head_hash == bytes(head["hash"]).hex()
    assert head["operation"] == "audit.checkpoint"
    assert head["subject"] == kms.root.audit.label
    assert (checkpoint.seq, bytes(checkpoint.head_hash)) == (6, bytes(head["hash"]))
    assert checkpoint.key_label == kms.root.audit.label


def test_the_chain_is_sha256_over_the_documented_json_from_genesis(chain: Kms) -> None:
    # Recomputed from the module docstring's description, independently of audit.canonical, so a
    # silent change of the format (which would orphan every stored chain) fails here.
    with chain.db.engine.connect() as conn:
        rows = list(conn.execute(select(EVENTS).order_by(EVENTS.c.seq)))

    assert [row.seq for row in rows] == list(range(1, HEAD + 1))
    prev = GENESIS
    for row in rows:
        when = row.occurred_at
        if when.tzinfo is None:  # SQLite hands back naive datetimes; every stored time is UTC
            when = when.replace(tzinfo=datetime.UTC)
        record = {
            "seq": row.seq,
            "occurred_at": when.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
            "actor": row.actor,
            "operation": row.operation,
            "subject": row.subject,
            "outcome": row.outcome,
            "details": row.details,
        }
        encoded = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        assert bytes(row.prev_hash) == prev
        assert bytes(row.hash) == hashlib.sha256(prev + encoded).digest()
        prev = bytes(row.hash)
    # details are canonical JSON too: compact, keys sorted.
    assert rows[0].details == '{"setups":{"0.0.43.0.0.255":{"GUEK":"000000"}},"suite":0}'


def test_events_are_written_with_the_callers_transaction_or_not_at_all(kms: Kms) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), kms.db.begin() as session:
        audit.append(session, "pytest", _records("A", 3))
        raise Abort

    assert _verify(kms).events == 0
    assert _append(kms, _records("B", 1)) == 1  # the rolled-back seqs are reused, gap-free


# --- an edited event --------------------------------------------------------------------------

MIDDLE = 7  # a record between the two checkpoints, with "suite":1 in its details


def _edit(seq: int, column: str, edit: Callable[[Any], Any]) -> Callable[[Connection], None]:
    def change(conn: Connection) -> None:
        old = _event(conn, seq)[column]
        new = edit(old)
        assert new != old
        conn.execute(update(EVENTS).where(EVENTS.c.seq == seq).values({column: new}))

    return change


def _flipped(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x01]) + bytes(value[1:])


EDITS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "subject": ("subject", lambda v: "4D4D4D0000000099"),
    "details": ("details", lambda v: v.replace('"suite":1', '"suite":2')),
    "actor": ("actor", lambda v: "somebody-else"),
    "occurred_at by 1 us": ("occurred_at", lambda v: v + datetime.timedelta(microseconds=1)),
}


@pytest.mark.parametrize(("column", "edit"), EDITS.values(), ids=EDITS.keys())
def test_editing_a_field_of_an_event_is_detected(
    chain: Kms, column: str, edit: Callable[[Any], Any]
) -> None:
    _tamper(chain, _edit(MIDDLE, column, edit))

    _expect_broken(chain, f"audit event {MIDDLE} was altered")


def test_editing_any_other_field_anywhere_is_detected(
    chain: Kms, subtests: pytest.Subtests
) -> None:
    variants = {
        "operation": (_edit(MIDDLE, "operation", lambda v: "meter.confirm"), "was altered"),
        "outcome": (_edit(MIDDLE, "outcome", lambda v: "failure"), "was altered"),
        "hash": (_edit(MIDDLE, "hash", _flipped), f"event {MIDDLE} was altered"),
        "prev_hash": (_edit(MIDDLE, "prev_hash", _flipped), f"event {MIDDLE} does not link"),
        "the first event": (_edit(1, "actor", lambda v: "x"), "audit event 1 was altered"),
        "a checkpoint's own event": (
            _edit(FIRST_CHECKPOINT, "subject", lambda v: "x"),
            f"audit event {FIRST_CHECKPOINT} was altered",
        ),
        "after the last checkpoint": (
            _edit(HEAD, "subject", lambda v: "x"),
            f"audit event {HEAD} was altered",
        ),
    }
    for name, (change, match) in variants.items():
        with subtests.test(name):
            _expect_broken_then_undo(chain, change, match)
    _verify(chain)  # every variant was rolled back


def _swap_contents(first: int, second: int) -> Callable[[Connection], None]:
    def change(conn: Connection) -> None:
        rows = {first: _event(conn, second), second: _event(conn, first)}
        for seq, row in rows.items():
            conn.execute(
                update(EVENTS)
                .where(EVENTS.c.seq == seq)
                .values({c: row[c] for c in CONTENT_COLUMNS})
            )

    return change


def _recompute_checkpoint_heads(conn: Connection) -> None:
    for cp in list(conn.execute(select(CHECKPOINTS))):
        head = conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == cp.seq)).scalar_one()
        conn.execute(update(CHECKPOINTS).where(CHECKPOINTS.c.id == cp.id).values(head_hash=head))


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoints(
    chain: Kms, subtests: pytest.Subtests
) -> None:
    # The hashes are plain SHA-256, so whoever edits the database can recompute them after an
    # edit; what they cannot recompute is the token's signature over the head a checkpoint covers.
    def edit(conn: Connection) -> None:
        conn.execute(text("UPDATE audit_event SET subject = 'rewritten' WHERE seq = 2"))

    def delete(conn: Connection) -> None:
        conn.execute(text("DELETE FROM audit_event WHERE seq = 3"))
        for seq in range(4, HEAD + 1):  # renumber, ascending so the primary key never collides
            conn.execute(update(EVENTS).where(EVENTS.c.seq == seq).values(seq=seq - 1))

    attacks = {"edit": edit, "delete and renumber": delete, "reorder": _swap_contents(2, 3)}
    for name, attack in attacks.items():
        with subtests.test(f"{name}, chain recomputed"):

            def rechained(conn: Connection, attack: Callable[[Connection], None] = attack) -> None:
                attack(conn)
                _rechain(conn, from_seq=2)

            _expect_broken_then_undo(chain, rechained, "checkpoint .* does not match event")
        with subtests.test(f"{name}, chain and checkpoint heads recomputed"):

            def rewritten(conn: Connection, attack: Callable[[Connection], None] = attack) -> None:
                attack(conn)
                _rechain(conn, from_seq=2)
                _recompute_checkpoint_heads(conn)

            _expect_broken_then_undo(chain, rewritten, "signature does not verify")
    _verify(chain)


# --- deleted, reordered, truncated ------------------------------------------------------------


def test_deleting_a_middle_event_is_detected(chain: Kms) -> None:
    _tamper(chain, lambda c: c.execute(text("DELETE FROM audit_event WHERE seq = 3")))

    _expect_broken(chain, "audit event 3 is missing")


def test_deleting_a_middle_event_and_renumbering_the_rest_is_detected(chain: Kms) -> None:
    # No gap left behind: the later events move down one seq; the links no longer hold.
    def change(conn: Connection) -> None:
        conn.execute(text("DELETE FROM audit_event WHERE seq = 3"))
        for seq in range(4, HEAD + 1):
            conn.execute(update(EVENTS).where(EVENTS.c.seq == seq).values(seq=seq - 1))

    _tamper(chain, change)

    _expect_broken(chain, "audit event 3 does not link")


def test_swapping_the_contents_of_two_events_is_detected(chain: Kms) -> None:
    _tamper(chain, _swap_contents(2, 3))

    _expect_broken(chain, "audit event 2 does not link")


def test_truncating_the_tail_covered_by_a_checkpoint_is_detected(
    chain: Kms, subtests: pytest.Subtests
) -> None:
    def truncate(keep: int) -> Callable[[Connection], Any]:
        return lambda c: c.execute(
            text("DELETE FROM audit_event WHERE seq > :keep"), {"keep": keep}
        )

    for keep in (FIRST_CHECKPOINT - 1, 0):
        with subtests.test(f"down to {keep} events"):
            _expect_broken_then_undo(chain, truncate(keep), "the log was truncated")

    _tamper(chain, truncate(LAST_CHECKPOINT - 1))

    _expect_broken(
        chain, f"covers event {LAST_CHECKPOINT}, which is missing: the log was truncated"
    )


# --- edited checkpoints -----------------------------------------------------------------------


def _set_checkpoint(at: int, **values: Any) -> Callable[[Connection], None]:
    """Set columns of the checkpoint that covers event ``at``."""

    def change(conn: Connection) -> None:
        conn.execute(update(CHECKPOINTS).where(CHECKPOINTS.c.seq == at).values(**values))

    return change


def _signature(conn: Connection, seq: int) -> bytes:
    found = conn.execute(select(CHECKPOINTS.c.signature).where(CHECKPOINTS.c.seq == seq))
    return bytes(found.scalar_one())


def test_editing_a_checkpoint_signature_is_detected(chain: Kms, subtests: pytest.Subtests) -> None:
    with chain.db.engine.connect() as conn:
        signature = _signature(conn, LAST_CHECKPOINT)
        other = _signature(conn, FIRST_CHECKPOINT)
    replacements = {
        "last byte flipped": signature[:-1] + bytes([signature[-1] ^ 1]),
        "copied from the other checkpoint": other,
        "empty": b"",
        "zeros": bytes(96),
        "odd length": b"\x01" * 95,
    }
    for name, replacement in replacements.items():
        with subtests.test(name):
            _expect_broken_then_undo(
                chain,
                _set_checkpoint(LAST_CHECKPOINT, signature=replacement),
                "signature does not verify|unusable",
            )

    flipped = bytearray(signature)
    flipped[47] ^= 0x01  # in r: P-384's r||s is 96 bytes
    _tamper(chain, _set_checkpoint(LAST_CHECKPOINT, signature=bytes(flipped)))

    _expect_broken(chain, f"checkpoint .*seq {LAST_CHECKPOINT}.*signature does not verify")


def test_editing_a_checkpoint_head_hash_is_detected(chain: Kms) -> None:
    def change(conn: Connection) -> None:
        cp = conn.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.seq == FIRST_CHECKPOINT)).one()
        _set_checkpoint(FIRST_CHECKPOINT, head_hash=_flipped(bytes(cp.head_hash)))(conn)

    _tamper(chain, change)

    _expect_broken(chain, f"does not match event {FIRST_CHECKPOINT}")


def test_editing_a_checkpoint_seq_is_detected(chain: Kms, subtests: pytest.Subtests) -> None:
    with subtests.test("to an event that does not exist"):
        _expect_broken_then_undo(
            chain, _set_checkpoint(LAST_CHECKPOINT, seq=HEAD + 5), "which is missing"
        )

    with subtests.test("to another event, with that event's hash"):
        # seq and head_hash changed together, consistently with the chain: only the signature,
        # which covers both, can tell.
        def moved(conn: Connection) -> None:
            target = _event(conn, HEAD)
            _set_checkpoint(LAST_CHECKPOINT, seq=HEAD, head_hash=target["hash"])(conn)

        _expect_broken_then_undo(chain, moved, "signature does not verify")

    _tamper(chain, _set_checkpoint(FIRST_CHECKPOINT, seq=FIRST_CHECKPOINT - 1))

    _expect_broken(chain, f"does not match event {FIRST_CHECKPOINT - 1}")


def test_editing_a_checkpoint_key_label_is_detected_as_a_broken_chain(chain: Kms) -> None:
    _tamper(chain, lambda c: c.execute(text("UPDATE audit_checkpoint SET key_label = 'nope'")))

    _expect_broken(chain)


def test_deleting_the_newest_checkpoint_with_the_tail_it_covers_is_detected(chain: Kms) -> None:
    def change(conn: Connection) -> None:
        conn.execute(
            text("DELETE FROM audit_checkpoint WHERE seq = :seq"), {"seq": LAST_CHECKPOINT}
        )
        conn.execute(text("DELETE FROM audit_event WHERE seq > :seq"), {"seq": FIRST_CHECKPOINT})

    _tamper(chain, change)

    _expect_broken(chain)


# --- two appenders at once --------------------------------------------------------------------

PER_APPENDER = 50


def _append_many(url: str, name: str, start: Any, checkpoint: Callable[[Any], None] | None) -> None:
    """One appender: its own Database, one transaction per event, a checkpoint now and then."""
    db = Database(url)
    try:
        start.wait(timeout=60)
        for i in range(PER_APPENDER):
            with db.begin() as session:
                audit.append(session, name, [AuditRecord("test.concurrent", f"{name}-{i:03d}")])
                if checkpoint is not None and i % 10 == 9:
                    checkpoint(session)
    finally:
        db.dispose()


def _process_appender(url: str, name: str, start: Any, errors: Any) -> None:
    try:
        _append_many(url, name, start, None)
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"{name}: {type(exc).__name__}: {exc}")


def _check_no_fork(kms: Kms, names: list[str]) -> None:
    _checkpoint(kms)
    report = _verify(kms)
    with kms.db.engine.connect() as conn:
        rows = list(conn.execute(select(EVENTS).order_by(EVENTS.c.seq)))
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert report.head_seq == report.events == len(rows)
    for name in names:
        mine = [
            row.subject for row in rows if row.actor == name and row.operation != "audit.checkpoint"
        ]
        # Each appender's events are all there, once each, in the order it appended them.
        assert mine == [f"{name}-{i:03d}" for i in range(PER_APPENDER)]


def test_two_threads_appending_at_once_never_fork_the_chain(kms: Kms) -> None:
    # Each thread has its own Database; they share the process's Hsm (the adapter serialises
    # calls into the token) to sign checkpoints in the middle of the run.
    def checkpoint(session: Any) -> None:
        audit.checkpoint(kms.hsm, session, kms.root.audit, "checkpointer")

    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(name: str) -> None:
        try:
            _append_many(kms.db.url, name, start, checkpoint)
        except BaseException as exc:
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("thread-1", "thread-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert failures == []
    _check_no_fork(kms, ["thread-1", "thread-2"])
    assert _verify(kms).checkpoints == 2 * (PER_APPENDER // 10) + 1


def test_two_processes_appending_at_once_never_fork_the_chain(kms: Kms) -> None:
    # Spawned, not forked: a child must not inherit the parent's PKCS#11 module or connections.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    errors = context.Queue()
    names = ["process-1", "process-2"]
    processes = [
        context.Process(target=_process_appender, args=(kms.db.url, name, start, errors))
        for name in names
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.kill()
    reported = []
    while not errors.empty():
        reported.append(errors.get(timeout=5))

    assert not alive
    assert reported == []
    assert [p.exitcode for p in processes] == [0, 0]
    _check_no_fork(kms, names)


# --- the anchor in the token ------------------------------------------------------------------


def test_dropping_every_checkpoint_and_the_tail_is_caught_by_the_token_anchor(chain: Kms) -> None:
    """Without the anchor, a database writer could remove all evidence of the newest events."""

    def change(conn: Connection) -> None:
        conn.execute(text("DELETE FROM audit_checkpoint"))
        conn.execute(text("DELETE FROM audit_event WHERE seq >= :seq"), {"seq": FIRST_CHECKPOINT})

    _tamper(chain, change)

    _expect_broken(chain, "holds no audit anchor|no longer holds")


def test_a_database_without_the_anchored_checkpoint_is_refused(chain: Kms) -> None:
    """Rolling the database back to before the newest checkpoint is a truncation, too."""

    def change(conn: Connection) -> None:
        conn.execute(
            text("DELETE FROM audit_checkpoint WHERE seq = :seq"), {"seq": LAST_CHECKPOINT}
        )
        conn.execute(text("DELETE FROM audit_event WHERE seq >= :seq"), {"seq": LAST_CHECKPOINT})

    _tamper(chain, change)

    _expect_broken(chain, f"anchors the checkpoint at event {LAST_CHECKPOINT}")


def test_the_anchor_follows_the_newest_checkpoint(chain: Kms) -> None:
    values = chain.hsm.read_data(audit.ANCHOR_LABEL)
    assert len(values) == 1
    seq = int.from_bytes(values[0][:8], "big")
    assert seq == LAST_CHECKPOINT
    _checkpoint(chain)
    (value,) = chain.hsm.read_data(audit.ANCHOR_LABEL)
    assert int.from_bytes(value[:8], "big") == HEAD + 1
    assert _verify(chain).checkpoints == 3


def test_a_checkpoint_whose_transaction_rolls_back_leaves_the_anchor_alone(chain: Kms) -> None:
    (before,) = chain.hsm.read_data(audit.ANCHOR_LABEL)
    with pytest.raises(RuntimeError), chain.db.begin() as session:
        audit.checkpoint(chain.hsm, session, chain.root.audit, "pytest")
        raise RuntimeError("the station crashed before commit")
    assert chain.hsm.read_data(audit.ANCHOR_LABEL) == [before]
    assert _verify(chain).checkpoints == 2
