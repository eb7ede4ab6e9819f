"""Invocation counters: each (key, system title, IC) is used at most once, ever
(docs/architecture.md, invariant 4; Green Book clause 9.2.3.3.7.3 as quoted in
docs/dlms-security.md section 7).

Sending. A process never takes an IC straight from the database row: it *reserves* a block of
``ic_block_size`` counters in one committed row update (the row locked, ``next_free`` moved past
the block) and then hands them out from memory. A crash loses the rest of the block -- those
counters are skipped, never reused -- and two processes always hold disjoint blocks, on
PostgreSQL (row lock) and on SQLite (the write lock of ``BEGIN IMMEDIATE``) alike. So at most one
commit is paid per ``ic_block_size`` protected APDUs. The first IC of a new key is 1, not 0:
gaps are allowed, and a meter that wrongly treats its initial floor of 0 as already used still
accepts 1. IC 0xFFFFFFFF is never sent (a receiver must reject it); when a key's counters run
out, :class:`~kms.errors.InvocationCounterExhausted` tells the operator to renew the key.

Receiving. The floor (``next_free`` of the RECEIVE row: the lowest acceptable IC) moves only
after the tag verified, in a transaction that locks the row, re-checks the IC against the floor
it finds there (another process may have moved it), stores IC + 1 and commits before the caller
sees the plaintext. A lower or equal IC raises :class:`~kms.errors.InvocationCounterError`
carrying the lowest IC that would have been accepted; nothing is written.

Counters belong to a key *version* and a direction, as the meter keeps them (notes section 11):
a renewed key starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from kms.db import Direction, Session
from kms.db import repository as repo
from kms.dlms.security_control import MAX_INVOCATION_COUNTER
from kms.errors import InvocationCounterError, InvocationCounterExhausted

__all__ = [
    "FIRST_INVOCATION_COUNTER",
    "LAST_INVOCATION_COUNTER",
    "CounterBlock",
    "accept_dedicated",
    "accept_received",
    "check_floor",
    "reserve_block",
    "reserve_dedicated_block",
]

#: The first IC the KMS sends under a new key (module docstring: why not 0).
FIRST_INVOCATION_COUNTER = 1
#: The last IC the KMS sends: 0xFFFFFFFF itself is never used.
LAST_INVOCATION_COUNTER = MAX_INVOCATION_COUNTER - 1


@dataclass
class CounterBlock:
    """ICs ``next`` .. ``end - 1``, reserved for this process alone."""

    next: int
    end: int

    def take(self) -> int | None:
        """The next IC of the block, or ``None`` when the block is used up."""
        if self.next >= self.end:
            return None
        ic = self.next
        self.next += 1
        return ic

    @property
    def remaining(self) -> int:
        """How many ICs are left in the block."""
        return max(0, self.end - self.next)


def reserve_block(session: Session, key_version_id: int, size: int, what: str) -> CounterBlock:
    """Reserve the next ``size`` sending ICs of a key version in the caller's transaction.

    The block is the caller's only once the transaction commits. A block may be shorter than
    ``size`` near the end of the counter space; an empty one raises
    :class:`~kms.errors.InvocationCounterExhausted` naming ``what`` (the key, for the operator).
    """
    row = repo.lock_invocation_counter(
        session, key_version_id, Direction.SEND, FIRST_INVOCATION_COUNTER
    )
    block = _block(row.next_free, size, what)
    row.next_free = block.end
    session.flush()
    return block


def reserve_dedicated_block(
    session: Session, association_id: int, size: int, what: str
) -> CounterBlock:
    """:func:`reserve_block` for the dedicated key of an association (counters on its row)."""
    row = repo.lock_association(session, association_id)
    block = _block(row.next_send_ic, size, what)
    row.next_send_ic = block.end
    session.flush()
    return block


def accept_received(session: Session, key_version_id: int, ic: int, what: str) -> None:
    """Move the receive floor past ``ic`` (call only after the tag verified).

    Raises :class:`~kms.errors.InvocationCounterError` (and writes nothing) when ``ic`` is below
    the floor found under the row lock, or is 0xFFFFFFFF.
    """
    row = repo.lock_invocation_counter(session, key_version_id, Direction.RECEIVE, 0)
    check_floor(ic, row.next_free, what)
    row.next_free = ic + 1
    session.flush()


def accept_dedicated(session: Session, association_id: int, ic: int, what: str) -> None:
    """:func:`accept_received` for the dedicated key of an association."""
    row = repo.lock_association(session, association_id)
    check_floor(ic, row.receive_floor, what)
    row.receive_floor = ic + 1
    session.flush()


def _block(start: int, size: int, what: str) -> CounterBlock:
    if size < 1:
        raise ValueError("a block holds at least one invocation counter")
    if start > LAST_INVOCATION_COUNTER:
        raise InvocationCounterExhausted(
            f"{what} has used every invocation counter up to 0x{LAST_INVOCATION_COUNTER:08X}: "
            "renew the key before protecting more APDUs with it"
        )
    return CounterBlock(start, min(start + size, LAST_INVOCATION_COUNTER + 1))


def check_floor(ic: int, floor: int, what: str) -> None:
    """Refuse a received ``ic`` below ``floor`` or equal to 0xFFFFFFFF.

    Also used before any cryptography against the floor a process last saw, as a cheap early
    answer to a replay; :func:`accept_received` checks again under the row lock.
    """
    if ic > LAST_INVOCATION_COUNTER:
        raise InvocationCounterError(
            f"invocation counter 0x{ic:08X} under {what} is the maximum, which is never valid",
            expected=floor,
        )
    if ic < floor:
        raise InvocationCounterError(
            f"invocation counter {ic} under {what} was already used or is too low: "
            f"the lowest acceptable is {floor}",
            expected=floor,
        )
