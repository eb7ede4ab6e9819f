"""CA ceremonies: M-of-N approvals verified before the token is touched, keys in the token,
certificates that pass the profile checker, pyca and openssl; nothing half-made on refusal."""

from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from kms.db import Approval, AuthorityRole, AuthorityState, CertificateAuthority
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.dlms.suites import SecuritySuite
from kms.errors import (
    ApprovalError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
)
from kms.hsm import TokenKey
from kms.services.common import approvals
from kms.services.common.resources import Resources
from kms.services.pki import authorities
from kms.services.root import Services
from tests.kms_fixtures import (
    Kms,
    Officers,
    Pki,
    officer_key_pem,
    public_pem,
    revoke_ca,
    services_for,
)


def _authorities(kms: Kms) -> list[CertificateAuthority]:
    with kms.db.begin() as session:
        rows = pki_repo.authorities(session)
        for row in rows:
            _ = row.certificate.der
        return rows


def _ca_labels(kms: Kms) -> set[str]:
    return {a.key_label for a in _authorities(kms)}


def _approvals_stored(kms: Kms) -> int:
    with kms.db.begin() as session:
        return int(session.scalar(select(func.count()).select_from(Approval)) or 0)


def test_root_and_issuing_cas_chain_up_and_openssl_agrees(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    rows = {a.name: a for a in _authorities(kms)}
    assert set(rows) == {"root-v1", "suite1-v1", "suite2-v1"}
    assert rows["root-v1"].curve == "P-384" and rows["root-v1"].role is AuthorityRole.ROOT
    assert rows["suite1-v1"].curve == "P-256" and rows["suite2-v1"].curve == "P-384"
    root = pyca_x509.load_der_x509_certificate(rows["root-v1"].certificate.der)
    root.verify_directly_issued_by(root)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    for name in ("suite1-v1", "suite2-v1"):
        issuing = pyca_x509.load_der_x509_certificate(rows[name].certificate.der)
        issuing.verify_directly_issued_by(root)
        assert issuing.extensions.get_extension_for_class(pyca_x509.BasicConstraints).value.ca
        (tmp_path / f"{name}.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))
        done = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(tmp_path / "root.pem"),
                str(tmp_path / f"{name}.pem"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_ca_keys_are_token_objects_only_extractable_under_a_trusted_key(pki: Pki) -> None:
    for authority in _authorities(pki.kms):
        attrs = pki.kms.hsm.attributes(TokenKey(authority.key_label, "private"))
        assert attrs["token"] is True
        assert attrs["sensitive"] is True
        assert attrs["wrap_with_trusted"] is True
        with pytest.raises(Exception):
            pki.kms.hsm.read_value(TokenKey(authority.key_label, "private"))


def test_ceremonies_are_audited_with_their_approvers(pki: Pki) -> None:
    with pki.kms.db.begin() as session:
        events = [e for e in repo.audit_events(session) if e.operation == "ca.create"]
        details = [json.loads(e.details) for e in events]
    assert [d["role"] for d in details] == ["ROOT", "ISSUING", "ISSUING"]
    assert all(d["approved_by"] == ["alice", "bob"] for d in details)


def test_rotation_retires_the_old_issuing_ca(pki: Pki) -> None:
    kms = pki.kms
    request, files = pki.officers.approve(kms, "rotate-issuing-ca", {"suite": 1})
    report = kms.services.authorities.rotate_issuing(
        actor="pytest", request=request, approvals=files, suite=SecuritySuite(1)
    )
    assert report.name == "suite1-v2" and report.retired == "suite1-v1"
    states = {a.name: a.state for a in _authorities(kms)}
    assert states["suite1-v1"] is AuthorityState.RETIRED
    assert states["suite1-v2"] is AuthorityState.ACTIVE
    assert states["suite2-v1"] is AuthorityState.ACTIVE


# --- refusals: nothing changes ----------------------------------------------------------------


def _refused(kms: Kms, officers: Officers, action, error: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    before = (_ca_labels(kms), _approvals_stored(kms))
    with pytest.raises(error, match=match):
        action()
    assert (_ca_labels(kms), _approvals_stored(kms)) == before


def _root(kms: Kms, request: approvals.CeremonyRequest, files: list[approvals.ApprovalFile]):  # type: ignore[no-untyped-def]
    return lambda: kms.services.authorities.create_root(
        actor="pytest", request=request, approvals=files
    )


def test_too_few_approvals_refuse_the_ceremony(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-root-ca", {}, ["alice"])
    _refused(kms, officers, _root(kms, request, files), ApprovalError, "needs 2 officer approvals")


def test_the_same_officer_twice_counts_once(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-root-ca", {}, ["alice"])
    _refused(kms, officers, _root(kms, request, files + files), ApprovalError, "approved twice")


def test_a_forged_signature_refuses_even_with_a_quorum_besides(
    kms: Kms, officers: Officers
) -> None:
    request, files = officers.approve(kms, "create-root-ca", {}, ["alice", "bob", "carol"])
    forged = dataclasses.replace(files[2], signature=files[0].signature)
    _refused(
        kms, officers, _root(kms, request, [*files[:2], forged]), ApprovalError, "does not verify"
    )


def test_an_unregistered_officer_is_refused(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-root-ca", {})
    mallory = approvals.load_approval(
        approvals.sign_request(request, "mallory", officer_key_pem(), None), "mallory.json"
    )
    _refused(
        kms,
        officers,
        _root(kms, request, [files[0], mallory]),
        ApprovalError,
        "not an active officer",
    )


def test_an_approval_of_another_ceremony_is_refused(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-issuing-ca", {"suite": 1})
    _refused(kms, officers, _root(kms, request, files), ApprovalError, "approves create-issuing-ca")


def test_an_expired_request_is_refused(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-root-ca", {})
    past = dataclasses.replace(
        request, expires_at=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    )
    _refused(kms, officers, _root(kms, past, files), ApprovalError, "expired")


def test_a_request_runs_once(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-root-ca", {})
    _root(kms, request, files)()
    request2, files2 = officers.approve(kms, "create-issuing-ca", {"suite": 2})
    kms.services.authorities.create_issuing(
        actor="pytest", request=request2, approvals=files2, suite=SecuritySuite(2)
    )
    with pytest.raises(ApprovalError, match="already used"):
        kms.services.authorities.rotate_issuing(
            actor="pytest",
            request=dataclasses.replace(request2, ceremony="rotate-issuing-ca"),
            approvals=files2,
            suite=SecuritySuite(2),
        )


def test_an_edited_request_file_is_refused(kms: Kms, officers: Officers) -> None:
    request, _files = officers.approve(kms, "create-root-ca", {})
    edited = request.text.replace(b'"parameters":{}', b'"parameters": {}')
    with pytest.raises(InputError, match="canonical"):
        approvals.load_request(edited, "request.json")


def test_the_root_is_created_once(pki: Pki) -> None:
    request, files = pki.officers.approve(pki.kms, "create-root-ca", {})
    _refused(pki.kms, pki.officers, _root(pki.kms, request, files), ConflictError, "once")


def test_an_issuing_ca_needs_the_root(kms: Kms, officers: Officers) -> None:
    request, files = officers.approve(kms, "create-issuing-ca", {"suite": 1})
    _refused(
        kms,
        officers,
        lambda: kms.services.authorities.create_issuing(
            actor="pytest", request=request, approvals=files, suite=SecuritySuite(1)
        ),
        NotFoundError,
        "no root CA",
    )


def test_a_failed_ceremony_leaves_no_key_in_the_token(
    kms: Kms, officers: Officers, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real = kms.hsm.create_ec_key_pair

    def spy(label: str, *args: object, **kwargs: object) -> TokenKey:
        made.append(label)
        return real(label, *args, **kwargs)  # type: ignore[arg-type]

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(kms.hsm, "create_ec_key_pair", spy)
    monkeypatch.setattr(authorities.audit, "append", boom)
    request, files = officers.approve(kms, "create-root-ca", {})
    stored = _approvals_stored(kms)  # carol's add-officer ceremony
    with pytest.raises(RuntimeError):
        _root(kms, request, files)()
    assert made and not kms.hsm.has_token_key(TokenKey(made[0], "private"))
    assert not kms.hsm.has_token_key(TokenKey(made[0], "public"))
    assert _authorities(kms) == [] and _approvals_stored(kms) == stored


# --- officers ---------------------------------------------------------------------------------


def test_adding_an_officer_beyond_m_needs_a_ceremony_and_n_caps_the_registry(
    kms: Kms, officers: Officers
) -> None:
    with pytest.raises(ConflictError, match=r"3 officers are registered, the quorum's N"):
        kms.services.approvals.add_officer(
            actor="pytest", name="dave", public_key=public_pem(officer_key_pem())
        )


def test_bootstrap_ends_at_m(kms: Kms) -> None:
    for name in ("alice", "bob"):
        kms.services.approvals.add_officer(
            actor="pytest", name=name, public_key=public_pem(officer_key_pem())
        )
    with pytest.raises(ApprovalError, match="add-officer ceremony"):
        kms.services.approvals.add_officer(
            actor="pytest", name="carol", public_key=public_pem(officer_key_pem())
        )


def test_an_officer_key_must_be_ec_p256_or_p384(kms: Kms) -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InputError, match="P-256 or P-384"):
        kms.services.approvals.add_officer(actor="pytest", name="eve", public_key=pem)


def test_a_revoked_issuing_ca_is_replaced_by_rotation(pki: Pki) -> None:
    kms = pki.kms
    with kms.db.begin() as session:
        current = pki_repo.active_authority(session, AuthorityRole.ISSUING, 2)
        assert current is not None
        serial = current.certificate.serial
    revoke_ca(pki, serial)
    request, files = pki.officers.approve(kms, "rotate-issuing-ca", {"suite": 2})
    report = kms.services.authorities.rotate_issuing(
        actor="pytest", request=request, approvals=files, suite=SecuritySuite(2)
    )
    assert (report.name, report.retired) == ("suite2-v2", None)
    states = {a.name: a.state for a in _authorities(kms)}
    assert states["suite2-v1"] is AuthorityState.REVOKED
    assert states["suite2-v2"] is AuthorityState.ACTIVE


def test_the_quorum_is_fixed_in_the_database_not_by_each_process(
    kms: Kms, officers: Officers
) -> None:
    # An operator's environment saying M = 1 does not make one approval enough.
    lax = dataclasses.replace(kms.config, ceremony_approvals=1)
    request, files = officers.approve(kms, "create-root-ca", {}, ["alice"])
    with pytest.raises(ConfigError, match="fixed at 2 of 3"):
        services_for(kms, lax).authorities.create_root(
            actor="pytest", request=request, approvals=files
        )
    wide = dataclasses.replace(kms.config, ceremony_approvals=5, ceremony_officers=5)
    with pytest.raises(ConfigError, match="fixed at 2 of 3"):
        services_for(kms, wide).approvals.add_officer(
            actor="pytest", name="dave", public_key=public_pem(officer_key_pem())
        )
    assert _authorities(kms) == []


def test_a_request_is_claimed_before_the_token_is_touched(kms: Kms, officers: Officers) -> None:
    # The same request approved by other officers cannot run a second time.
    request, files = officers.approve(kms, "create-root-ca", {}, ["alice", "bob"])
    others = [
        approvals.load_approval(
            approvals.sign_request(request, "carol", officers.keys["carol"], None), "c.json"
        ),
        files[0],
    ]
    _root(kms, request, files)()
    with pytest.raises(ApprovalError, match="already used"):
        _root(kms, request, others)()


def test_an_officer_is_removed_by_a_ceremony_and_approves_nothing_after(
    kms: Kms, officers: Officers
) -> None:
    request, files = officers.approve(kms, "remove-officer", {"name": "carol"})
    kms.services.approvals.remove_officer(
        actor="pytest", name="carol", request=request, approvals=files
    )
    request, files = officers.approve(kms, "create-root-ca", {}, ["alice", "carol"])
    with pytest.raises(ApprovalError, match="'carol' is not an active officer"):
        _root(kms, request, files)()
    # Two remain, M = 2: removing another would leave no quorum.
    request, files = officers.approve(kms, "remove-officer", {"name": "bob"})
    with pytest.raises(ConflictError, match="fewer than M = 2"):
        kms.services.approvals.remove_officer(
            actor="pytest", name="bob", request=request, approvals=files
        )


class _NoToken:
    """A token that must not be touched: approving reads the database only."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"kms ceremony approve touched the token ({name})")


def test_an_approval_is_refused_when_made_with_a_key_that_is_not_the_officers(
    kms: Kms, officers: Officers
) -> None:
    request, _files = officers.approve(kms, "create-root-ca", {}, [])
    resources = Resources(kms.config, hsm=_NoToken(), database=kms.db)  # type: ignore[arg-type]
    service = Services(resources=resources).approvals
    made = approvals.load_approval(
        service.approve(request, "alice", officers.keys["alice"], None), "a.json"
    )
    assert made.officer == "alice" and made.request_id == request.request_id
    for officer, key, match in (
        ("alice", officers.keys["bob"], "not the one registered for officer 'alice'"),
        ("alice", officer_key_pem(), "not the one registered for officer 'alice'"),
        ("mallory", officer_key_pem(), "'mallory' is not a registered officer"),
    ):
        with pytest.raises(ApprovalError, match=match):
            service.approve(request, officer, key, None)
    removal, files = officers.approve(kms, "remove-officer", {"name": "carol"})
    kms.services.approvals.remove_officer(
        actor="pytest", name="carol", request=removal, approvals=files
    )
    with pytest.raises(ApprovalError, match="officer 'carol' was removed"):
        service.approve(request, "carol", officers.keys["carol"], None)
