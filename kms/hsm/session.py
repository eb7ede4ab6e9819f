"""The token session under the adapter: one login, one lock, retries, and handles.

What docs/token.md sections 4 and 5 record decides the shape of this module:

* **One lock per process.** python-pkcs11 initialises the module without locking arguments, so
  SoftHSM does no locking of its own and two threads calling in at once crash it. Every call into
  the library runs under :data:`_TOKEN_LOCK`; parallelism comes from processes.
* **One login session for the life of the process.** Login is per application and closing the
  session that logged in logs every session out, so an :class:`Hsm` opens one read-write session,
  logs in once (retrying a login collision with another process with a short backoff) and keeps
  it. Session objects (the per-meter keys) live in that session.
* **Retry after a lost session.** When the token answers that the session or the device is gone,
  the adapter reopens and logs in again, then retries the call once if it is idempotent and
  touches only token objects (found again by label). Session keys die with their session: using
  one afterwards raises :class:`~kms.errors.SessionLost`.
* **Nothing above sees a pkcs11 type.** Keys cross the boundary as :class:`TokenKey` (a label) and
  :class:`SessionKey` (an opaque handle); every ``PKCS11Error`` becomes a ``KMSError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Mechanism, ObjectClass

from kms import errors
from kms.config import Config
from kms.hsm._errors import SESSION_LOST, translate, translated
from kms.hsm.profile import Profile, load_profile
from kms.hsm.templates import KeyUse

T = TypeVar("T")

#: Serialises every call into the PKCS#11 module in this process (docs/token.md section 4).
_TOKEN_LOCK = threading.RLock()
#: One loaded library per module path: C_Initialize may run only once per process.
_LIBS: dict[str, Any] = {}

#: Per module path: how many times this process re-initialised it. C_Initialize again voids
#: every session and object handle of every Hsm on that module, and SoftHSM hands the same
#: handle numbers out anew, so an Hsm that saw an older epoch must reopen before its next call.
_EPOCHS: dict[str, int] = {}
#: Per (module, token label): a salted digest of the PIN that logged this process in.
_LOGINS: dict[tuple[str, str], bytes] = {}
_PIN_SALT = os.urandom(16)


@dataclass(frozen=True)
class TokenKey:
    """A persistent token object, named by its label (the handle is the adapter's business)."""

    label: str
    object_class: str = "secret"  # "secret" | "private" | "public"


@dataclass(eq=False)
class SessionKey:
    """A per-meter key living as a session object in the adapter's session; never its value."""

    _object: Any = field(repr=False)
    _generation: int = field(repr=False)
    length: int
    use: KeyUse

    def __repr__(self) -> str:
        return f"SessionKey(use={self.use.value}, length={self.length})"


Key = TokenKey | SessionKey

_CLASS_OF = {
    "secret": ObjectClass.SECRET_KEY,
    "private": ObjectClass.PRIVATE_KEY,
    "public": ObjectClass.PUBLIC_KEY,
}


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(_PIN_SALT + pin.encode()).digest()


def _library(module: str) -> Any:
    with _TOKEN_LOCK:
        lib = _LIBS.get(module)
        if lib is None:
            try:
                lib = pkcs11.lib(module)
            except p11e.PKCS11Error:
                raise errors.ConfigError(f"cannot load the PKCS#11 module {module}") from None
            _LIBS[module] = lib
        return lib


class TokenSession:
    """A logged-in session on one token, safe to share between the threads of a process.

    :class:`kms.hsm.adapter.Hsm` adds the operations; this class is the lock, the login, the
    retries and the handles, kept private: the operations reach them through the public members
    of :class:`kms.hsm._token_access.TokenAccess` only. A private method here runs with the lock
    already held.
    """

    def __init__(self, config: Config, profile: Profile | None = None) -> None:
        self._config = config
        self.profile = profile or load_profile(config.hsm_profile)
        self.token_label = config.token_label
        self._lib = _library(config.pkcs11_module)
        self._token: Any = None
        self._session: Any = None
        self._generation = 0
        self._handles: dict[tuple[str, str], Any] = {}
        self._mechanisms: frozenset[Mechanism] = frozenset()
        self._module = config.pkcs11_module
        self._epoch = _EPOCHS.get(self._module, 0)
        self._login_key = (config.pkcs11_module, config.token_label)
        with _TOKEN_LOCK:
            self._open()
        try:
            self._check_profile()
        except errors.KMSError:
            self.close()
            raise

    # --- session management ------------------------------------------------------------------

    def _find_token(self) -> Any:
        try:
            return self._lib.get_token(token_label=self.token_label)
        except p11e.PKCS11Error:
            pass
        # A token initialised (or deleted) after the library loaded is only seen correctly after
        # C_Initialize again: SoftHSM answers CKR_GENERAL_ERROR for the slot of a deleted token,
        # and a slot read while another process rewrites the token file can look empty. So
        # re-initialise and retry with a short backoff. This logs out any other Hsm of this
        # process on the same module, which reopens on its next call.
        delay = 0.02
        last: p11e.PKCS11Error | None = None
        for _attempt in range(self.profile.login_retries):
            time.sleep(delay)
            delay *= 2
            try:
                _EPOCHS[self._module] = _EPOCHS.get(self._module, 0) + 1
                self._lib.reinitialize()
                return self._lib.get_token(token_label=self.token_label)
            except p11e.PKCS11Error as exc:
                last = exc
        if last is None or isinstance(last, p11e.NoSuchToken):
            raise errors.TokenNotFound(
                f"no token labelled {self.token_label!r} in {self._config.pkcs11_module}"
            )
        raise translate(last, "find token")

    def _open(self) -> None:
        """Open the one session and log in, retrying a login collision with another process."""
        pin = self._config.require_pin()
        self._token = self._find_token()
        delay = 0.02
        for attempt in range(self.profile.login_retries + 1):
            try:
                self._session = self._token.open(rw=True, user_pin=pin.reveal())
                _LOGINS[self._login_key] = _pin_digest(pin.reveal())
                break
            except p11e.UserAlreadyLoggedIn:
                # Another Hsm of this process holds the login, which SoftHSM then grants without
                # looking at the PIN: share it only if this PIN is the one that logged in.
                if _LOGINS.get(self._login_key) != _pin_digest(pin.reveal()):
                    raise errors.PinIncorrect(
                        f"login to token {self.token_label!r}: the token refused the user PIN"
                    ) from None
                with translated(f"login to token {self.token_label!r}"):
                    self._session = self._token.open(rw=True)
                break
            except (p11e.GeneralError, p11e.DeviceError, p11e.FunctionFailed):
                if attempt == self.profile.login_retries:
                    raise errors.HsmError(
                        f"login to token {self.token_label!r} kept failing after "
                        f"{attempt + 1} attempts"
                    ) from None
                time.sleep(delay)
                delay *= 2
            except p11e.PKCS11Error as exc:
                raise translate(exc, f"login to token {self.token_label!r}") from None
        self._generation += 1
        self._epoch = _EPOCHS.get(self._module, 0)
        self._handles.clear()
        with translated("list mechanisms"):
            self._mechanisms = frozenset(self._token.slot.get_mechanisms())

    def _reopen(self) -> None:
        """Close the session if it is still ours, open it again and log in."""
        if self._session is not None and self._epoch == _EPOCHS.get(self._module, 0):
            with contextlib.suppress(p11e.PKCS11Error):
                self._session.close()
        self._session = None
        self._open()

    def close(self) -> None:
        """Close the session (which logs this process out of the token)."""
        with _TOKEN_LOCK:
            if self._session is not None:
                if self._epoch == _EPOCHS.get(self._module, 0):  # else the handle is not ours
                    with contextlib.suppress(p11e.PKCS11Error):
                        self._session.close()
                self._session = None
                self._handles.clear()

    def reopen(self) -> None:
        """Open the session again and log the user in, after :meth:`close` (a ceremony that logs
        out for the security officer) or in its place: every session key dies."""
        with _TOKEN_LOCK:
            self._reopen()

    def __enter__(self) -> TokenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, operation: str, fn: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run ``fn`` under the process lock with errors translated; retry a lost session once
        if ``fn`` is ``idempotent`` (it touches token objects only, found again by label)."""
        with _TOKEN_LOCK:
            if self._session is None:
                raise errors.SessionLost(f"{operation}: the token session is closed")
            if self._epoch != _EPOCHS.get(self._module, 0):
                # Another Hsm re-initialised the module: our handles now name other objects.
                self._reopen()
            try:
                return fn()
            except SESSION_LOST as exc:
                lost = exc
            except p11e.PKCS11Error as exc:
                raise translate(exc, operation) from None
            self._reopen()
            if not idempotent:
                raise translate(lost, operation) from None
            try:
                return fn()
            except p11e.PKCS11Error as exc:
                raise translate(exc, operation) from None

    def _check_profile(self) -> None:
        """Every mechanism the profile names must be offered by the token: check it once."""
        for job, mech in self.profile.mechanisms.items():
            if mech not in self._mechanisms:
                raise errors.UnsupportedMechanism(
                    f"token {self.token_label!r} lacks {mech.name}, which profile "
                    f"{self.profile.name!r} names for {job}",
                    errors.UnsupportedReason.MISSING_FROM_TOKEN,
                )

    def mechanisms(self) -> list[str]:
        """Names of the mechanisms the token offers (for ``kms selftest``)."""
        return sorted(m.name if isinstance(m, Mechanism) else hex(int(m)) for m in self._mechanisms)

    # --- for the operations (kms.hsm._token_access.TokenAccess) ------------------------------

    def locked(self) -> AbstractContextManager[object]:
        """The process lock, to hold across several calls (it is re-entrant)."""
        return _TOKEN_LOCK

    @property
    def pkcs11_session(self) -> Any:
        """The python-pkcs11 session the process is logged in with: read it inside a function
        given to :meth:`call`, since a lost session is replaced by a new one."""
        return self._session

    def open_session(self, *, so_pin: str | None = None) -> Any:
        """C_OpenSession (read-write) beside the process's own session, and C_Login as the
        security officer when ``so_pin`` is given; the caller holds :meth:`locked` and
        translates the pkcs11 errors (kms.hsm.trusted_wrap)."""
        return self._token.open(rw=True, so_pin=so_pin)

    # --- object handles ----------------------------------------------------------------------

    def resolve(self, key: Key) -> Any:
        """The pkcs11 object of ``key``: a session key's own (if its session is still the
        current one), or a token key found by label and class and its handle cached. Inside a
        function given to :meth:`call` only."""
        if isinstance(key, SessionKey):
            if key._generation != self._generation:
                raise errors.SessionLost("a session key outlived the session that held it")
            return key._object
        cache_key = (key.label, key.object_class)
        handle = self._handles.get(cache_key)
        if handle is None:
            try:
                handle = self._session.get_key(
                    object_class=_CLASS_OF[key.object_class], label=key.label
                )
            except p11e.NoSuchKey:
                raise errors.TokenKeyNotFound(
                    f"token {self.token_label!r} has no {key.object_class} key labelled "
                    f"{key.label!r}"
                ) from None
            except p11e.MultipleObjectsReturned:
                raise errors.HsmError(
                    f"token {self.token_label!r} has several keys labelled {key.label!r}"
                ) from None
            self._handles[cache_key] = handle
        return handle

    def session_key(self, obj: Any, length: int, use: KeyUse) -> SessionKey:
        """A session object just made (inside :meth:`call`) as a key of the current session."""
        return SessionKey(obj, self._generation, length, use)

    def forget_handle(self, key: TokenKey) -> None:
        """Drop the cached handle of a token key that was just destroyed."""
        self._handles.pop((key.label, key.object_class), None)

    def is_live(self, key: SessionKey) -> bool:
        """Whether a session key still exists: it dies with the session that made it."""
        return key._generation == self._generation

    def has_token_key(self, key: TokenKey) -> bool:
        """Whether the token holds ``key`` (by label and class)."""

        def find() -> bool:
            try:
                self.resolve(key)
            except errors.TokenKeyNotFound:
                return False
            return True

        return self.call(f"find {key.label}", find, idempotent=True)
