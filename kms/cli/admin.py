"""``kms init``, ``kms db upgrade|status`` and ``kms selftest``."""

from __future__ import annotations

import click

from kms.cli._context import Context, emit_json, json_option, pass_context, run, table
from kms.db.migrate import current_revision, head_revision, upgrade
from kms.hsm.selftest import run_selftest
from kms.services.common import root_keys


@click.command("init")
@json_option
@pass_context
def init(ctx: Context, json_output: bool) -> None:
    """Create the root keys in the token and bring the database to the newest schema.

    Idempotent: a root key that exists is kept (never overwritten), a missing one is created as a
    non-extractable token object, and each is recorded in the database.
    """

    def body() -> None:
        db = ctx.database(migrated=False)
        hsm = ctx.hsm()
        report = root_keys.initialise(hsm, db, ctx.config.actor)
        before, after, outcomes = report.schema_before, report.schema_after, report.root_keys
        if json_output:
            emit_json(
                {
                    "token": hsm.token_label,
                    "schema": {"before": before, "after": after},
                    "root_keys": [o.__dict__ for o in outcomes],
                }
            )
        else:
            table(
                f"Root keys in token {hsm.token_label!r} (schema {after})",
                ["purpose", "label", "algorithm", "action"],
                [[o.purpose, o.label, o.algorithm, o.action] for o in outcomes],
            )

    run(json_output, body)


@click.group("db")
def db_group() -> None:
    """The metadata database schema."""


@db_group.command("upgrade")
@json_option
@pass_context
def db_upgrade(ctx: Context, json_output: bool) -> None:
    """Bring the database to the newest schema (runs the Alembic migrations in schema/)."""

    def body() -> None:
        db = ctx.database(migrated=False)
        before, after = upgrade(db.engine)
        if json_output:
            emit_json({"before": before, "after": after})
        else:
            click.echo(f"database schema: {before or 'empty'} -> {after}")

    run(json_output, body)


@db_group.command("status")
@json_option
@pass_context
def db_status(ctx: Context, json_output: bool) -> None:
    """Show the schema revision of the database and the one this KMS needs."""

    def body() -> None:
        db = ctx.database(migrated=False)
        current, head = current_revision(db.engine), head_revision(db.engine)
        if json_output:
            emit_json({"current": current, "head": head, "up_to_date": current == head})
        else:
            state = "up to date" if current == head else "behind: run `kms db upgrade`"
            click.echo(f"database schema {current or 'empty'}, code needs {head} ({state})")

    run(json_output, body)


@click.command("selftest")
@json_option
@pass_context
def selftest(ctx: Context, json_output: bool) -> None:
    """Run known-answer tests in the token and list the mechanisms it offers.

    RFC 3394 section 4.1 key wrap and Green Book vector 8.1 (AES-GCM, SC 0x30), both with
    throwaway session keys. Exits non-zero if either fails.
    """

    def body() -> None:
        hsm = ctx.hsm()
        results = run_selftest(hsm)
        ok = all(r.passed for r in results)
        if json_output:
            emit_json(
                {
                    "token": hsm.token_label,
                    "profile": hsm.profile.name,
                    "passed": ok,
                    "tests": [r.__dict__ for r in results],
                    "mechanisms": hsm.mechanisms(),
                    "profile_mechanisms": hsm.profile.mechanism_names(),
                }
            )
        else:
            table(
                f"Self-test of token {hsm.token_label!r}",
                ["test", "result", "detail"],
                [[r.name, "pass" if r.passed else "FAIL", r.detail] for r in results],
            )
            table(
                f"Mechanisms used (profile {hsm.profile.name})",
                ["job", "mechanism"],
                [[job, name] for job, name in hsm.profile.mechanism_names().items()],
            )
            click.echo(
                f"token offers {len(hsm.mechanisms())} mechanisms: " + ", ".join(hsm.mechanisms())
            )
        if not ok:
            raise SystemExit(3)

    run(json_output, body)
