"""Engines, sessions and the schema gate.

SQLite (the embedded default) gets foreign keys, WAL and a busy timeout on every connection, and
every transaction starts with ``BEGIN IMMEDIATE`` so that two writers serialise at the start
instead of failing at commit (the audit chain needs one writer at a time). PostgreSQL serialises
the audit chain with a transaction-scoped advisory lock instead (:func:`lock_audit_chain`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from kms.errors import ConfigError, DatabaseError

#: Advisory lock key of the audit chain on PostgreSQL ("DLMSAUDT" as a 64-bit integer).
AUDIT_LOCK_KEY = 0x444C4D5341554454 & 0x7FFFFFFFFFFFFFFF


@contextmanager
def database_errors(operation: str) -> Iterator[None]:
    """Turn SQLAlchemy's errors into :class:`DatabaseError` (the class name only: a driver's
    message can quote parameters, and parameters can be blobs)."""
    try:
        yield
    except OperationalError as exc:
        # An operational error is about the connection or a lock ("database is locked",
        # "connection refused"), never about parameters: its first line helps the operator.
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        name = exc.orig.__class__.__name__
        raise DatabaseError(
            f"{operation}: {name}: {reason}" if reason else f"{operation}: {name}"
        ) from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{operation}: {exc.__class__.__name__}") from None


def make_engine(url: str) -> Engine:
    """An engine for ``url``. Nothing is opened yet: a SQLite file that does not exist is made
    (and its directory, mode 0700) by the first connection, so a command that fails before it
    touches the database leaves nothing on disk."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("KMS_DATABASE_URL is not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        file = Path(database) if database and database != ":memory:" else None
        # The pool hands a connection to one thread at a time; provisioning commits on a
        # database thread while the main thread works the token, so pysqlite's same-thread
        # check must not pin a connection to the thread that opened it.
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        _configure_sqlite(engine, file)
        return engine
    if parsed.get_backend_name() == "postgresql":
        try:
            return create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"the PostgreSQL driver {exc.name!r} is not installed: "
                "pip install 'dlms-kms[postgresql]'"
            ) from None
    raise ConfigError(f"unsupported database backend {parsed.get_backend_name()!r}")


def _make_directory(file: Path) -> None:
    """Create the missing directory of a SQLite database about to be created: the owner's alone
    (0700), as the data directory holds the key store."""
    if file.exists() or file.parent.is_dir():
        return
    try:
        file.parent.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # another process made it first
    except OSError as exc:
        raise ConfigError(
            f"cannot create {file.parent}, the directory of the SQLite database: {exc.strerror}"
        ) from None


def _configure_sqlite(engine: Engine, file: Path | None) -> None:
    if file is not None:

        @event.listens_for(engine, "do_connect")
        def _before_connect(*_args: Any) -> None:
            _make_directory(file)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (SQLAlchemy docs recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL is a property of the file: the first connection to ask sets it for all. Several
        # processes opening a new file at once can find it locked, without a busy wait, by
        # whichever of them is switching it; that one's switch is enough.
        with contextlib.suppress(sqlite3.OperationalError):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def lock_audit_chain(session: Session) -> None:
    """Hold the audit chain for this transaction so two writers never fork it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (never on rollback)."""
    event.listen(session, "after_commit", lambda _session: callback(), once=True)


class Database:
    """An engine and a session factory; services own their transactions through :meth:`begin`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        session = self._factory()
        try:
            with database_errors("database error"), session.begin():
                yield session
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
