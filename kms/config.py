"""Configuration from ``kms.toml`` and the environment; the environment wins.

Recognised environment variables (the names are a contract other tools rely on):

``KMS_CONFIG``          path of the TOML file (see "Where kms.toml is" below)
``KMS_PKCS11_MODULE``   path of the PKCS#11 library (default: Debian's SoftHSM2 module)
``KMS_TOKEN_LABEL``     label of the token holding the KMS's keys
``KMS_USER_PIN``        the user PIN, or ``KMS_USER_PIN_FILE``: a file whose first line is the PIN
``KMS_DATA_DIR``        the KMS's data directory (see "Where the data is" below)
``KMS_DATABASE_URL``    SQLAlchemy URL of the metadata database (default SQLite in the data dir)
``KMS_HSM_PROFILE``     name of a profile shipped in the package (``hsm_profiles/`` of the
                        repository) or a path to a TOML file (default softhsm2)
``KMS_ACTOR``           who is acting, for the audit trail (default: the OS user)
``KMS_CLIENT_SYSTEM_TITLE``  the head-end's own system title (16 hex digits): the originator
                        of every APDU the KMS protects, the fixed field of its IVs
``KMS_CEREMONY_APPROVALS``  M: officer approvals every ceremony needs (default 2)
``KMS_CEREMONY_OFFICERS``   N: officers who may be registered (default 3; M <= N)
``KMS_CA_REVOCATION_CEREMONY``  whether revoking a CA certificate needs a ceremony (default no)
``KMS_PKI_ORGANIZATION``  ``pki_organization``: O= of the CA names (set it before the root CA
                        ceremony: a CA's name is fixed when it is made)
``KMS_SO_PIN``          the token's security officer PIN, or ``KMS_SO_PIN_FILE``: read only by
                        the ceremony that makes the CA backup wrapping key
                        (:func:`security_officer_pin`), never part of :class:`Config`

The other PKI settings live in kms.toml only: ``root_ca_validity_days`` (default 10950),
``issuing_ca_validity_days`` (7300), ``certificate_validity_days`` (5475; clipped to the
issuer's own end) and ``crl_validity_days`` (7: nextUpdate of a CRL).

Where kms.toml is: the file ``KMS_CONFIG`` names (it must exist); else ``./kms.toml`` in the
working directory, if there is one (the long-standing behaviour, kept for stations that run from
one directory); else ``$XDG_CONFIG_HOME/dlms-kms/kms.toml`` (``~/.config/dlms-kms/kms.toml``), if
there is one; else none, and every setting is the environment's or a default. One file is read,
never a merge of several: ``kms config show`` names it.

Where the data is: ``data_dir`` in kms.toml or ``KMS_DATA_DIR``, an absolute path (``~`` allowed);
default ``$XDG_DATA_HOME/dlms-kms``, else ``~/.local/share/dlms-kms``. The default database is
``sqlite:///<data_dir>/kms.db``; ``database_url`` (or ``KMS_DATABASE_URL``) replaces it. Nothing
here touches the disk: the directory is made (mode 0700) by :mod:`kms.db.session` when it opens
a SQLite database that does not exist yet. Nothing is ever put under the working directory
unless a setting says so.

:func:`describe_config` gives every effective setting with where it came from (the file, a
variable, or a default), for ``kms config show``.

A PIN never comes from argv. It is held in a :class:`Pin`, whose ``repr`` and ``str`` hide it, so
neither a traceback nor a log line can show it. A PIN file must be its owner's alone (no access
for group or others, as OpenSSH demands of a private key): a wider one is refused, naming the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kms.dlms.system_title import parse_system_title
from kms.errors import ConfigError, InputError

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_PROFILE = "softhsm2"
#: The directory name under the XDG base directories (configuration and data).
APP_DIR = "dlms-kms"
#: The database file in the data directory, when no database URL is given.
DATABASE_FILE = "kms.db"


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
    #: Where the KMS keeps its data (the default SQLite database); see the module docstring.
    data_dir: Path = field(default_factory=lambda: default_data_dir()[0])
    database_url: str = field(default_factory=lambda: default_database_url(default_data_dir()[0]))
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


def _read_pin_file(path: str, what: str) -> str:
    """The first line of a PIN file, stripped; refused if group or others may open the file.

    The mode is checked on the open file (no window between the check and the read), and the
    message names the file, its mode and the fix, never a byte of what it holds.
    """
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"the {what} file {path} is open to group or others (mode {mode:04o}); "
                    f"a PIN file must be readable by its owner only: run `chmod 600 {path}`"
                )
            text = handle.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} file {path} is not UTF-8 text") from None
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


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
    "data_dir",
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

#: Setting -> the environment variable that overrides it, for text settings.
_ENV_TEXT = {
    "pkcs11_module": "KMS_PKCS11_MODULE",
    "token_label": "KMS_TOKEN_LABEL",
    "data_dir": "KMS_DATA_DIR",
    "database_url": "KMS_DATABASE_URL",
    "hsm_profile": "KMS_HSM_PROFILE",
    "actor": "KMS_ACTOR",
    "user_pin_file": "KMS_USER_PIN_FILE",
    "client_system_title": "KMS_CLIENT_SYSTEM_TITLE",
    "pki_organization": "KMS_PKI_ORGANIZATION",
}
_ENV_INT = {
    "ceremony_approvals": "KMS_CEREMONY_APPROVALS",
    "ceremony_officers": "KMS_CEREMONY_OFFICERS",
}
_ENV_BOOL = {"ca_revocation_ceremony": "KMS_CA_REVOCATION_CEREMONY"}


@dataclass(frozen=True)
class Setting:
    """One effective setting, as ``kms config show`` prints it.

    ``origin`` is the path of kms.toml for a setting from the file, the variable's name for one
    from the environment, ``None`` for a default; ``detail`` says more where a value alone would
    leave the reader guessing (how a default was found, which file the PIN was read from).
    ``value`` is what the KMS uses, JSON-ready, except that the PIN is only ``"set"`` or
    ``"not set"`` and a database password is masked.
    """

    name: str
    value: str | int | float | bool | None
    #: "file" (kms.toml), "environment" or "default".
    source: str
    origin: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class _Origin:
    source: str
    origin: str | None = None
    detail: str | None = None


def _home(env: Mapping[str, str]) -> Path:
    if env.get("HOME"):
        return Path(env["HOME"])
    try:
        return Path.home()
    except RuntimeError:
        raise ConfigError(
            "cannot tell the home directory (HOME is unset): set KMS_DATA_DIR, or KMS_CONFIG"
        ) from None


def _xdg_dir(env: Mapping[str, str], variable: str, fallback: str) -> tuple[Path, str]:
    """``$variable/dlms-kms``, or ``~/fallback/dlms-kms`` when the variable is unset or relative
    (the XDG Base Directory rule), and how it was found."""
    base = env.get(variable, "")
    if base and Path(base).is_absolute():
        return Path(base) / APP_DIR, f"${variable}/{APP_DIR}"
    return _home(env) / fallback / APP_DIR, f"~/{fallback}/{APP_DIR}"


def default_data_dir(environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The data directory when none is configured, and how it was found (for the reader)."""
    return _xdg_dir(os.environ if environ is None else environ, "XDG_DATA_HOME", ".local/share")


def default_database_url(data_dir: Path) -> str:
    """The SQLite database in ``data_dir`` (an absolute path, so an absolute URL)."""
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def _config_file(env: Mapping[str, str]) -> tuple[Path | None, _Origin]:
    """The kms.toml to read (or None), and where that choice came from."""
    if "KMS_CONFIG" in env:
        path = Path(env["KMS_CONFIG"])
        if not path.exists():
            raise ConfigError(f"KMS_CONFIG names {path}, which does not exist")
        return path, _Origin("environment", "KMS_CONFIG")
    candidates = [Path("kms.toml")]
    with contextlib.suppress(ConfigError):  # no home directory: only ./kms.toml can be meant
        candidates.append(_xdg_dir(env, "XDG_CONFIG_HOME", ".config")[0] / "kms.toml")
    for path in candidates:
        if path.exists():
            return path, _Origin("default", None, "the first of " + _listed(candidates))
    return None, _Origin("default", None, "found none of " + _listed(candidates))


def _listed(paths: list[Path]) -> str:
    return ", ".join(str(p) if p.is_absolute() else f"./{p}" for p in paths)


def _data_dir(text: str, origin: str, env: Mapping[str, str]) -> Path:
    """``data_dir`` as given in ``origin`` (kms.toml's path, or KMS_DATA_DIR), made absolute."""
    where = "KMS_DATA_DIR" if origin == "KMS_DATA_DIR" else f"data_dir in {origin}"
    path = Path(text)
    if text == "~" or text.startswith("~/"):
        path = _home(env) / text[2:]
    if not path.is_absolute():
        # A relative data directory would move with the working directory, silently.
        raise ConfigError(f"{where} must be an absolute path (or start with ~/), not {text!r}")
    return path


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read kms.toml (if there is one), then let the environment override it."""
    return _load(os.environ if environ is None else environ).config


def describe_config(environ: Mapping[str, str] | None = None) -> list[Setting]:
    """Every effective setting, its value and where it came from (``kms config show``).

    Loads exactly as :func:`load_config` does, so a configuration it refuses is refused here too,
    with the same message.
    """
    loaded = _load(os.environ if environ is None else environ)
    config = loaded.config
    shown: dict[str, str | int | float | bool | None] = {
        "user_pin": "set" if config.user_pin is not None else "not set",
        "data_dir": str(config.data_dir),
        "database_url": redact_database_url(config.database_url),
        "client_system_title": (
            config.client_system_title.hex().upper()
            if config.client_system_title is not None
            else None
        ),
    }
    settings = [Setting("config_file", loaded.config_file, **vars(loaded.config_file_origin))]
    for item in dataclasses.fields(Config):
        value = shown[item.name] if item.name in shown else getattr(config, item.name)
        settings.append(Setting(item.name, value, **vars(loaded.origins[item.name])))
        if item.name == "user_pin":
            origin = loaded.origins.get("user_pin_file", _Origin("default"))
            settings.append(Setting("user_pin_file", loaded.user_pin_file, **vars(origin)))
    return settings


def redact_database_url(url: str) -> str:
    """``url`` with its password, if it has one, replaced by ``***`` (for display)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True)
class _Loaded:
    config: Config
    origins: dict[str, _Origin]
    config_file: str | None
    config_file_origin: _Origin
    user_pin_file: str | None


def _load(env: Mapping[str, str]) -> _Loaded:
    path, file_origin = _config_file(env)
    values: dict[str, Any] = {}
    origins: dict[str, _Origin] = {}
    if path is not None:
        values = _load_toml(path)
        if "user_pin" in values:
            raise ConfigError(f"{path}: a PIN may not be written in kms.toml; use user_pin_file")
        unknown = sorted(set(values) - _TOML_KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s): {', '.join(unknown)}")
        where = str(path.resolve())
        origins = {key: _Origin("file", where) for key in values}

    for key, var in _ENV_TEXT.items():
        if env.get(var):
            values[key] = env[var]
            origins[key] = _Origin("environment", var)
    for key, var in _ENV_INT.items():
        if env.get(var):
            try:
                values[key] = int(env[var])
            except ValueError:
                raise ConfigError(f"{var} must be a positive integer") from None
            origins[key] = _Origin("environment", var)
    for key, var in _ENV_BOOL.items():
        if env.get(var):
            values[key] = _env_bool(env, var)
            origins[key] = _Origin("environment", var)

    pin: Pin | None = None
    if env.get("KMS_USER_PIN"):
        pin = Pin(env["KMS_USER_PIN"])
        origins["user_pin"] = _Origin("environment", "KMS_USER_PIN")
    elif values.get("user_pin_file"):
        pin_file = values["user_pin_file"]
        if not isinstance(pin_file, str):
            raise ConfigError("user_pin_file must be a string")
        pin = Pin(_read_pin_file(pin_file, "user PIN"))
        origins["user_pin"] = dataclasses.replace(
            origins["user_pin_file"], detail=f"read from {pin_file}"
        )

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
        "data_dir",
        "database_url",
        "hsm_profile",
        "actor",
        "client_system_title",
        "pki_organization",
    ):
        if key in values and not isinstance(values[key], str):
            raise ConfigError(f"{key} must be a string")

    if values.get("data_dir"):
        data_dir = _data_dir(values["data_dir"], origins["data_dir"].origin or "data_dir", env)
    else:
        data_dir, how = default_data_dir(env)
        origins["data_dir"] = _Origin("default", None, how)
    if not values.get("database_url"):
        origins["database_url"] = _Origin("default", None, "SQLite in data_dir")
    if not values.get("actor"):
        origins["actor"] = _Origin("default", None, "the OS user")
    for item in dataclasses.fields(Config):
        origins.setdefault(item.name, _Origin("default"))

    config = Config(
        pkcs11_module=values.get("pkcs11_module", DEFAULT_PKCS11_MODULE),
        token_label=values.get("token_label", Config.token_label),
        user_pin=pin,
        data_dir=data_dir,
        database_url=values.get("database_url") or default_database_url(data_dir),
        hsm_profile=values.get("hsm_profile", DEFAULT_PROFILE),
        actor=values.get("actor") or _os_user(),
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
    pin_file = values.get("user_pin_file")
    return _Loaded(
        config=config,
        origins=origins,
        config_file=str(path.resolve()) if path is not None else None,
        config_file_origin=file_origin,
        user_pin_file=str(pin_file) if pin_file else None,
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
        value = _read_pin_file(env["KMS_SO_PIN_FILE"], "SO PIN")
        if value:
            return Pin(value)
        raise ConfigError("the SO PIN file is empty")
    raise ConfigError("no security officer PIN: set KMS_SO_PIN or KMS_SO_PIN_FILE")
