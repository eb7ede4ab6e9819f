"""Keys in use: a meter's active key versions, unwrapped once and kept for the APDUs that follow.

Step 7 of the seed protects and verifies every APDU between the head-end and a meter. Going to
the database and unwrapping per APDU would cost a transaction and ~370 us of token time each, so
a :class:`WorkingKeys` keeps, per process:

* the metadata of each security setup it has served (:class:`SetupKeys`: suite, and for each role
  the ACTIVE key version's id, blob and binding MAC -- enough to unwrap it again without the
  database), in a bounded LRU;
* the unwrapped keys, in a :class:`~kms.keystore.cache.KeyCache` (session objects for encryption
  keys, the AK's bytes for the AAD; see that module and docs/token.md section 8);
* one reserved block of sending invocation counters per key version
  (:mod:`kms.keystore.counters`).

Only ACTIVE key versions of ACTIVE meters are used. A key in another state is refused with
:class:`~kms.errors.KeyStateError` saying what to do. States change under a running process
(renewal, revocation): the encryption key's and the GAK's are read again whenever a counter block
is reserved, an HLS secret's at every use, and every key's whenever a received IC is accepted; a
key version found no longer ACTIVE is evicted with everything cached for its meter. So a revoked
key stops protecting within a block and a quarter (``ic_block_size`` APDUs, and the quarter
before the next block was reserved ahead) in each process that holds one; receiving stops at
once. Unwrapping a key for use is audited
(``key.use``, with ``ak_on_host`` for the AK); so is every counter block (``ic.reserve``).
Single APDUs are not: that would put a commit and the audit chain's lock on every message.

Whatever holds a key beyond one call is told when the cache lets it go (:meth:`on_key_evict`,
:meth:`on_evict`), and a session key from a token session since reopened counts as gone.

A :class:`WorkingKeys` is shared by the threads of a process; one lock serialises it (the token
needs one anyway, docs/token.md section 4).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

from kms.config import Config
from kms.db import (
    AssociationState,
    Database,
    KeyRole,
    KeyState,
    MeterState,
    Session,
)
from kms.db import repository as repo
from kms.dlms.obis import format_logical_name, security_setup_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import ConfigError, KeyStateError, NotFoundError
from kms.hsm import Hsm, KeyUse, SessionKey
from kms.keystore import counters, hierarchy
from kms.keystore.blobs import unseal, unseal_secret
from kms.keystore.cache import KeyCache
from kms.keystore.hierarchy import RootKeys
from kms.memory import zeroise
from kms.services.common import audit
from kms.services.hes.key_refs import (
    ADVICE,
    DedicatedRef,
    KeyRef,
    SetupKeys,
    dedicated_identity,
    key_ref,
)

__all__ = ["DedicatedRef", "KeyRef", "SetupKeys", "WorkingKeys", "dedicated_identity"]


class WorkingKeys:
    """Per-process store of keys in use (module docstring)."""

    def __init__(
        self, hsm: Hsm, db: Database, config: Config, *, ic_block_size: int | None = None
    ) -> None:
        self._hsm = hsm
        self._db = db
        self._actor = config.actor
        self._block_size = ic_block_size or config.ic_block_size
        self._capacity = config.key_cache_size
        self._key_hooks: list[Callable[[Hashable], None]] = []
        self._cache = KeyCache(
            hsm,
            config.key_cache_size,
            config.key_cache_idle_seconds,
            on_evict=self._key_evicted,
        )
        self._setups: OrderedDict[tuple[bytes, bytes], SetupKeys] = OrderedDict()
        self._blocks: dict[int, counters.CounterBlock] = {}
        self._floors: dict[Hashable, int] = {}
        self._associations: dict[str, DedicatedRef] = {}
        self._dedicated_blocks: dict[int, counters.CounterBlock] = {}
        self._root: RootKeys | None = None
        self._evict_hooks: list[Callable[[bytes | None], None]] = []
        #: Blocks being reserved ahead, by key version id, and when to start the next one.
        self._ahead: dict[int, Future[counters.CounterBlock]] = {}
        self._prefetch_at = self._block_size // 4 if self._block_size >= 16 else -1
        self._executor: ThreadPoolExecutor | None = None
        self.lock = threading.RLock()

    @property
    def hsm(self) -> Hsm:
        """The token these keys live in."""
        return self._hsm

    @property
    def database(self) -> Database:
        """The metadata database the keys are recorded in (certificates for HLS-ECDSA)."""
        return self._db

    # --- metadata ----------------------------------------------------------------------------

    def setup(self, system_title: bytes, instance: int) -> SetupKeys:
        """The keys of security setup ``instance`` of a meter (cached); refuses what is unusable.

        Raises :class:`~kms.errors.NotFoundError` for an unknown meter or setup and
        :class:`~kms.errors.KeyStateError` for a meter that is not ACTIVE.
        """
        logical_name = security_setup_logical_name(instance)
        with self.lock:
            cached = self._setups.get((system_title, logical_name))
            if cached is not None:
                self._setups.move_to_end((system_title, logical_name))
                return cached
            with self._db.begin() as session:
                loaded = self._load(session, system_title, logical_name)
                self.root(session)
            self._setups[(system_title, logical_name)] = loaded
            while len(self._setups) > self._capacity:
                _, old = self._setups.popitem(last=False)
                self._forget(old)
            return loaded

    def _load(self, session: Session, system_title: bytes, logical_name: bytes) -> SetupKeys:
        title = format_system_title(system_title)
        meter = repo.meter_by_system_title(session, system_title)
        if meter is None:
            raise NotFoundError(f"no meter with system title {title}")
        if meter.state is not MeterState.ACTIVE:
            advice = (
                "confirm its keys first (`kms provision confirm`)"
                if meter.state is MeterState.PENDING
                else "its keys are no longer used"
            )
            raise KeyStateError(f"meter {title} is {meter.state.value}: {advice}")
        setup = next((s for s in meter.setups if s.logical_name == logical_name), None)
        if setup is None:
            raise NotFoundError(
                f"meter {title} has no security setup {format_logical_name(logical_name)}"
            )
        keys: dict[KeyRole, KeyRef] = {}
        unusable: dict[KeyRole, KeyState] = {}
        for version in sorted(setup.keys, key=lambda k: k.version):
            if version.state is KeyState.ACTIVE:
                keys[version.role] = key_ref(system_title, logical_name, version)
                unusable.pop(version.role, None)
            elif version.role not in keys:
                unusable[version.role] = version.state
        return SetupKeys(
            setup.id, system_title, logical_name, SecuritySuite(meter.suite), keys, unusable
        )

    # --- keys --------------------------------------------------------------------------------

    def _lookup(self, name: Hashable) -> SessionKey | bytearray | None:
        """A cached key, unless it died with a token session that was since reopened."""
        cached = self._cache.get(name)
        if isinstance(cached, SessionKey) and not self._hsm.is_live(cached):
            self._cache.evict(name)
            return None
        return cached

    def encryption_key(self, ref: KeyRef) -> SessionKey:
        """The session object of an encryption key (GUEK, GBEK), unwrapped on first use."""
        _require_role(ref, KeyRole.GUEK, KeyRole.GBEK)
        with self.lock:
            cached = self._lookup(ref.id)
            if isinstance(cached, SessionKey):
                return cached
            key = self._cached(ref, lambda root: self._unseal(root, ref, KeyUse.EK_FOR_USE), {})
            assert isinstance(key, SessionKey)
            return key

    def authentication_key(self, ref: KeyRef) -> bytearray:
        """The AK's bytes for the AAD (docs/token.md section 8), owned and zeroised by the cache."""
        _require_role(ref, KeyRole.GAK)
        with self.lock:
            cached = self._lookup(ref.id)
            if isinstance(cached, bytearray):
                return cached

            def read(root: RootKeys) -> bytearray:
                key = self._unseal(root, ref, KeyUse.AK_FOR_USE)
                try:
                    return self._hsm.read_ak(key)
                finally:
                    self._hsm.destroy(key)

            value = self._cached(ref, read, {"ak_on_host": True})
            assert isinstance(value, bytearray)
            return value

    def hls_secret(self, ref: KeyRef) -> SessionKey | bytearray:
        """An HLS secret for mechanism 6: a sensitive session object for C_DigestKey, or -- the
        profile's fallback where the token unwraps it padded -- its bytes, audited as such."""
        _require_role(ref, KeyRole.HLS_SECRET)
        with self.lock:
            cached = self._lookup(ref.id)
            if cached is not None:
                return cached
            on_host = self._hsm.profile.wrap_pad_unwrap_keeps_padding and (
                not self._hsm.secret_wrap_is_exact(ref.length)
            )

            def unwrap(root: RootKeys) -> SessionKey | bytearray:
                key = unseal_secret(
                    self._hsm,
                    root,
                    ref.identity,
                    ref.wrapped_key,
                    ref.binding_mac,
                    ref.length,
                    readable=on_host,
                )
                if not on_host:
                    return key
                try:
                    padded = self._hsm.read_secret(key)
                finally:
                    self._hsm.destroy(key)
                value = bytearray(padded[: ref.length])
                zeroise(padded)
                return value

            return self._cached(ref, unwrap, {"host_hash": on_host})

    def keys_for(
        self, ek: KeyRef | DedicatedRef, ak: KeyRef | None
    ) -> tuple[SessionKey, bytearray]:
        """The encryption key and the AK's bytes (empty without ``ak``) one operation uses.

        Fetching the second can let the cache expire the first (a stall longer than the idle
        time in between), so both are checked afterwards and fetched once more if need be;
        then a :class:`~kms.errors.ConfigError` names the cache settings.
        """
        ek_name: Hashable = ek.cache_name if isinstance(ek, DedicatedRef) else ek.id
        with self.lock:
            for _ in range(2):
                key = (
                    self.dedicated_key(ek)
                    if isinstance(ek, DedicatedRef)
                    else self.encryption_key(ek)
                )
                value = self.authentication_key(ak) if ak is not None else bytearray()
                if self.still_cached(ek_name, key) and (
                    ak is None or self.still_cached(ak.id, value)
                ):
                    return key, value
        raise ConfigError(
            "the keys of this operation keep leaving the key cache before they are used: "
            "raise key_cache_size or key_cache_idle_seconds"
        )

    def _unseal(self, root: RootKeys, ref: KeyRef, use: KeyUse) -> SessionKey:
        return unseal(
            self._hsm, root, ref.identity, ref.wrapped_key, ref.binding_mac, use, ref.length
        )

    def _cached(
        self,
        ref: KeyRef,
        unwrap: Callable[[RootKeys], SessionKey | bytearray],
        flags: dict[str, bool],
    ) -> SessionKey | bytearray:
        """Unwrap ``ref``, audit the use (``key.use``), then hand the result to the cache."""
        root = self._root
        assert root is not None  # set by setup(), which produced every KeyRef
        value = unwrap(root)
        try:
            details: dict[str, object] = {"version": ref.identity.version, **flags}
            record = audit.AuditRecord("key.use", ref.describe(), details)
            with self._db.begin() as session:
                audit.append(session, self._actor, [record])
        except BaseException:
            if isinstance(value, bytearray):
                zeroise(value)
            else:
                self._hsm.destroy(value)
            raise
        self._cache.put(ref.id, value)
        return value

    # --- invocation counters -----------------------------------------------------------------

    def next_send_ic(self, ref: KeyRef) -> int:
        """The next sending IC under ``ref``: from this process's block, or a new block.

        Reserving a block re-reads the key's state: a key no longer ACTIVE is evicted and
        refused (:class:`~kms.errors.KeyStateError`). With blocks of 16 or more, the next block
        is reserved on a database thread once a quarter of the current one is left, so that
        the APDU that crosses a block boundary does not wait for a commit; a crash then skips
        at most two blocks, never reuses one.
        """
        with self.lock:
            block = self._blocks.get(ref.id)
            if block is not None:
                ic = block.take()
                if ic is not None:
                    if block.end - block.next == self._prefetch_at and ref.id not in self._ahead:
                        watched = self._watched(ref)
                        self._ahead[ref.id] = self._pool().submit(self._reserve, ref, watched)
                    return ic
            ahead = self._ahead.pop(ref.id, None)
            watched = self._watched(ref)
            try:
                # A block reserved ahead had the states read when it was reserved, a quarter
                # of a block ago: no second transaction (one commit per block).
                block = ahead.result() if ahead is not None else self._reserve(ref, watched)
            except KeyStateError:
                self.evict(ref.identity.system_title)
                raise
            self._blocks[ref.id] = block
            ic = block.take()
            assert ic is not None
            return ic

    def _watched(self, ref: KeyRef) -> tuple[KeyRef, ...]:
        """The key versions whose state decides whether ``ref`` may send: itself and the GAK of
        its setup (the AAD's key)."""
        for setup in self._setups.values():
            if setup.keys.get(ref.role) is ref:
                gak = setup.keys.get(KeyRole.GAK)
                return (ref,) if gak is None else (ref, gak)
        return (ref,)

    def _reserve(self, ref: KeyRef, watched: tuple[KeyRef, ...]) -> counters.CounterBlock:
        """One committed reservation (any thread: it touches the database only)."""
        with self._db.begin() as session:
            _check_active(session, watched)
            block = counters.reserve_block(session, ref.id, self._block_size, ref.describe())
            details = {"first": block.next, "last": block.end - 1, "direction": "SEND"}
            audit.append(
                session, self._actor, [audit.AuditRecord("ic.reserve", ref.describe(), details)]
            )
        return block

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kms-ic")
        return self._executor

    def check_received(self, ref: KeyRef, ic: int) -> None:
        """Refuse an IC below the floor this process last saw, before any token work."""
        with self.lock:
            floor = self._floors.get(ref.id, 0)
        counters.check_floor(ic, floor, ref.describe())

    def accept_received(self, ref: KeyRef, ic: int) -> None:
        """Persist the receive floor past ``ic`` (after the tag verified), or refuse ``ic``."""
        with self.lock:
            with self._db.begin() as session:
                self._require_active(session, ref)
                counters.accept_received(session, ref.id, ic, ref.describe())
            self._floors[ref.id] = ic + 1

    def _require_active(self, session: Session, ref: KeyRef) -> None:
        try:
            _check_active(session, (ref,))
        except KeyStateError:
            self.evict(ref.identity.system_title)
            raise

    # --- associations (dedicated keys) -------------------------------------------------------

    def association(self, handle: str) -> DedicatedRef:
        """An OPEN association by its handle (cached), or NotFoundError / KeyStateError."""
        with self.lock:
            cached = self._associations.get(handle)
            if cached is not None:
                return cached
            with self._db.begin() as session:
                row = repo.association_by_handle(session, handle)
                if row is None:
                    raise NotFoundError(f"no association {handle!r}")
                if row.state is not AssociationState.OPEN or row.wrapped_key is None:
                    raise KeyStateError(f"association {handle} is closed: open a new one")
                assert row.binding_mac is not None
                title, logical_name = row.setup.meter.system_title, row.setup.logical_name
                wrapped, mac, length, row_id = (
                    row.wrapped_key,
                    row.binding_mac,
                    row.key_length,
                    row.id,
                )
            setup = self.setup(title, logical_name[4])
            ref = DedicatedRef(
                row_id,
                handle,
                setup,
                dedicated_identity(title, logical_name, handle),
                length,
                wrapped,
                mac,
            )
            self._associations[handle] = ref
            return ref

    def dedicated_key(self, ref: DedicatedRef) -> SessionKey:
        """The session object of an association's dedicated key, unwrapped on first use."""
        name = ref.cache_name
        with self.lock:
            cached = self._lookup(name)
            if isinstance(cached, SessionKey):
                return cached
            root = self._root
            assert root is not None  # association() loaded the setup first
            key = unseal(
                self._hsm,
                root,
                ref.identity,
                ref.wrapped_key,
                ref.binding_mac,
                KeyUse.EK_FOR_USE,
                ref.length,
            )
            try:
                record = audit.AuditRecord("key.use", ref.identity.describe(), {"version": 1})
                with self._db.begin() as session:
                    audit.append(session, self._actor, [record])
            except BaseException:
                self._hsm.destroy(key)
                raise
            self._cache.put(name, key)
            return key

    def next_dedicated_ic(self, ref: DedicatedRef) -> int:
        """The next sending IC under an association's dedicated key (blocks, as for keys)."""
        with self.lock:
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
        with self.lock:
            floor = self._floors.get(ref.cache_name, 0)
        counters.check_floor(ic, floor, ref.describe())

    def accept_dedicated(self, ref: DedicatedRef, ic: int) -> None:
        """:meth:`accept_received` for an association's dedicated key."""
        with self.lock:
            with self._db.begin() as session:
                self._require_open(session, ref)
                counters.accept_dedicated(session, ref.id, ic, ref.describe())
            self._floors[ref.cache_name] = ic + 1

    def _require_open(self, session: Session, ref: DedicatedRef) -> None:
        row = repo.lock_association(session, ref.id)
        if row.state is not AssociationState.OPEN:
            self.forget_association(ref.handle)
            raise KeyStateError(f"association {ref.handle} is closed: open a new one")

    def forget_association(self, handle: str) -> None:
        """Destroy what this process holds of an association (it was closed)."""
        with self.lock:
            ref = self._associations.pop(handle, None)
            if ref is not None:
                self._cache.evict(ref.cache_name)
                self._dedicated_blocks.pop(ref.id, None)
                self._floors.pop(ref.cache_name, None)

    def record(self, records: list[audit.AuditRecord], session: Session) -> None:
        """Append audit records in the caller's transaction, as this process's actor."""
        audit.append(session, self._actor, records)

    def root(self, session: Session) -> RootKeys:
        """The root keys (loaded once per process)."""
        with self.lock:
            if self._root is None:
                self._root = hierarchy.load_root_keys(self._hsm, session)
            return self._root

    @property
    def actor(self) -> str:
        """Who acts, for the audit trail."""
        return self._actor

    @property
    def db(self) -> Database:
        """The metadata database."""
        return self._db

    # --- eviction ----------------------------------------------------------------------------

    def on_evict(self, hook: Callable[[bytes | None], None]) -> None:
        """Call ``hook(system_title)`` whenever a meter's keys are evicted (``None``: all of
        them, at close), so that what a service prepared from them goes too."""
        self._evict_hooks.append(hook)

    def still_cached(self, name: Hashable, key: SessionKey | bytearray) -> bool:
        """Whether ``key`` is still the cached (and, for a session object, live) key ``name``."""
        if isinstance(key, SessionKey) and not self._hsm.is_live(key):
            return False
        return self._cache.touch(name, key)

    def on_key_evict(self, hook: Callable[[Hashable], None]) -> None:
        """Call ``hook(name)`` whenever the cache lets a key go (size, idle time, eviction), so
        that what holds on to it (a prepared sender and its copy of the AK) goes too."""
        self._key_hooks.append(hook)

    def _key_evicted(self, name: Hashable) -> None:
        for hook in self._key_hooks:
            hook(name)

    def require_active(self, ref: KeyRef) -> None:
        """Read ``ref``'s state now (for a key used without counters: an HLS secret)."""
        with self.lock, self._db.begin() as session:
            self._require_active(session, ref)

    def evict(self, system_title: bytes) -> None:
        """Forget everything cached for a meter (its keys were renewed or revoked)."""
        with self.lock:
            for hook in self._evict_hooks:
                hook(system_title)
            for cache_key in [k for k in self._setups if k[0] == system_title]:
                self._forget(self._setups.pop(cache_key))

    def _forget(self, setup: SetupKeys) -> None:
        for ref in setup.keys.values():
            self._cache.evict(ref.id)
            self._blocks.pop(ref.id, None)  # the rest of the block is skipped, never reused
            self._ahead.pop(ref.id, None)  # so is a block reserved ahead
            self._floors.pop(ref.id, None)

    def close(self) -> None:
        """Destroy every cached key (session objects in the token, AK bytes zeroised)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # a reservation under way commits, then is dropped
            self._executor = None
        with self.lock:
            self._ahead.clear()
            for hook in self._evict_hooks:
                hook(None)
            self._cache.clear()
            self._setups.clear()
            self._associations.clear()
            self._dedicated_blocks.clear()
            self._blocks.clear()
            self._floors.clear()


def _not_active(ref: KeyRef, state: KeyState | None) -> KeyStateError:
    if state is None:
        return KeyStateError(f"{ref.describe()} is no longer stored")
    return KeyStateError(f"{ref.describe()} is {state.value}: {ADVICE[state]}")


def _check_active(session: Session, refs: tuple[KeyRef, ...]) -> None:
    states = repo.key_version_states(session, [ref.id for ref in refs])
    for ref in refs:
        state = states.get(ref.id)
        if state is not KeyState.ACTIVE:
            raise _not_active(ref, state)


def _require_role(ref: KeyRef, *roles: KeyRole) -> None:
    if ref.role not in roles:
        wanted = " or ".join(role.value for role in roles)
        raise ValueError(f"{ref.describe()} is not a {wanted}")
