"""The PostgreSQL server a benchmark may use, throwaway databases on it, and the CPU of the
backends serving one (SQLite's work is in the benchmark's own process)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from benchmarks.harness.children import REPO_ROOT
from benchmarks.harness.report import log

DATABASES = ("sqlite", "postgresql")


class HasEngine(Protocol):
    """A :class:`kms.db.Database`, or anything else with an engine."""

    @property
    def engine(self) -> Engine: ...


def postgres_url(explicit: str | None) -> tuple[str | None, str]:
    """The server URL to create databases on, and where it came from."""
    if explicit:
        return explicit, "--postgresql"
    if os.environ.get("KMS_TEST_POSTGRES_URL"):
        return os.environ["KMS_TEST_POSTGRES_URL"], "KMS_TEST_POSTGRES_URL"
    script = REPO_ROOT / "scripts" / "postgres-test.sh"
    try:
        proc = subprocess.run(
            [str(script), "url"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, "scripts/postgres-test.sh url could not run"
    if proc.returncode != 0 or not proc.stdout.strip():
        return None, f"scripts/postgres-test.sh url: {proc.stderr.strip() or 'no URL'}"
    return proc.stdout.strip(), "scripts/postgres-test.sh url"


def check_postgres(server_url: str) -> str | None:
    """None when the server accepts us and lets us create databases, else why not."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(server_url, poolclass=NullPool)
        with engine.connect() as conn:
            can = conn.execute(
                text("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar()
            version = conn.execute(text("SHOW server_version")).scalar()
        engine.dispose()
    except SQLAlchemyError as exc:
        return f"cannot connect: {exc.__class__.__name__}"
    if not can:
        return "the role may not CREATE DATABASE"
    os.environ["_BENCH_PG_VERSION"] = str(version)
    return None


def require_postgres(explicit: str | None) -> str:
    """The server URL for a run that asked for PostgreSQL: exits when there is no usable one."""
    server, source = postgres_url(explicit)
    problem = "no URL" if server is None else check_postgres(server)
    if problem is not None or server is None:
        raise SystemExit(f"PostgreSQL: {problem} ({source})")
    log(f"PostgreSQL server from {source}")
    return server


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """CREATE DATABASE kms_bench_<hex> on the server; DROP it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from tests.postgres import drop_database

    name = f"kms_bench_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.dispose()
        drop_database(server_url, name)


def backend_cpu_seconds(engine: Engine) -> dict[int, float] | None:
    """CPU seconds used so far by each PostgreSQL backend serving this database, by pid.

    Read from /proc/<pid>/stat, so only for a server on this machine (None otherwise, and for
    SQLite, whose work is in the benchmark's own process).
    """
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        pids = list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ).scalars()
        )
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None  # not a local server, or not ours to read
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return out


def backends_used(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """The backends' CPU between two :func:`backend_cpu_seconds` (backends opened in between
    count from zero), or None when either is unknown."""
    if before is None or after is None:
        return None
    return sum(t - before.get(p, 0.0) for p, t in after.items())
