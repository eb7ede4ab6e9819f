"""The CA ceremonies as commands, run by the thin scripts under ``scripts/``.

Each takes the approved request (``kms ceremony request``) and M approval files, and calls one
service of :mod:`kms.services.pki.authorities`; the request's parameters are checked
against the ones given here, so an operator cannot run a different ceremony than the officers
approved.
"""

from __future__ import annotations

from pathlib import Path

import click

from kms.cli._context import Context, emit_json, json_option, pass_owned_context, run
from kms.cli.ceremony import (
    approval_option,
    load_approvals,
    load_request,
    request_option,
)
from kms.dlms.suites import SecuritySuite
from kms.services.pki import authorities
from kms.services.pki.authorities import AuthorityReport

_suite_option = click.option(
    "--suite", type=click.Choice(["1", "2"]), required=True, help="1: P-256, 2: P-384."
)


def _print(report: AuthorityReport, json_output: bool) -> None:
    if json_output:
        emit_json(report.to_dict())
        return
    click.echo(
        f"{report.role.lower()} CA {report.name} ({report.curve}) created: key {report.key_label} "
        f"in the token, certificate {report.serial}, valid until {report.not_after:%Y-%m-%d}"
    )
    if report.retired:
        click.echo(f"retired {report.retired} (it still signs CRLs for what it issued)")
    click.echo(f"approved by {', '.join(report.approvals['approved_by'])}")  # type: ignore[arg-type]
    click.echo(report.certificate_pem, nl=False)


@click.command("create-root-ca")
@request_option
@approval_option
@json_option
@pass_owned_context
def create_root_ca(
    ctx: Context, request_path: Path, approval_paths: tuple[Path, ...], json_output: bool
) -> None:
    """Create the root CA: a P-384 key pair in the token and its self-signed certificate."""

    def body() -> None:
        req = load_request(request_path)
        files = load_approvals(approval_paths)
        report = authorities.create_root_ca(
            ctx.hsm(), ctx.database(), ctx.config, ctx.config.actor, req, files
        )
        _print(report, json_output)

    run(json_output, body)


def _issuing_command(name: str, summary: str) -> click.Command:
    """create-issuing-ca and rotate-issuing-ca: the same options, one service each."""
    service = {
        "create-issuing-ca": authorities.create_issuing_ca,
        "rotate-issuing-ca": authorities.rotate_issuing_ca,
    }[name]

    @click.command(name, help=summary)
    @_suite_option
    @request_option
    @approval_option
    @json_option
    @pass_owned_context
    def command(
        ctx: Context,
        suite: str,
        request_path: Path,
        approval_paths: tuple[Path, ...],
        json_output: bool,
    ) -> None:
        def body() -> None:
            req = load_request(request_path)
            files = load_approvals(approval_paths)
            report = service(
                ctx.hsm(),
                ctx.database(),
                ctx.config,
                ctx.config.actor,
                req,
                files,
                SecuritySuite(int(suite)),
            )
            _print(report, json_output)

        run(json_output, body)

    return command


create_issuing_ca = _issuing_command(
    "create-issuing-ca",
    "Create the issuing CA of a suite, its certificate signed by the root in the token.",
)
rotate_issuing_ca = _issuing_command(
    "rotate-issuing-ca",
    "Replace the issuing CA of a suite with a new version; the old one is retired (it still "
    "signs CRLs for what it issued). A revoked issuing CA is replaced the same way.",
)
