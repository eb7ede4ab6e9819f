"""The composition root: the one place that builds the services of a process.

The CLI's Context holds one :class:`Services` per invocation, and the network service will hold
one per worker process; tests and station software build their own from a :class:`Config`. It
owns the process's :class:`Resources` -- the configuration, the token session and the database --
and opens them lazily: a command that needs only the database never logs in to the token, and the
database's schema gate runs before the token login, so a database that is behind is refused
before anything touches the token.

The style of every service is the same: a class whose collaborators (the :class:`Resources`, or
other services) come in through ``__init__``, built here on first use, whose public methods are
the use cases. The acting identity is an argument of each call that leaves an audit record
(``actor=``), never a property of the process, so one process can serve many callers.

:meth:`Services.close` closes in dependency order: the head-end's key caches first (they destroy
the session keys they unwrapped), then the token session, then the database pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kms.config import Config, load_config
from kms.services.common.approvals import ApprovalService
from kms.services.common.audit import AuditService
from kms.services.common.resources import Resources
from kms.services.common.root_keys import RootKeyService
from kms.services.common.status import StatusService
from kms.services.common.system import SystemService
from kms.services.hes.associations import TokenAssociationService, association_factory
from kms.services.hes.challenges import ChallengeService
from kms.services.hes.general_signing import GeneralSigningService
from kms.services.hes.hls import TokenHlsAuthentication, hls_factory
from kms.services.hes.hls_secret import HlsSecretService
from kms.services.hes.protection import TokenApduProtection, apdu_protection_factory
from kms.services.pki.authorities import AuthorityService
from kms.services.pki.ca_backup import CaBackupService
from kms.services.pki.certificates import CertificateService
from kms.services.pki.end_entities import EndEntityService
from kms.services.provisioning.key_agreement import KeyAgreementService
from kms.services.provisioning.meters import MeterService
from kms.services.provisioning.provision import ProvisioningService

__all__ = ["Resources", "Services"]

S = TypeVar("S")


class Services:
    """Every service of one process, built on first use from one :class:`Resources`."""

    def __init__(self, config: Config | None = None, *, resources: Resources | None = None) -> None:
        if resources is None:
            resources = Resources(config if config is not None else load_config())
        self.resources = resources
        self._built: dict[str, object] = {}
        #: Closers of the services that hold token state, run before the token is closed.
        self._closers: list[Callable[[], None]] = []

    @property
    def config(self) -> Config:
        """The process's validated configuration."""
        return self.resources.config

    def _service(self, name: str, build: Callable[[], S]) -> S:
        """The service ``name``, built by ``build`` the first time it is asked for."""
        if name not in self._built:
            self._built[name] = build()
        service = self._built[name]
        return service  # type: ignore[return-value]

    # --- provisioning (steps 1-2) ---------------------------------------------------------------

    @property
    def provisioning(self) -> ProvisioningService:
        """Factory provisioning of meters and their confirmation."""
        return self._service("provisioning", lambda: ProvisioningService(self.resources))

    @property
    def meters(self) -> MeterService:
        """The meters recorded: metadata, setups, key versions and check values."""
        return self._service("meters", lambda: MeterService(self.resources))

    @property
    def key_agreements(self) -> KeyAgreementService:
        """Key agreement (security setup method 3) with suite 1 and 2 meters."""
        return self._service("key_agreements", lambda: KeyAgreementService(self.resources))

    # --- common ------------------------------------------------------------------------------

    @property
    def root_keys(self) -> RootKeyService:
        """``kms init`` and the transport keys."""
        return self._service("root_keys", lambda: RootKeyService(self.resources))

    @property
    def audit(self) -> AuditService:
        """The audit trail: checkpoints and the check of the whole chain."""
        return self._service("audit", lambda: AuditService(self.resources))

    @property
    def system(self) -> SystemService:
        """The database schema and the token's self-test."""
        return self._service("system", lambda: SystemService(self.resources))

    @property
    def status(self) -> StatusService:
        """``kms status``: every health check of the installation, in one report."""
        return self._service("status", lambda: StatusService(self.resources))

    # --- the head-end (step 7) ---------------------------------------------------------------

    def apdus(self, *, ic_block_size: int | None = None) -> TokenApduProtection:
        """The APDU protection of this process; its keys serve HLS and associations too.
        ``ic_block_size`` overrides the configured block on first use (a CLI process protects
        one APDU and reserves exactly one IC)."""

        def build() -> TokenApduProtection:
            db = self.resources.database()  # the schema gate before the token login
            service = apdu_protection_factory(
                self.resources.hsm(), db, self.config, ic_block_size=ic_block_size
            )
            self.on_close(service.close)
            return service

        return self._service("apdus", build)

    @property
    def associations(self) -> TokenAssociationService:
        """Application associations with a dedicated key, on the keys of :meth:`apdus`."""
        return self._service("associations", lambda: association_factory(self.apdus()))

    @property
    def hls(self) -> TokenHlsAuthentication:
        """HLS authentication (mechanisms 5, 6, 7); mechanism 5 shares :meth:`apdus`'s counters."""
        return self._service("hls", lambda: hls_factory(self.apdus().keys, self.config))

    @property
    def hls_challenges(self) -> ChallengeService:
        """HLS client challenges from the token alone (no database)."""
        return self._service("hls_challenges", lambda: ChallengeService(self.resources))

    @property
    def hls_secrets(self) -> HlsSecretService:
        """The audited import of a meter's HLS secret (mechanism 6)."""
        return self._service("hls_secrets", lambda: HlsSecretService(self.resources))

    @property
    def general_signing(self) -> GeneralSigningService:
        """General-signing (0xDF) between the head-end and a meter."""
        return self._service("general_signing", lambda: GeneralSigningService(self.resources))

    # --- the PKI -------------------------------------------------------------------------------

    @property
    def approvals(self) -> ApprovalService:
        """The officers and the M-of-N approvals every ceremony verifies (kms.services.common)."""
        return self._service("approvals", lambda: ApprovalService(self.resources))

    @property
    def authorities(self) -> AuthorityService:
        """The CA ceremonies (root, issuing CAs, rotation) and the CA register."""
        return self._service(
            "authorities", lambda: AuthorityService(self.resources, self.approvals)
        )

    @property
    def certificates(self) -> CertificateService:
        """Meter certificates from CSRs, the chain, revocation and CRLs."""
        return self._service(
            "certificates", lambda: CertificateService(self.resources, self.approvals)
        )

    @property
    def ca_backup(self) -> CaBackupService:
        """The CA key backup ceremonies: the backup key, backup and restore."""
        return self._service("ca_backup", lambda: CaBackupService(self.resources, self.approvals))

    @property
    def end_entities(self) -> EndEntityService:
        """The KMS's own key pairs (HES client, data concentrators, site keys)."""
        return self._service(
            "end_entities", lambda: EndEntityService(self.resources, self.certificates)
        )

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` at :meth:`close`, before the token session ends (newest first)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Close the services that hold token state, then the token and the database."""
        try:
            while self._closers:
                self._closers.pop()()
        finally:
            self._built.clear()
            self.resources.close()
