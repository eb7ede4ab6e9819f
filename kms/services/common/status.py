"""``kms status``: is this KMS healthy? One report of every check, never stopping at the first
failure.

The checks, in order: the database is reachable, its schema is the one this code needs, the
token is reachable and the user logged in, the token offers every mechanism the HSM profile
names, the root keys are recorded and in the token, the active CAs are in date with their keys in
the token, and the audit trail's newest checkpoint still matches its event (and verifies, given
the token), with how many events no checkpoint covers yet. A check that fails is reported with
its reason and the ``KMSError`` family it belongs to, never a traceback; a check that needs what
failed before it is reported as not checked. The report's exit status is the highest of the
failed checks' (:func:`kms.errors.exit_status_for`: integrity 6, database 5, token 4, crypto 3,
usage 2, anything else 1).

Where it lives. The CAs belong to the PKI domain, and ``kms.services.common`` may import no domain
(tests/unit/test_layers.py), so this module reads the CA rows through
:mod:`kms.db.pki_repository` directly rather than through ``kms.services.pki``; what it reads is
plain metadata (name, state, validity, key label), so none of the PKI's logic is repeated.
Status stays a common service (``Services.status``), like the schema's and the self-test's
(:mod:`kms.services.common.system`), built on the same :class:`Resources`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from kms.db import AuthorityState, Database, RootKeyPurpose
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.db.migrate import current_revision, head_revision
from kms.errors import (
    InvalidCertificatePath,
    KMSError,
    SchemaOutdatedError,
    TokenKeyNotFound,
    UnsupportedMechanism,
    UnsupportedReason,
    exit_status_for,
)
from kms.hsm import Hsm, TokenKey
from kms.keystore import hierarchy
from kms.services.common import audit
from kms.services.common.resources import Resources

__all__ = ["Check", "StatusReport", "StatusService"]


@dataclass(frozen=True)
class Check:
    """One check: whether it passed, what it found or why it failed."""

    name: str
    ok: bool
    detail: str
    #: The failure's ``KMSError`` code (``None`` when it passed or was not checked).
    error: str | None = None
    exit_status: int = 0
    #: Not run, because something it needs failed before it.
    skipped: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "error": self.error,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class StatusReport:
    """Every check of :meth:`StatusService.report`."""

    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def exit_status(self) -> int:
        """0 when healthy, else the highest exit status of a failed check (at least 1)."""
        if self.healthy:
            return 0
        return max([1, *(c.exit_status for c in self.checks if not c.ok)])

    def to_dict(self) -> dict[str, object]:
        return {"healthy": self.healthy, "checks": [c.to_dict() for c in self.checks]}


def _failed(name: str, exc: Exception) -> Check:
    if isinstance(exc, KMSError):
        return Check(name, False, exc.message, exc.code, exit_status_for(exc))
    # Not a KMSError: its message may quote anything (a URL, a parameter); name the type only.
    return Check(name, False, f"unexpected {exc.__class__.__name__}", "kms.error", 1)


def _skipped(name: str, reason: str) -> Check:
    return Check(name, False, f"not checked: {reason}", skipped=True)


def _run(name: str, body: Callable[[], str]) -> Check:
    try:
        return Check(name, True, body())
    except Exception as exc:  # a health check reports every failure
        return _failed(name, exc)


class StatusService:
    """The health of the installation (module docstring)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def report(self) -> StatusReport:
        """Run every check; a failure is a failed :class:`Check`, never an exception."""
        checks: list[Check] = []
        db, schema_ok = self._database(checks)
        hsm = self._token(checks)
        if db is None or not schema_ok:
            reason = "the database is unreachable" if db is None else "the schema is behind"
            for name in ("root_keys", "certificate_authorities", "audit"):
                checks.append(_skipped(name, reason))
            return StatusReport(checks)
        checks.append(
            _run("root_keys", lambda: self._root_keys(db, hsm))
            if hsm is not None
            else _skipped("root_keys", "the token is unavailable")
        )
        checks.append(_run("certificate_authorities", lambda: self._authorities(db, hsm)))
        checks.append(_run("audit", lambda: self._audit(db, hsm)))
        return StatusReport(checks)

    # --- the checks --------------------------------------------------------------------------

    def _database(self, checks: list[Check]) -> tuple[Database | None, bool]:
        """The database reachable, and its schema current: (the database or None, current)."""
        try:
            db = self._resources.database(migrated=False)
            current = current_revision(db.engine)
            head = head_revision(db.engine)
        except Exception as exc:  # reported, not raised
            checks.append(_failed("database", exc))
            checks.append(_skipped("schema", "the database is unreachable"))
            return None, False
        checks.append(Check("database", True, f"reachable ({db.engine.dialect.name})"))
        if current == head:
            checks.append(Check("schema", True, f"at revision {head}, the newest"))
            return db, True
        behind = SchemaOutdatedError(
            f"the database is at revision {current or 'none (empty)'}, this KMS needs {head}: "
            "run `kms db upgrade`"
        )
        checks.append(_failed("schema", behind))
        return db, False

    def _token(self, checks: list[Check]) -> Hsm | None:
        """The token reachable and logged in, and the profile's mechanisms all offered."""
        try:
            hsm = self._resources.hsm()
        except UnsupportedMechanism as exc:
            # The session refuses a token that lacks a mechanism the profile names, after login.
            if exc.reason is UnsupportedReason.MISSING_FROM_TOKEN:
                label = self._resources.config.token_label
                checks.append(Check("token", True, f"token {label!r} reachable, user logged in"))
            else:
                checks.append(_failed("token", exc))
            checks.append(_failed("profile", exc))
            return None
        except Exception as exc:  # reported, not raised
            checks.append(_failed("token", exc))
            checks.append(_skipped("profile", "the token is unavailable"))
            return None
        checks.append(Check("token", True, f"token {hsm.token_label!r}, user logged in"))
        checks.append(_run("profile", lambda: self._profile(hsm)))
        return hsm

    @staticmethod
    def _profile(hsm: Hsm) -> str:
        offered = set(hsm.mechanisms())
        named = hsm.profile.mechanism_names()
        missing = sorted(f"{name} ({job})" for job, name in named.items() if name not in offered)
        if missing:
            raise UnsupportedMechanism(
                f"token {hsm.token_label!r} lacks {', '.join(missing)} of profile "
                f"{hsm.profile.name!r}",
                UnsupportedReason.MISSING_FROM_TOKEN,
            )
        return f"profile {hsm.profile.name!r}: all {len(named)} mechanisms offered"

    @staticmethod
    def _root_keys(db: Database, hsm: Hsm) -> str:
        with db.begin() as session:
            keys = hierarchy.load_root_keys(hsm, session)
            if not hsm.has_token_key(keys.audit):
                raise TokenKeyNotFound(
                    f"token {hsm.token_label!r} has no audit key {keys.audit.label!r}"
                )
            transport = len(repo.root_keys(session, RootKeyPurpose.TRANSPORT))
        labels = ", ".join(k.label for k in (keys.storage, keys.binding, keys.audit))
        return f"{labels} in the token; {transport} transport keys recorded"

    @staticmethod
    def _authorities(db: Database, hsm: Hsm | None) -> str:
        now = utcnow()
        with db.begin() as session:
            rows = pki_repo.authorities(session)
            active = [ca for ca in rows if ca.state is AuthorityState.ACTIVE]
            for ca in active:
                if ca.certificate.not_after <= now:
                    raise InvalidCertificatePath(
                        f"CA {ca.name} is active but its certificate expired on "
                        f"{ca.certificate.not_after.isoformat()}"
                    )
                if hsm is not None and not hsm.has_token_key(TokenKey(ca.key_label, "private")):
                    raise TokenKeyNotFound(
                        f"CA {ca.name} is active but token {hsm.token_label!r} lacks its key "
                        f"{ca.key_label!r}"
                    )
            names = ", ".join(ca.name for ca in active)
        if not rows:
            return "none (no CA made yet)"
        others = len(rows) - len(active)
        keys = "" if hsm is not None else " (keys not checked: the token is unavailable)"
        return f"{len(active)} active: {names or 'none'}; {others} retired or revoked{keys}"

    @staticmethod
    def _audit(db: Database, hsm: Hsm | None) -> str:
        with db.begin() as session:
            head = audit.head_status(session, hsm)
        if head.head_seq == 0:
            return "no events yet"
        if head.checkpoint_seq is None or head.signed_at is None:
            return f"{head.head_seq} events, none checkpointed yet (run `kms audit checkpoint`)"
        signed = head.signed_at.astimezone(datetime.UTC).isoformat(timespec="seconds")
        checked = "signature verified" if head.signature_checked else "signature not checked"
        return (
            f"last checkpoint at event {head.checkpoint_seq} ({signed}, {checked}); "
            f"{head.since_checkpoint} events since"
        )
