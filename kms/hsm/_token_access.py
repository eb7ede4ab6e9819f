"""What the operation modules of ``kms.hsm`` may ask of the token session, and nothing more.

:class:`kms.hsm.session.TokenSession` keeps the lock, the login, the retries after a lost session
and the object handles as private state. The adapter's own operations and the modules that do
the rest of the work on top of it (:mod:`kms.hsm.key_wrap`, :mod:`kms.hsm.signing`,
:mod:`kms.hsm.ecdh`, :mod:`kms.hsm.trusted_wrap`, :mod:`kms.hsm.gcm`) use this instead, so each
module says in its signatures what it needs and the session can change its bookkeeping without
them noticing. ``tests/hsm/test_internal_protocol.py`` keeps the rule: no module of ``kms.hsm``
reads an underscore attribute it did not define.

These members are public on :class:`kms.hsm.Hsm` only because Python has no package-private
names: everything above ``kms.hsm`` uses the adapter's operations, never these. The pkcs11
objects they hand out (``Any`` here: nothing outside ``kms.hsm`` imports pkcs11) are valid only
inside a function run by :meth:`TokenAccess.call`, under the process lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from kms.hsm.profile import Profile
    from kms.hsm.session import Key, SessionKey, TokenKey
    from kms.hsm.templates import KeyUse

__all__ = ["TokenAccess"]

T = TypeVar("T")


class TokenAccess(Protocol):
    """The token session as the operation modules see it (module docstring)."""

    @property
    def profile(self) -> Profile:
        """The HSM profile: mechanisms per job and the flags of the token's quirks."""
        ...

    @property
    def token_label(self) -> str:
        """The token's CKA_LABEL, for messages."""
        ...

    @property
    def pkcs11_session(self) -> Any:
        """The python-pkcs11 ``Session`` the process is logged in with; read it inside the
        function given to :meth:`call` (a lost session is replaced by a new one)."""
        ...

    def call(self, operation: str, fn: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run ``fn`` under the process lock with every ``PKCS11Error`` translated into a
        ``KMSError`` naming ``operation``; reopen a lost session and run ``fn`` once more if it
        is ``idempotent`` (touches token objects only)."""
        ...

    def resolve(self, key: Key) -> Any:
        """The pkcs11 object of ``key`` (C_FindObjects by label and class for a token key, the
        cached handle after that); inside :meth:`call` only."""
        ...

    def session_key(self, obj: Any, length: int, use: KeyUse) -> SessionKey:
        """A pkcs11 session object just made inside :meth:`call`, as a :class:`SessionKey` of
        the current session (it dies with it)."""
        ...

    def forget_handle(self, key: TokenKey) -> None:
        """Drop the cached handle of a token key just destroyed (C_DestroyObject)."""
        ...

    # --- a ceremony that logs the user out (kms.hsm.trusted_wrap) ------------------------------

    def locked(self) -> AbstractContextManager[object]:
        """Hold the process lock across several calls (it is re-entrant)."""
        ...

    def open_session(self, *, so_pin: str | None = None) -> Any:
        """C_OpenSession (read-write) beside the process's own, and C_Login as the security
        officer when ``so_pin`` is given; the pkcs11 errors are the caller's to translate."""
        ...

    def close(self) -> None:
        """C_CloseSession of the process's session, which logs the process out."""
        ...

    def reopen(self) -> None:
        """Open the process's session again and log the user in (every session key dies)."""
        ...
