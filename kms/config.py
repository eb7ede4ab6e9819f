"""Configuration from ``kms.toml`` and the environment; the environment wins.

Recognised environment variables (the names are a contract other tools rely on):

``KMS_CONFIG``          path of the TOML file (default ``./kms.toml``; absent is fine)
``KMS_PKCS11_MODULE``   path of the PKCS#11 library (default: Debian's SoftHSM2 module)
``KMS_TOKEN_LABEL``     label of the token holding the KMS's keys
``KMS_USER_PIN``        the user PIN, or ``KMS_USER_PIN_FILE``: a file whose first line is the PIN
``KMS_DATABASE_URL``    SQLAlchemy URL of the metadata database (default SQLite under ./var/)
``KMS_HSM_PROFILE``     name of a profile in ``hsm_profiles/`` or a path to one (default softhsm2)
``KMS_ACTOR``           who is acting, for the audit trail (default: the OS user)
``KMS_CLIENT_SYSTEM_TITLE``  the head-end's own system title (16 hex digits): the originator
                        of every APDU the KMS protects, the fixed field of its IVs
``KMS_CEREMONY_APPROVALS``  M: officer approvals every ceremony needs (default 2)
``KMS_CEREMONY_OFFICERS``   N: officers who may be registered (default 3; M <= N)
``KMS_SO_PIN``          the token's security officer PIN, or ``KMS_SO_PIN_FILE``: read only by
                        the ceremony that makes the CA backup wrapping key
                        (:func:`security_officer_pin`), never part of :class:`Config`

PKI settings live in kms.toml only: ``pki_organization`` (O= of the CA names),
``root_ca_validity_days`` (default 10950), ``issuing_ca_validity_days`` (7300),
``certificate_validity_days`` (5475; clipped to the issuer's own end) and ``crl_validity_days``
(7: nextUpdate of a CRL).

A PIN never comes from argv. It is held in a :class:`Pin`, whose ``repr`` and ``str`` hide it, so
neither a traceback nor a log line can show it.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kms.dlms.system_title import parse_system_title
from kms.errors import ConfigError, InputError

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_DATABASE_URL = "sqlite:///var/kms.db"
DEFAULT_PROFILE = "softhsm2"


class Pin:
    """A token PIN that never shows itself in a repr, a str, or a format string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ConfigError("the user PIN is empty")
        self._value = value

    def reveal(self) -> str:
        """The PIN itself, for the one call that logs in to the token."""
        return self._value

    def __repr__(self) -> str:
        return "Pin('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pin) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Pin is not picklable")


@dataclass(frozen=True)
class Config:
    """Validated KMS settings."""

    pkcs11_module: str = DEFAULT_PKCS11_MODULE
    token_label: str = "kms"  # noqa: S105 (a label, not a secret)
    user_pin: Pin | None = field(default=None, repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    hsm_profile: str = DEFAULT_PROFILE
    actor: str = "unknown"
    provision_chunk_size: int = 500
    #: The head-end's system title (8 bytes), or None when this KMS protects no APDUs.
    client_system_title: bytes | None = None
    #: Invocation counters reserved per database commit (docs/architecture.md, invariant 4).
    ic_block_size: int = 1000
    #: Unwrapped session keys kept per process, and how long an unused one stays.
    key_cache_size: int = 256
    key_cache_idle_seconds: float = 300.0
    #: M-of-N: approvals each ceremony needs, and how many officers may be registered.
    ceremony_approvals: int = 2
    ceremony_officers: int = 3
    #: Whether revoking a CA certificate needs an approved revoke-ca-certificate ceremony
    #: (fixed in the database with M and N). Off, it is on the operator's word, and still
    #: takes a ceremony's approvals when given.
    ca_revocation_ceremony: bool = False
    pki_organization: str | None = None
    root_ca_validity_days: int = 10950
    issuing_ca_validity_days: int = 7300
    certificate_validity_days: int = 5475
    crl_validity_days: int = 7

    def require_pin(self) -> Pin:
        """The user PIN, or a :class:`ConfigError` naming the two ways to give one."""
        if self.user_pin is None:
            raise ConfigError("no user PIN: set KMS_USER_PIN or KMS_USER_PIN_FILE")
        return self.user_pin

    def require_client_system_title(self) -> bytes:
        """The head-end's system title, or a :class:`ConfigError` naming where to set it."""
        if self.client_system_title is None:
            raise ConfigError(
                "no client system title: set KMS_CLIENT_SYSTEM_TITLE or client_system_title in "
                "kms.toml (16 hex digits)"
            )
        return self.client_system_title


def _read_pin_file(path: str) -> Pin:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the PIN file {path}: {exc.strerror}") from None
    lines = text.splitlines()
    return Pin(lines[0].strip() if lines else "")


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "kms" not in data:
        return data
    section = data["kms"]
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: the [kms] table is not a table")
    outside = sorted(set(data) - {"kms"})
    if outside:
        # A setting outside [kms] would be silently ignored; a PIN there would sit unnoticed.
        raise ConfigError(f"{path}: setting(s) outside the [kms] table: {', '.join(outside)}")
    return section


_TOML_KEYS = {
    "pkcs11_module",
    "token_label",
    "user_pin_file",
    "database_url",
    "hsm_profile",
    "actor",
    "provision_chunk_size",
    "client_system_title",
    "ic_block_size",
    "key_cache_size",
    "key_cache_idle_seconds",
    "ceremony_approvals",
    "ceremony_officers",
    "ca_revocation_ceremony",
    "pki_organization",
    "root_ca_validity_days",
    "issuing_ca_validity_days",
    "certificate_validity_days",
    "crl_validity_days",
}


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read kms.toml (if present), then let the environment override it."""
    env = os.environ if environ is None else environ
    path = Path(env.get("KMS_CONFIG", "kms.toml"))
    values: dict[str, Any] = {}
    if path.exists():
        values = _load_toml(path)
        if "user_pin" in values:
            raise ConfigError(f"{path}: a PIN may not be written in kms.toml; use user_pin_file")
        unknown = sorted(set(values) - _TOML_KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s): {', '.join(unknown)}")
    elif "KMS_CONFIG" in env:
        raise ConfigError(f"KMS_CONFIG names {path}, which does not exist")

    for key, var in (
        ("pkcs11_module", "KMS_PKCS11_MODULE"),
        ("token_label", "KMS_TOKEN_LABEL"),
        ("database_url", "KMS_DATABASE_URL"),
        ("hsm_profile", "KMS_HSM_PROFILE"),
        ("actor", "KMS_ACTOR"),
        ("user_pin_file", "KMS_USER_PIN_FILE"),
        ("client_system_title", "KMS_CLIENT_SYSTEM_TITLE"),
    ):
        if env.get(var):
            values[key] = env[var]
    for key, var in (
        ("ceremony_approvals", "KMS_CEREMONY_APPROVALS"),
        ("ceremony_officers", "KMS_CEREMONY_OFFICERS"),
    ):
        if env.get(var):
            try:
                values[key] = int(env[var])
            except ValueError:
                raise ConfigError(f"{var} must be a positive integer") from None
    if env.get("KMS_CA_REVOCATION_CEREMONY"):
        values["ca_revocation_ceremony"] = _env_bool(env, "KMS_CA_REVOCATION_CEREMONY")

    pin: Pin | None = None
    if env.get("KMS_USER_PIN"):
        pin = Pin(env["KMS_USER_PIN"])
    elif values.get("user_pin_file"):
        pin = _read_pin_file(str(values["user_pin_file"]))

    chunk = _positive_int(values, "provision_chunk_size", Config.provision_chunk_size)
    block = _positive_int(values, "ic_block_size", Config.ic_block_size)
    cache_size = _positive_int(values, "key_cache_size", Config.key_cache_size)
    if cache_size < 2:
        # One APDU needs its encryption key and its AK at once.
        raise ConfigError("key_cache_size must be at least 2 (an APDU uses two keys at once)")
    idle = values.get("key_cache_idle_seconds", Config.key_cache_idle_seconds)
    if isinstance(idle, bool) or not isinstance(idle, int | float) or not idle > 0:
        raise ConfigError("key_cache_idle_seconds must be a positive number")
    approvals = _positive_int(values, "ceremony_approvals", Config.ceremony_approvals)
    officers = _positive_int(values, "ceremony_officers", Config.ceremony_officers)
    if approvals > officers:
        raise ConfigError(
            f"ceremony_approvals (M = {approvals}) exceeds ceremony_officers (N = {officers})"
        )
    revocation_ceremony = values.get("ca_revocation_ceremony", Config.ca_revocation_ceremony)
    if not isinstance(revocation_ceremony, bool):
        raise ConfigError("ca_revocation_ceremony must be true or false")
    days = {
        key: _positive_int(values, key, getattr(Config, key))
        for key in (
            "root_ca_validity_days",
            "issuing_ca_validity_days",
            "certificate_validity_days",
            "crl_validity_days",
        )
    }
    for key in (
        "pkcs11_module",
        "token_label",
        "database_url",
        "hsm_profile",
        "actor",
        "client_system_title",
        "pki_organization",
    ):
        if key in values and not isinstance(values[key], str):
            raise ConfigError(f"{key} must be a string")

    actor = values.get("actor") or _os_user()
    return Config(
        pkcs11_module=values.get("pkcs11_module", DEFAULT_PKCS11_MODULE),
        token_label=values.get("token_label", Config.token_label),
        user_pin=pin,
        database_url=values.get("database_url", DEFAULT_DATABASE_URL),
        hsm_profile=values.get("hsm_profile", DEFAULT_PROFILE),
        actor=actor,
        provision_chunk_size=chunk,
        client_system_title=_client_system_title(values.get("client_system_title")),
        ic_block_size=block,
        key_cache_size=cache_size,
        key_cache_idle_seconds=float(idle),
        ceremony_approvals=approvals,
        ceremony_officers=officers,
        ca_revocation_ceremony=revocation_ceremony,
        pki_organization=values.get("pki_organization") or None,
        **days,
    )


def _env_bool(env: Mapping[str, str], var: str) -> bool:
    word = env[var].strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var} must be true or false (1/0, yes/no), not {env[var]!r}")


def _positive_int(values: Mapping[str, Any], key: str, default: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer")
    return value


def _client_system_title(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return parse_system_title(text)
    except InputError as exc:
        raise ConfigError(f"client_system_title (KMS_CLIENT_SYSTEM_TITLE): {exc.detail}") from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def security_officer_pin(environ: Mapping[str, str] | None = None) -> Pin:
    """The SO PIN from ``KMS_SO_PIN`` or ``KMS_SO_PIN_FILE``, for the one ceremony that needs it.

    Kept out of :class:`Config` so that no long-running KMS process ever holds it.
    """
    env = os.environ if environ is None else environ
    if env.get("KMS_SO_PIN"):
        return Pin(env["KMS_SO_PIN"])
    if env.get("KMS_SO_PIN_FILE"):
        try:
            text = Path(env["KMS_SO_PIN_FILE"]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the SO PIN file: {exc.strerror}") from None
        lines = text.splitlines()
        if lines and lines[0].strip():
            return Pin(lines[0].strip())
        raise ConfigError("the SO PIN file is empty")
    raise ConfigError("no security officer PIN: set KMS_SO_PIN or KMS_SO_PIN_FILE")
