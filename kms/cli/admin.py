"""``kms init``, ``kms db upgrade|status`` and ``kms selftest``."""

from __future__ import annotations

import click

from kms.cli._context import Context, Output, command, table


@click.group("db")
def db_group() -> None:
    """The metadata database schema."""


@command(None, "init")
def init(ctx: Context, out: Output) -> None:
    """Create the root keys in the token and bring the database to the newest schema.

    Idempotent: a root key that exists is kept (never overwritten), a missing one is created as a
    non-extractable token object, and each is recorded in the database.
    """
    report = ctx.services.root_keys.initialise(actor=ctx.actor)
    before, after, outcomes = report.schema_before, report.schema_after, report.root_keys
    out.result(
        {
            "token": report.token,
            "schema": {"before": before, "after": after},
            "root_keys": [o.__dict__ for o in outcomes],
        },
        lambda: table(
            f"Root keys in token {report.token!r} (schema {after})",
            ["purpose", "label", "algorithm", "action"],
            [[o.purpose, o.label, o.algorithm, o.action] for o in outcomes],
        ),
    )


@command(db_group, "upgrade")
def db_upgrade(ctx: Context, out: Output) -> None:
    """Bring the database to the newest schema (runs the Alembic migrations in schema/)."""
    before, after = ctx.services.system.upgrade_schema()
    out.result(
        {"before": before, "after": after}, f"database schema: {before or 'empty'} -> {after}"
    )


@command(db_group, "status")
def db_status(ctx: Context, out: Output) -> None:
    """Show the schema revision of the database and the one this KMS needs."""
    status = ctx.services.system.schema_status()
    state = "up to date" if status.up_to_date else "behind: run `kms db upgrade`"
    out.result(
        {"current": status.current, "head": status.head, "up_to_date": status.up_to_date},
        f"database schema {status.current or 'empty'}, code needs {status.head} ({state})",
    )


@command(None, "selftest")
def selftest(ctx: Context, out: Output) -> None:
    """Run known-answer tests in the token and list the mechanisms it offers.

    RFC 3394 section 4.1 key wrap and Green Book vector 8.1 (AES-GCM, SC 0x30), both with
    throwaway session keys. Exits non-zero if either fails.
    """
    report = ctx.services.system.selftest()

    def text() -> None:
        table(
            f"Self-test of token {report.token!r}",
            ["test", "result", "detail"],
            [[r.name, "pass" if r.passed else "FAIL", r.detail] for r in report.tests],
        )
        table(
            f"Mechanisms used (profile {report.profile})",
            ["job", "mechanism"],
            [[job, name] for job, name in report.profile_mechanisms.items()],
        )
        click.echo(
            f"token offers {len(report.mechanisms)} mechanisms: " + ", ".join(report.mechanisms)
        )

    out.result(
        {
            "token": report.token,
            "profile": report.profile,
            "passed": report.passed,
            "tests": [r.__dict__ for r in report.tests],
            "mechanisms": report.mechanisms,
            "profile_mechanisms": report.profile_mechanisms,
        },
        text,
    )
    if not report.passed:
        raise SystemExit(3)
