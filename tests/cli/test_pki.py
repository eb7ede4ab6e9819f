"""The PKI from the command line, black box: officers, an approved ceremony per CA (the scripts
under scripts/), meter certificates from CSRs (one, a folder, a JSONL), the chain, revocation and
the CRL, checked with `openssl verify -crl_check` and pyca; bad input refused with its exit
status and nothing written."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kms.dlms.security_setup import parse_import_certificate_request
from tests.cli.helpers import Cli, describe, initialised_kms, stderr_json
from tests.kms_fixtures import meter_row, officer_key_pem, public_pem, write_manifest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
OFFICERS = ("alice", "bob")


def script(cli: Cli, name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *(str(a) for a in args)],
        env=cli.env,
        cwd=cli.cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    cli.runs.append(proc)
    return proc


def approved(cli: Cli, ceremony: str, *params: str) -> list[str | Path]:
    """Request ``ceremony``, have both officers approve it; the script arguments."""
    request = cli.cwd / f"{ceremony}-{len(cli.runs)}.json"
    cli.ok("ceremony", "request", ceremony, *params, "--out", request)
    args: list[str | Path] = ["--request", request]
    for name in OFFICERS:
        approval = cli.cwd / f"{request.stem}.{name}.json"
        cli.ok(
            "ceremony", "approve", "--request", request, "--officer", name,
            "--key", cli.cwd / f"{name}.key", "--out", approval,
        )  # fmt: skip
        args += ["--approval", approval]
    return args


def pki_ready(cli: Cli) -> None:
    initialised_kms(cli)
    for name in OFFICERS:
        pem = officer_key_pem()
        (cli.cwd / f"{name}.key").write_bytes(pem)
        (cli.cwd / f"{name}.pub").write_bytes(public_pem(pem))
        cli.ok("officer", "add", "--name", name, "--public-key", cli.cwd / f"{name}.pub")
    proc = script(cli, "create_root_ca", *approved(cli, "create-root-ca"), "--json")
    assert proc.returncode == 0, describe(proc)
    assert json.loads(proc.stdout)["curve"] == "P-384"
    for suite in ("1", "2"):
        args = approved(cli, "create-issuing-ca", "--suite", suite)
        proc = script(cli, "create_issuing_ca", "--suite", suite, *args, "--json")
        assert proc.returncode == 0, describe(proc)


def provision(cli: Cli, *rows: dict[str, str]) -> None:
    manifest = write_manifest(cli.cwd / f"m{len(cli.runs)}.csv", list(rows))
    cli.ok("provision", "--manifest", manifest, "--out", cli.cwd / f"r{len(cli.runs)}.jsonl")


def csr_for(title: str, curve: ec.EllipticCurve, encoding=serialization.Encoding.DER) -> bytes:  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(curve)
    hash_ = hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, title)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(key, hash_)
        .public_bytes(encoding)
    )


@pytest.mark.slow
def test_from_officers_to_a_revoked_meter_certificate(cli: Cli) -> None:
    pki_ready(cli)
    row = meter_row(1, 1)
    provision(cli, row)
    title = row["system_title"]
    (cli.cwd / "meter.der").write_bytes(csr_for(title, ec.SECP256R1()))

    issued = cli.json("cert", "issue", "--csr", "meter.der", "--out", "meter.pem")
    assert issued["system_title"] == title and issued["type"] == "signing"
    # The station's import_certificate (method 6) carries exactly the certificate written.
    meter_der = x509.load_pem_x509_certificate((cli.cwd / "meter.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    apdu = bytes.fromhex(issued["import_certificate"])
    assert apdu[:13] == bytes.fromhex("C301C1004000002B0000FF0601")
    assert parse_import_certificate_request(apdu).parameter == meter_der
    chain = cli.ok("cert", "chain", "--suite", "1").stdout
    chain_json = cli.json("cert", "chain", "--suite", "1")
    assert [
        parse_import_certificate_request(bytes.fromhex(a)).parameter
        for a in chain_json["import_certificate"]
    ] == [
        x509.load_pem_x509_certificate(p.encode()).public_bytes(serialization.Encoding.DER)
        for p in chain_json["certificates"]
    ]
    (cli.cwd / "issuing.pem").write_text(chain[: chain.index("-----END CERTIFICATE-----") + 26])
    (cli.cwd / "root.pem").write_text(chain[chain.index("-----END CERTIFICATE-----") + 26 :])
    cli.ok("crl", "issue", "--suite", "1", "--out", "crl.pem")
    verify = ("verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "-crl_check")
    done = subprocess.run(
        ["openssl", *verify, "-CRLfile", "crl.pem", "meter.pem"],
        cwd=cli.cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    listed = cli.json("cert", "list", "--system-title", title)
    assert [c["serial"] for c in listed] == [issued["serial"]]
    shown = cli.json("cert", "show", "--serial", issued["serial"])
    assert shown["status"] == "VALID" and "BEGIN CERTIFICATE" in shown["certificate"]
    # README and --help promise the method-6 action-request here too.
    assert shown["import_certificate"] == issued["import_certificate"]
    assert "import_certificate" not in cli.ok("cert", "show", "--serial", issued["serial"]).stdout
    cli.ok("cert", "revoke", "--serial", issued["serial"], "--reason", "key-compromise")
    crl = cli.json("crl", "issue", "--suite", "1", "--out", "crl2.der")
    assert crl["crl_number"] == 2 and crl["revoked"] == 1
    parsed = x509.load_der_x509_crl((cli.cwd / "crl2.der").read_bytes())
    assert parsed.get_revoked_certificate_by_serial_number(int(issued["serial"], 16))
    (cli.cwd / "crl2.pem").write_bytes(parsed.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        ["openssl", *verify, "-CRLfile", "crl2.pem", "meter.pem"],
        cwd=cli.cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "revoked" in done.stdout + done.stderr
    cas = cli.json("ca", "list")
    assert {c["name"] for c in cas} == {"root-v1", "suite1-v1", "suite2-v1"}
    # The default ceremony policy: an issuing CA is revoked on the operator's word (an
    # emergency), and nothing is issued under it after.
    suite1 = next(c for c in cas if c["name"] == "suite1-v1")
    (cli.cwd / "agreement.der").write_bytes(csr_for(title, ec.SECP256R1()))
    agreement = cli.json(
        "cert", "issue", "--csr", "agreement.der", "--type", "key-agreement", "--out", "ka.pem"
    )
    cli.ok("cert", "revoke", "--serial", suite1["serial"], "--reason", "ca-compromise")
    # Never revoked itself, but out of use under its revoked CA: not listed as valid.
    out_of_use = cli.json("cert", "list", "--status", "out-of-use")
    assert [(c["serial"], c["status"]) for c in out_of_use] == [(agreement["serial"], "OUT_OF_USE")]
    assert agreement["serial"] not in cli.ok("cert", "list", "--status", "valid").stdout
    assert "OUT_OF_USE" in cli.ok("cert", "list", "--system-title", title).stdout
    (cli.cwd / "meter2.der").write_bytes(csr_for(title, ec.SECP256R1()))
    refused = cli("cert", "issue", "--csr", "meter2.der", "--type", "tls", "--out", "m2.pem")
    assert refused.returncode != 0 and "no active issuing CA for suite 1" in refused.stderr
    assert not (cli.cwd / "m2.pem").exists()


@pytest.mark.slow
def test_revoking_an_issuing_ca_takes_the_officers_approvals(cli: Cli) -> None:
    # A deployment whose ceremony policy makes CA revocation a ceremony, from its first officer.
    cli.env["KMS_CA_REVOCATION_CEREMONY"] = "true"
    pki_ready(cli)
    chain = cli.json("cert", "chain", "--suite", "2")
    issuing, root = chain["certificates"]
    # Whole bytes, as `openssl x509 -serial` prints it.
    (cli.cwd / "issuing.pem").write_text(issuing)
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", "issuing.pem"],
        cwd=cli.cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    serial = done.stdout.strip().removeprefix("serial=")
    assert len(serial) % 2 == 0
    assert int(serial, 16) == x509.load_pem_x509_certificate(issuing.encode()).serial_number
    assert serial in {c["serial"] for c in cli.json("ca", "list")}  # the KMS prints the same
    revoke = ("cert", "revoke", "--serial", serial, "--reason", "ca-compromise", "--json")

    alone = cli(*revoke)
    assert alone.returncode == 2, describe(alone)
    refusal = stderr_json(alone)
    assert refusal["error"] == "usage.approval"
    assert "kms ceremony request revoke-ca-certificate" in refusal["message"]
    superseded = approved(
        cli, "revoke-ca-certificate", "--serial", serial, "--reason", "superseded"
    )
    wrong = cli(*revoke, *superseded)
    assert wrong.returncode == 2 and stderr_json(wrong)["error"] == "usage.approval"
    lax = cli(*revoke, env={"KMS_CA_REVOCATION_CEREMONY": "false"})
    assert lax.returncode != 0 and "fixed at true" in stderr_json(lax)["message"]
    assert cli.json("cert", "show", "--serial", serial)["status"] == "VALID"

    args = approved(cli, "revoke-ca-certificate", "--serial", serial, "--reason", "ca-compromise")
    assert cli.json(*revoke, *args)["status"] == "REVOKED"
    again = cli(*revoke, *args)
    assert again.returncode != 0, describe(again)
    assert {c["name"]: c["state"] for c in cli.json("ca", "list")}["suite2-v1"] == "REVOKED"

    # The root's CRL lists it, and openssl refuses the issuing CA under that CRL.
    (cli.cwd / "issuing.pem").write_text(issuing)
    (cli.cwd / "root.pem").write_text(root)
    cli.ok("crl", "issue", "--ca", "root-v1", "--out", "root-crl.pem")
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-crl_check", "-CRLfile", "root-crl.pem",
         "issuing.pem"],
        cwd=cli.cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "revoked" in done.stdout + done.stderr


@pytest.mark.slow
def test_batches_from_a_folder_and_a_jsonl_file(cli: Cli) -> None:
    pki_ready(cli)
    rows = [meter_row(i, 2) for i in range(1, 5)]
    provision(cli, *rows)
    folder = cli.cwd / "csrs"
    folder.mkdir()
    for row in rows[:2]:
        (folder / f"{row['system_title']}.pem").write_bytes(
            csr_for(row["system_title"], ec.SECP384R1(), serialization.Encoding.PEM)
        )
    issued = cli.json("cert", "issue", "--csr", folder, "--type", "key-agreement", "--out", "certs")
    assert len(issued) == 2
    for row in rows[:2]:
        cert = x509.load_pem_x509_certificate(
            (cli.cwd / "certs" / f"{row['system_title']}-key-agreement.pem").read_bytes()
        )
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement

    lines = [
        json.dumps(
            {
                "csr": base64.b64encode(csr_for(r["system_title"], ec.SECP384R1())).decode(),
                "type": "tls",
            }
        )
        for r in rows[2:]
    ]
    (cli.cwd / "csrs.jsonl").write_text("\n".join(lines) + "\n")
    out = cli.json("cert", "issue", "--csr", "csrs.jsonl", "--out", "certs.jsonl")
    written = [json.loads(x) for x in (cli.cwd / "certs.jsonl").read_text().splitlines()]
    assert [w["serial"] for w in written] == [o["serial"] for o in out]
    assert all(w["type"] == "tls" and "BEGIN CERTIFICATE" in w["certificate"] for w in written)


@pytest.mark.slow
def test_bad_input_is_named_and_nothing_is_written(cli: Cli) -> None:
    pki_ready(cli)
    row = meter_row(1, 1)
    provision(cli, row)
    cases = {
        "garbage.der": (b"\x30\x82\x01", 2, "usage.input"),
        "wrong-curve.der": (
            csr_for(row["system_title"], ec.SECP384R1()),
            2,
            "usage.certificate_profile",
        ),
        "unknown.der": (csr_for("4D4D4D00000000AA", ec.SECP256R1()), 2, "usage.not_found"),
        "not-a-title.der": (csr_for("meter one", ec.SECP256R1()), 2, "usage.certificate_profile"),
    }
    for name, (data, status, code) in cases.items():
        (cli.cwd / name).write_bytes(data)
        proc = cli("cert", "issue", "--csr", name, "--out", f"{name}.pem", "--json")
        assert proc.returncode == status, describe(proc)
        assert stderr_json(proc)["error"] == code, describe(proc)
        assert not (cli.cwd / f"{name}.pem").exists()
    assert cli.json("cert", "list", "--type", "signing") == []

    refused = script(cli, "create_root_ca", *approved(cli, "create-root-ca"))
    assert refused.returncode == 2 and "already exists" in refused.stderr
    one_approval = approved(cli, "rotate-issuing-ca", "--suite", "1")[:4]
    refused = script(cli, "rotate_issuing_ca", "--suite", "1", *one_approval, "--json")
    assert refused.returncode == 2 and json.loads(refused.stderr)["error"] == "usage.approval"
    assert [c["state"] for c in cli.json("ca", "list") if c["suite"] == 1] == ["ACTIVE"]


def test_every_pki_command_explains_itself(cli: Cli) -> None:
    for args in (
        ("cert", "--help"), ("cert", "issue", "--help"), ("cert", "chain", "--help"),
        ("cert", "list", "--help"), ("cert", "show", "--help"), ("cert", "revoke", "--help"),
        ("crl", "issue", "--help"), ("ceremony", "request", "--help"),
        ("ceremony", "approve", "--help"), ("officer", "add", "--help"), ("ca", "list", "--help"),
        ("entity", "create", "--help"),
    ):  # fmt: skip
        proc = cli.ok(*args)
        usage, summary = proc.stdout.split("\n\n")[:2]
        assert usage.startswith("Usage:") and len(summary.strip()) > 20, describe(proc)
    for name in ("create_root_ca", "create_issuing_ca", "rotate_issuing_ca"):
        proc = script(cli, name, "--help")
        assert proc.returncode == 0 and "--approval" in proc.stdout, describe(proc)


def _without_usage(text: str) -> str:
    """Help text past its usage line (a script's names itself, a subcommand ``kms ca ...``)."""
    return text.split("\n", 1)[1]


def test_the_ceremony_scripts_and_the_kms_ca_subcommands_are_the_same_commands(cli: Cli) -> None:
    """Each script under scripts/ runs the `kms ca` subcommand of the same name: the same options
    and help, and both take -h as well as --help."""
    for name, subcommand in (
        ("create_root_ca", "create-root"),
        ("create_issuing_ca", "create-issuing"),
        ("rotate_issuing_ca", "rotate"),
        ("create_backup_key", "create-backup-key"),
        ("backup_ca_key", "backup"),
        ("restore_ca_key", "restore"),
    ):
        from_script = script(cli, name, "-h")
        assert from_script.returncode == 0, describe(from_script)
        assert from_script.stdout.startswith(f"Usage: {name}.py [OPTIONS]"), describe(from_script)
        assert script(cli, name, "--help").stdout == from_script.stdout
        from_kms = cli.ok("ca", subcommand, "-h")
        assert from_kms.stdout.startswith(f"Usage: kms ca {subcommand} [OPTIONS]")
        assert _without_usage(from_kms.stdout) == _without_usage(from_script.stdout)
        assert cli.ok("ca", subcommand, "--help").stdout == from_kms.stdout
    listed = cli.ok("ca", "-h").stdout
    assert all(c in listed for c in ("create-root", "create-issuing", "rotate", "list"))


@pytest.mark.slow
def test_kms_ca_runs_the_ceremonies_as_the_scripts_do(cli: Cli) -> None:
    initialised_kms(cli)
    for name in OFFICERS:
        pem = officer_key_pem()
        (cli.cwd / f"{name}.key").write_bytes(pem)
        (cli.cwd / f"{name}.pub").write_bytes(public_pem(pem))
        cli.ok("officer", "add", "--name", name, "--public-key", cli.cwd / f"{name}.pub")

    # The root and suite 1 through `kms ca`, suite 2 through the script: the same reports.
    root = cli.json("ca", "create-root", *approved(cli, "create-root-ca"))
    assert (root["name"], root["role"], root["curve"]) == ("root-v1", "ROOT", "P-384")
    by_kms = cli.json(
        "ca", "create-issuing", "--suite", "1", *approved(cli, "create-issuing-ca", "--suite", "1")
    )
    args = approved(cli, "create-issuing-ca", "--suite", "2")
    proc = script(cli, "create_issuing_ca", "--suite", "2", *args, "--json")
    by_script = json.loads(proc.stdout)
    assert set(by_kms) == set(by_script) == set(root)
    for report, suite, curve in ((by_kms, 1, "P-256"), (by_script, 2, "P-384")):
        assert (report["name"], report["role"], report["suite"]) == (
            f"suite{suite}-v1",
            "ISSUING",
            suite,
        )
        assert report["curve"] == curve and report["retired"] is None
        assert report["approvals"]["approved_by"] == sorted(OFFICERS)

    # Rotation: text output from each, of the same form.
    rotated = cli.ok(
        "ca", "rotate", "--suite", "1", *approved(cli, "rotate-issuing-ca", "--suite", "1")
    )
    args = approved(cli, "rotate-issuing-ca", "--suite", "2")
    rotated_by_script = script(cli, "rotate_issuing_ca", "--suite", "2", *args)
    assert rotated_by_script.returncode == 0, describe(rotated_by_script)
    for proc, suite in ((rotated, 1), (rotated_by_script, 2)):
        lines = proc.stdout.splitlines()
        assert lines[0].startswith(f"issuing CA suite{suite}-v2 (")
        assert lines[1] == f"retired suite{suite}-v1 (it still signs CRLs for what it issued)"
        assert lines[2] == "approved by alice, bob"
        assert lines[3] == "-----BEGIN CERTIFICATE-----"
    states = {c["name"]: c["state"] for c in cli.json("ca", "list")}
    assert states == {
        "root-v1": "ACTIVE",
        "suite1-v1": "RETIRED",
        "suite1-v2": "ACTIVE",
        "suite2-v1": "RETIRED",
        "suite2-v2": "ACTIVE",
    }

    # The same refusals, word for word and with the same exit status.
    again = cli("ca", "create-root", *approved(cli, "create-root-ca"))
    again_by_script = script(cli, "create_root_ca", *approved(cli, "create-root-ca"))
    assert again.returncode == again_by_script.returncode == 2, describe(again)
    assert again.stderr == again_by_script.stderr and "already exists" in again.stderr
    one = approved(cli, "create-issuing-ca", "--suite", "1")[:4]
    short = cli("ca", "create-issuing", "--suite", "1", *one, "--json")
    short_by_script = script(cli, "create_issuing_ca", "--suite", "1", *one, "--json")
    assert short.returncode == short_by_script.returncode == 2, describe(short)
    assert stderr_json(short) == stderr_json(short_by_script)


def test_an_approval_with_a_key_that_is_not_the_officers_is_refused_when_made(cli: Cli) -> None:
    cli.ok("init")
    for name in OFFICERS:
        pem = officer_key_pem()
        (cli.cwd / f"{name}.key").write_bytes(pem)
        (cli.cwd / f"{name}.pub").write_bytes(public_pem(pem))
        cli.ok("officer", "add", "--name", name, "--public-key", cli.cwd / f"{name}.pub")
    cli.ok("ceremony", "request", "create-root-ca", "--out", "root.req.json")
    approve = ("ceremony", "approve", "--request", "root.req.json", "--json")
    for officer, key in (("alice", "bob.key"), ("mallory", "alice.key")):
        refused = cli(*approve, "--officer", officer, "--key", key, "--out", f"{officer}.json")
        assert refused.returncode == 2, describe(refused)
        error = stderr_json(refused)
        assert error["error"] == "usage.approval" and repr(officer) in error["message"]
        assert not (cli.cwd / f"{officer}.json").exists()
    made = cli.json(*approve[:-1], "--officer", "alice", "--key", "alice.key", "--out", "a.json")
    assert made["officer"] == "alice" and (cli.cwd / "a.json").exists()
    assert "registered" in cli.ok("ceremony", "approve", "--help").stdout
