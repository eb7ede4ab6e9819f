"""The keys of a meter's security setups, unwrapped once and kept for the APDUs that follow.

Step 7 of the seed protects and verifies every APDU between the head-end and a meter. Going to
the database and unwrapping per APDU would cost a transaction and ~370 us of token time each, so
a :class:`SetupKeyCache` keeps, per process:

* the metadata of each security setup it has served (:class:`~kms.services.hes.key_refs.
  SetupKeys`: suite, and for each role the ACTIVE version and a PENDING successor beside it --
  id, blob and binding MAC, enough to unwrap them again without the database), in a bounded LRU;
* the unwrapped keys, in a :class:`~kms.keystore.cache.KeyCache` (session objects for encryption
  keys, the AK's bytes for the AAD; see that module and docs/token.md section 8), an association's
  dedicated key among them.

Only ACTIVE key versions of ACTIVE meters are used: :meth:`SetupKeys.key` refuses anything else
with :class:`~kms.errors.KeyStateError` saying what to do. States change under a running process
(renewal, revocation), so whoever uses a key reads its state again now and then
(:mod:`kms.services.hes.invocation_counters` at every block and every accepted IC,
:meth:`SetupKeyCache.require_active` for an HLS secret); a key version found no longer ACTIVE is
evicted with everything cached for its meter (:meth:`SetupKeyCache.evict`). Unwrapping a key
for use is audited (``key.use``, with ``ak_on_host`` for the AK), as the caller who asked for
it. Single APDUs are not: that would put a commit and the audit chain's lock on every message.

Whatever holds a key beyond one call is told when it goes: :meth:`on_key_evict` when the cache
lets a key go, :meth:`on_evict` when a meter's keys are evicted, :meth:`on_forget` for each key
version of a setup the LRU drops (the counter blocks under it). A session key from a token
session since reopened counts as gone.

The cache is shared by the threads of a process and serialised by the process's one lock, which
its collaborators share (the token needs one anyway, docs/token.md section 4).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from kms.config import Config
from kms.db import Database, KeyRole, KeyState, MeterState, Session
from kms.db import repository as repo
from kms.dlms.obis import format_logical_name, security_setup_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import ConfigError, KeyStateError, NotFoundError
from kms.hsm import Hsm, KeyUse, SessionKey
from kms.keystore import hierarchy
from kms.keystore.blobs import unseal, unseal_secret
from kms.keystore.cache import KeyCache
from kms.keystore.hierarchy import RootKeys
from kms.memory import zeroise
from kms.services.common import audit
from kms.services.hes.key_refs import ADVICE, DedicatedRef, InUse, KeyRef, SetupKeys, key_ref

__all__ = ["SetupKeyCache", "check_active"]


class SetupKeyCache:
    """Per-process cache of the setups served and of their unwrapped keys (module docstring)."""

    def __init__(self, hsm: Hsm, db: Database, config: Config, lock: threading.RLock) -> None:
        self._hsm = hsm
        self._db = db
        self._lock = lock
        self._capacity = config.key_cache_size
        self._cache = KeyCache(
            hsm,
            config.key_cache_size,
            config.key_cache_idle_seconds,
            on_evict=self._key_evicted,
        )
        self._setups: OrderedDict[tuple[bytes, bytes], SetupKeys] = OrderedDict()
        self._root: RootKeys | None = None
        self._key_hooks: list[Callable[[Hashable], None]] = []
        self._evict_hooks: list[Callable[[bytes | None], None]] = []
        self._forget_hooks: list[Callable[[KeyRef], None]] = []

    # --- metadata ----------------------------------------------------------------------------

    def setup(self, system_title: bytes, instance: int) -> SetupKeys:
        """The keys of security setup ``instance`` of a meter (cached); refuses what is unusable.

        Raises :class:`~kms.errors.NotFoundError` for an unknown meter or setup and
        :class:`~kms.errors.KeyStateError` for a meter that is not ACTIVE.
        """
        logical_name = security_setup_logical_name(instance)
        with self._lock:
            cached = self._setups.get((system_title, logical_name))
            if cached is not None:
                self._setups.move_to_end((system_title, logical_name))
                return cached
            with self._db.begin() as session:
                loaded = _load(session, system_title, logical_name)
                if self._root is None:
                    self._root = hierarchy.load_root_keys(self._hsm, session)
            self._setups[(system_title, logical_name)] = loaded
            while len(self._setups) > self._capacity:
                _, old = self._setups.popitem(last=False)
                self._forget(old)
            return loaded

    def active_setup_of(self, ref: KeyRef) -> SetupKeys | None:
        """The cached setup whose ACTIVE version of its role ``ref`` is, if any."""
        with self._lock:
            for setup in self._setups.values():
                if setup.active(ref.role) is ref:
                    return setup
            return None

    # --- keys --------------------------------------------------------------------------------

    def _lookup(self, name: Hashable) -> SessionKey | bytearray | None:
        """A cached key, unless it died with a token session that was since reopened."""
        cached = self._cache.get(name)
        if isinstance(cached, SessionKey) and not self._hsm.is_live(cached):
            self._cache.evict(name)
            return None
        return cached

    def encryption_key(self, ref: KeyRef, *, actor: str) -> SessionKey:
        """The session object of an encryption key (GUEK, GBEK), unwrapped on first use."""
        _require_role(ref, KeyRole.GUEK, KeyRole.GBEK)
        with self._lock:
            cached = self._lookup(ref.id)
            if isinstance(cached, SessionKey):
                return cached
            key = self._cached(
                ref, lambda root: self._unseal(root, ref, KeyUse.EK_FOR_USE), {}, actor
            )
            assert isinstance(key, SessionKey)
            return key

    def authentication_key(self, ref: KeyRef, *, actor: str) -> bytearray:
        """The AK's bytes for the AAD (docs/token.md section 8), owned and zeroised by the cache."""
        _require_role(ref, KeyRole.GAK)
        with self._lock:
            cached = self._lookup(ref.id)
            if isinstance(cached, bytearray):
                return cached

            def read(root: RootKeys) -> bytearray:
                key = self._unseal(root, ref, KeyUse.AK_FOR_USE)
                try:
                    return self._hsm.read_ak(key)
                finally:
                    self._hsm.destroy(key)

            value = self._cached(ref, read, {"ak_on_host": True}, actor)
            assert isinstance(value, bytearray)
            return value

    def hls_secret(self, ref: KeyRef, *, actor: str) -> SessionKey | bytearray:
        """An HLS secret for mechanism 6: a sensitive session object for C_DigestKey, or -- the
        profile's fallback where the token unwraps it padded -- its bytes, audited as such."""
        _require_role(ref, KeyRole.HLS_SECRET)
        with self._lock:
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

            return self._cached(ref, unwrap, {"host_hash": on_host}, actor)

    def dedicated_key(self, ref: DedicatedRef, *, actor: str) -> SessionKey:
        """The session object of an association's dedicated key, unwrapped on first use."""
        name = ref.cache_name
        with self._lock:
            cached = self._lookup(name)
            if isinstance(cached, SessionKey):
                return cached
            root = self._root
            assert root is not None  # the association's setup was loaded first
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
                    audit.append(session, actor, [record])
            except BaseException:
                self._hsm.destroy(key)
                raise
            self._cache.put(name, key)
            return key

    def keys_for(
        self, ek: KeyRef | DedicatedRef, ak: KeyRef | None, *, actor: str
    ) -> tuple[SessionKey, bytearray]:
        """The encryption key and the AK's bytes (empty without ``ak``) one operation uses.

        Fetching the second can let the cache expire the first (a stall longer than the idle
        time in between), so both are checked afterwards and fetched once more if need be;
        then a :class:`~kms.errors.ConfigError` names the cache settings.
        """
        ek_name: Hashable = ek.cache_name if isinstance(ek, DedicatedRef) else ek.id
        with self._lock:
            for _ in range(2):
                key = (
                    self.dedicated_key(ek, actor=actor)
                    if isinstance(ek, DedicatedRef)
                    else self.encryption_key(ek, actor=actor)
                )
                value = self.authentication_key(ak, actor=actor) if ak is not None else bytearray()
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
        actor: str,
    ) -> SessionKey | bytearray:
        """Unwrap ``ref``, audit the use (``key.use``), then hand the result to the cache."""
        root = self._root
        assert root is not None  # set by setup(), which produced every KeyRef
        value = unwrap(root)
        try:
            details: dict[str, object] = {"version": ref.identity.version, **flags}
            record = audit.AuditRecord("key.use", ref.describe(), details)
            with self._db.begin() as session:
                audit.append(session, actor, [record])
        except BaseException:
            if isinstance(value, bytearray):
                zeroise(value)
            else:
                self._hsm.destroy(value)
            raise
        self._cache.put(ref.id, value)
        return value

    # --- states ------------------------------------------------------------------------------

    def require_active(self, ref: KeyRef, session: Session | None = None) -> None:
        """Read ``ref``'s state now (in ``session``, or a transaction of its own); a version no
        longer ACTIVE is evicted with its meter and refused (:class:`~kms.errors.KeyStateError`).
        """
        with self._lock:
            if session is not None:
                self._require_active(session, (ref,))
                return
            with self._db.begin() as own:
                self._require_active(own, (ref,))

    def _require_active(self, session: Session, refs: tuple[KeyRef, ...]) -> None:
        try:
            check_active(session, refs)
        except KeyStateError:
            self.evict(refs[0].identity.system_title)
            raise

    # --- eviction ----------------------------------------------------------------------------

    def on_evict(self, hook: Callable[[bytes | None], None]) -> None:
        """Call ``hook(system_title)`` whenever a meter's keys are evicted (``None``: all of
        them, at close), so that what a service prepared from them goes too."""
        self._evict_hooks.append(hook)

    def on_key_evict(self, hook: Callable[[Hashable], None]) -> None:
        """Call ``hook(name)`` whenever the cache lets a key go (size, idle time, eviction), so
        that what holds on to it (a prepared sender and its copy of the AK) goes too."""
        self._key_hooks.append(hook)

    def on_forget(self, hook: Callable[[KeyRef], None]) -> None:
        """Call ``hook(ref)`` for each key version of a setup this cache forgets (evicted, or
        pushed out of the LRU), so that what is kept per version (counter blocks) goes too."""
        self._forget_hooks.append(hook)

    def still_cached(self, name: Hashable, key: SessionKey | bytearray) -> bool:
        """Whether ``key`` is still the cached (and, for a session object, live) key ``name``."""
        if isinstance(key, SessionKey) and not self._hsm.is_live(key):
            return False
        return self._cache.touch(name, key)

    def drop_key(self, name: Hashable) -> None:
        """Destroy one cached key (an association's dedicated key, once it is closed)."""
        with self._lock:
            self._cache.evict(name)

    def _key_evicted(self, name: Hashable) -> None:
        for hook in self._key_hooks:
            hook(name)

    def evict(self, system_title: bytes) -> None:
        """Forget everything cached for a meter (its keys were renewed or revoked)."""
        with self._lock:
            for hook in self._evict_hooks:
                hook(system_title)
            for cache_key in [k for k in self._setups if k[0] == system_title]:
                self._forget(self._setups.pop(cache_key))

    def _forget(self, setup: SetupKeys) -> None:
        for ref in setup.refs():
            self._cache.evict(ref.id)
            for hook in self._forget_hooks:
                hook(ref)

    def close(self) -> None:
        """Destroy every cached key (session objects in the token, AK bytes zeroised)."""
        with self._lock:
            for hook in self._evict_hooks:
                hook(None)
            self._cache.clear()
            self._setups.clear()


def _load(session: Session, system_title: bytes, logical_name: bytes) -> SetupKeys:
    """A setup's key versions in use, or the error saying why the meter cannot be used."""
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
    active: dict[KeyRole, KeyRef] = {}
    pending: dict[KeyRole, KeyRef] = {}
    unusable: dict[KeyRole, KeyState] = {}
    for version in sorted(setup.keys, key=lambda k: k.version):
        if version.state is KeyState.ACTIVE:
            active[version.role] = key_ref(system_title, logical_name, version)
            unusable.pop(version.role, None)
        elif version.role not in active:
            unusable[version.role] = version.state
        if version.state is KeyState.PENDING:
            pending[version.role] = key_ref(system_title, logical_name, version)  # the newest
    versions = {
        role: InUse(active.get(role), pending.get(role))
        for role in dict.fromkeys([*active, *pending])
    }
    return SetupKeys(
        setup.id, system_title, logical_name, SecuritySuite(meter.suite), versions, unusable
    )


def _not_active(ref: KeyRef, state: KeyState | None) -> KeyStateError:
    if state is None:
        return KeyStateError(f"{ref.describe()} is no longer stored")
    return KeyStateError(f"{ref.describe()} is {state.value}: {ADVICE[state]}")


def check_active(session: Session, refs: tuple[KeyRef, ...]) -> None:
    """:class:`~kms.errors.KeyStateError` unless every one of ``refs`` is ACTIVE now."""
    states = repo.key_version_states(session, [ref.id for ref in refs])
    for ref in refs:
        state = states.get(ref.id)
        if state is not KeyState.ACTIVE:
            raise _not_active(ref, state)


def _require_role(ref: KeyRef, *roles: KeyRole) -> None:
    if ref.role not in roles:
        wanted = " or ".join(role.value for role in roles)
        raise ValueError(f"{ref.describe()} is not a {wanted}")
