"""The invocation counters a process sends and receives under, for global and dedicated keys.

Each (key, system title, IC) is used at most once, ever (:mod:`kms.keystore.counters` holds the
rules and the row updates). Committing per APDU would put a transaction on every message, so an
:class:`InvocationCounters` keeps, per process:

* one reserved block of sending ICs per key version and per association's dedicated key, handed
  out from memory; reserving a block is one committed row update, audited (``ic.reserve``) as
  the caller that needed it;
* the receive floor this process last saw per key, a cheap early answer to a replay before any
  token work (the floor in the database, moved under its row lock once a tag verified, decides).

States change under a running process. Reserving a block re-reads the state of the key and of
its setup's GAK (the AAD's key), and accepting a received IC that of the key; a key version no
longer ACTIVE is evicted with everything cached for its meter
(:meth:`~kms.services.hes.setup_keys.SetupKeyCache.evict`, which tells this object to drop the
blocks and floors of each version it forgets). So a revoked key stops protecting within a block
and a quarter (``ic_block_size`` APDUs, and the quarter before the next block was reserved
ahead); receiving stops at once. A closed association is found the same way, and whoever
registered with :meth:`on_closed` forgets it.

Shared by the threads of a process under the process's one lock; a reservation ahead runs on a
database thread of its own, which touches the database only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

from kms.config import Config
from kms.db import AssociationState, Database, KeyRole, Session
from kms.db import repository as repo
from kms.errors import KeyStateError
from kms.keystore import counters
from kms.services.common import audit
from kms.services.hes.key_refs import DedicatedRef, KeyRef
from kms.services.hes.setup_keys import SetupKeyCache, check_active

__all__ = ["InvocationCounters"]


class InvocationCounters:
    """Per-process IC blocks and receive floors (module docstring)."""

    def __init__(
        self,
        db: Database,
        config: Config,
        lock: threading.RLock,
        setups: SetupKeyCache,
        *,
        ic_block_size: int | None = None,
    ) -> None:
        self._db = db
        self._lock = lock
        self._setups = setups
        self._block_size = ic_block_size or config.ic_block_size
        self._blocks: dict[int, counters.CounterBlock] = {}
        self._dedicated_blocks: dict[int, counters.CounterBlock] = {}
        self._floors: dict[Hashable, int] = {}
        #: Blocks being reserved ahead, by key version id, and when to start the next one.
        self._ahead: dict[int, Future[counters.CounterBlock]] = {}
        self._prefetch_at = self._block_size // 4 if self._block_size >= 16 else -1
        self._executor: ThreadPoolExecutor | None = None
        self._closed_hooks: list[Callable[[str], None]] = []
        setups.on_forget(self._forget)

    # --- the keys of a setup -----------------------------------------------------------------

    def next_send_ic(self, ref: KeyRef, *, actor: str) -> int:
        """The next sending IC under ``ref``: from this process's block, or a new block
        (reserved and audited as ``actor``).

        Reserving a block re-reads the key's state: a key no longer ACTIVE is evicted and
        refused (:class:`~kms.errors.KeyStateError`). With blocks of 16 or more, the next block
        is reserved on a database thread once a quarter of the current one is left, so that
        the APDU that crosses a block boundary does not wait for a commit; a crash then skips
        at most two blocks, never reuses one.
        """
        with self._lock:
            block = self._blocks.get(ref.id)
            if block is not None:
                ic = block.take()
                if ic is not None:
                    if block.end - block.next == self._prefetch_at and ref.id not in self._ahead:
                        watched = self._watched(ref)
                        self._ahead[ref.id] = self._pool().submit(
                            self._reserve, ref, watched, actor
                        )
                    return ic
            ahead = self._ahead.pop(ref.id, None)
            watched = self._watched(ref)
            try:
                # A block reserved ahead had the states read when it was reserved, a quarter
                # of a block ago: no second transaction (one commit per block).
                block = ahead.result() if ahead is not None else self._reserve(ref, watched, actor)
            except KeyStateError:
                self._setups.evict(ref.identity.system_title)
                raise
            self._blocks[ref.id] = block
            ic = block.take()
            assert ic is not None
            return ic

    def _watched(self, ref: KeyRef) -> tuple[KeyRef, ...]:
        """The key versions whose state decides whether ``ref`` may send: itself and the GAK of
        its setup (the AAD's key)."""
        setup = self._setups.active_setup_of(ref)
        gak = setup.active(KeyRole.GAK) if setup is not None else None
        return (ref,) if gak is None else (ref, gak)

    def _reserve(
        self, ref: KeyRef, watched: tuple[KeyRef, ...], actor: str
    ) -> counters.CounterBlock:
        """One committed reservation (any thread: it touches the database only)."""
        with self._db.begin() as session:
            check_active(session, watched)
            block = counters.reserve_block(session, ref.id, self._block_size, ref.describe())
            details = {"first": block.next, "last": block.end - 1, "direction": "SEND"}
            audit.append(session, actor, [audit.AuditRecord("ic.reserve", ref.describe(), details)])
        return block

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kms-ic")
        return self._executor

    def check_received(self, ref: KeyRef, ic: int) -> None:
        """Refuse an IC below the floor this process last saw, before any token work."""
        with self._lock:
            floor = self._floors.get(ref.id, 0)
        counters.check_floor(ic, floor, ref.describe())

    def accept_received(self, ref: KeyRef, ic: int) -> None:
        """Persist the receive floor past ``ic`` (after the tag verified), or refuse ``ic``."""
        with self._lock:
            with self._db.begin() as session:
                self._setups.require_active(ref, session)
                counters.accept_received(session, ref.id, ic, ref.describe())
            self._floors[ref.id] = ic + 1

    def _forget(self, ref: KeyRef) -> None:
        """Drop what is kept under a key version its setup cache forgot."""
        with self._lock:
            self._blocks.pop(ref.id, None)  # the rest of the block is skipped, never reused
            self._ahead.pop(ref.id, None)  # so is a block reserved ahead
            self._floors.pop(ref.id, None)

    # --- the dedicated keys of associations --------------------------------------------------

    def next_dedicated_ic(self, ref: DedicatedRef) -> int:
        """The next sending IC under an association's dedicated key (blocks, as for keys)."""
        with self._lock:
            block = self._dedicated_blocks.get(ref.id)
            ic = block.take() if block is not None else None
            if ic is not None:
                return ic
            with self._db.begin() as session:
                self._require_open(session, ref)
                block = counters.reserve_dedicated_block(
                    session, ref.id, self._block_size, ref.describe()
                )
            self._dedicated_blocks[ref.id] = block
            ic = block.take()
            assert ic is not None
            return ic

    def check_dedicated(self, ref: DedicatedRef, ic: int) -> None:
        """Refuse an IC below the floor this process last saw under the dedicated key."""
        with self._lock:
            floor = self._floors.get(ref.cache_name, 0)
        counters.check_floor(ic, floor, ref.describe())

    def accept_dedicated(self, ref: DedicatedRef, ic: int) -> None:
        """:meth:`accept_received` for an association's dedicated key."""
        with self._lock:
            with self._db.begin() as session:
                self._require_open(session, ref)
                counters.accept_dedicated(session, ref.id, ic, ref.describe())
            self._floors[ref.cache_name] = ic + 1

    def _require_open(self, session: Session, ref: DedicatedRef) -> None:
        row = repo.lock_association(session, ref.id)
        if row.state is not AssociationState.OPEN:
            for hook in self._closed_hooks:
                hook(ref.handle)
            raise KeyStateError(f"association {ref.handle} is closed: open a new one")

    def on_closed(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(handle)`` when an association is found closed, so that its holder
        forgets it (and this object, through :meth:`forget_dedicated`, its counters)."""
        self._closed_hooks.append(hook)

    def forget_dedicated(self, ref: DedicatedRef) -> None:
        """Drop the block and floor of an association's dedicated key (it was closed)."""
        with self._lock:
            self._dedicated_blocks.pop(ref.id, None)
            self._floors.pop(ref.cache_name, None)

    def close(self) -> None:
        """Wait for a reservation under way (it commits, then is dropped) and forget every
        block and floor: the rest of each block is skipped, never reused."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            self._ahead.clear()
            self._dedicated_blocks.clear()
            self._blocks.clear()
            self._floors.clear()
