"""``kms status``: every health check of the installation in one table; non-zero when unhealthy."""

from __future__ import annotations

from kms.cli._context import Context, Output, command, table


@command(None, "status")
def status(ctx: Context, out: Output) -> None:
    """Check the database and its schema, the token and its profile, the root keys, the CAs
    and the audit trail's last checkpoint, reporting every failure rather than the first.

    Exits 0 when healthy, else with the exit status of the most serious failure (6 audit
    integrity, 5 database, 4 token, 3 cryptographic, 2 usage such as a schema behind, 1 other).
    With --json: {"healthy": bool, "checks": [{"name", "ok", "detail", "error", "skipped"}]}.
    """
    report = ctx.services.status.report()

    def text() -> None:
        table(
            "KMS status: " + ("healthy" if report.healthy else "UNHEALTHY"),
            ["check", "ok", "detail"],
            [
                [c.name, "-" if c.skipped else ("yes" if c.ok else "NO"), c.detail]
                for c in report.checks
            ],
        )

    out.result(report.to_dict(), text)
    if not report.healthy:
        raise SystemExit(report.exit_status)
