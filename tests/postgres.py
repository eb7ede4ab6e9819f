"""Throwaway PostgreSQL databases, shared by the tests and the benchmarks."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

_OBJECT_IN_USE = "55006"  # "database ... is being accessed by other users"


def drop_database(admin_url: str, name: str, *, attempts: int = 5) -> None:
    """Drop database ``name`` on the server of ``admin_url``, ending its sessions first.

    Plain DROP DATABASE, not WITH (FORCE): FORCE refuses, for a role that is not a superuser,
    when an autovacuum worker happens to be on the database (the worker has no role, so the
    test role may not signal it). Plain DROP ends autovacuum workers itself and waits for them;
    client sessions it does not end, so they are terminated first (they are the test role's
    own). A session that slips in between is met by another attempt.
    """
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        for attempt in range(1, attempts + 1):
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"
                        " AND backend_type = 'client backend'"
                    ),
                    {"name": name},
                )
                try:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                    return
                except DBAPIError as exc:
                    if getattr(exc.orig, "pgcode", None) != _OBJECT_IN_USE or attempt == attempts:
                        raise
            time.sleep(0.2 * attempt)
    finally:
        engine.dispose()
