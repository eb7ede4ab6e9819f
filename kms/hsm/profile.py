"""HSM profiles: which PKCS#11 mechanism does which job on a given token, and its known gaps.

A profile is a TOML file under ``hsm_profiles/`` (``softhsm2.toml`` is the reference), shipped in
the package (:mod:`kms._data`), or any TOML file named by its path. The adapter
reads mechanism names from it instead of hard-coding them, so a production HSM with, say, an
in-token KDF or a vendor DLMS mechanism gets its own profile rather than a code change. Names are
python-pkcs11 ``Mechanism`` member names and are validated when the profile loads.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pkcs11 import Mechanism

from kms._data import data_path
from kms.errors import ConfigError, UnsupportedMechanism, UnsupportedReason

#: The profiles a name refers to: the installed package's copy of ``hsm_profiles/``, or the
#: checkout's.
PROFILE_DIR = data_path("hsm_profiles")

#: Jobs every profile must map to a mechanism.
REQUIRED_JOBS = (
    "aes_key_gen",
    "generic_secret_key_gen",
    "ec_key_pair_gen",
    "key_wrap",
    "binding_mac",
    "ecdsa",
    "gcm",
)

#: Where the SP 800-56A concatenation KDF after ECDH runs (``[flags] kdf``): ``digest_key``
#: hashes counter || Z || OtherInfo in the token with C_DigestKey, so Z never leaves it; ``host``
#: reads Z once and hashes it on the host (a named, audited exception to invariant 1).
KDF_LOCATIONS = ("digest_key", "host")


@dataclass(frozen=True)
class Profile:
    """A validated HSM profile."""

    name: str
    description: str
    mechanisms: dict[str, Mechanism]
    ak_on_host: bool
    #: True when the KDF after ECDH reads Z onto the host (``kdf == "host"``); kept for readers
    #: of the older flag.
    host_kdf: bool
    #: RFC 5649 unwrap leaves the padding on (SoftHSM 2.6.1): odd-length HLS secrets hash on
    #: the host, audited as such.
    wrap_pad_unwrap_keeps_padding: bool
    #: A dedicated key's bytes are read once to build the glo-initiate-request that carries it.
    dedicated_key_on_host: bool
    login_retries: int
    missing: tuple[str, ...]
    source: str
    #: Where the concatenation KDF after ECDH runs: one of :data:`KDF_LOCATIONS`.
    kdf: str = "digest_key"

    def mechanism_names(self) -> dict[str, str]:
        """Job -> mechanism name, for display above ``kms.hsm`` (no pkcs11 type escapes)."""
        return {job: mech.name for job, mech in self.mechanisms.items()}

    def mechanism(self, job: str) -> Mechanism:
        """The mechanism this profile names for ``job``."""
        try:
            return self.mechanisms[job]
        except KeyError:
            raise ConfigError(f"HSM profile {self.name!r} names no mechanism for {job!r}") from None

    def optional_mechanism(self, job: str) -> Mechanism:
        """The mechanism for a job outside :data:`REQUIRED_JOBS` (key agreement, say): a
        profile that leaves it out cannot do that job, which is no configuration error."""
        try:
            return self.mechanisms[job]
        except KeyError:
            raise UnsupportedMechanism(
                f"HSM profile {self.name!r} names no mechanism for {job!r}",
                UnsupportedReason.MISSING_FROM_PROFILE,
            ) from None


def _mechanism(name: object, job: str, source: str) -> Mechanism:
    if not isinstance(name, str) or name not in Mechanism.__members__:
        raise ConfigError(f"{source}: [mechanisms] {job} = {name!r} is not a PKCS#11 mechanism")
    return Mechanism[name]


def _kdf_location(flags: dict[str, Any], source: str) -> str:
    """``[flags] kdf``, or the older ``host_kdf`` bool (true: ``host``, false: ``digest_key``).

    Reading Z onto the host is an exception to invariant 1, so it is opt-in: a profile that
    states neither flag keeps the KDF in the token.
    """
    kdf = flags.get("kdf")
    legacy = flags.get("host_kdf")
    if legacy is not None and not isinstance(legacy, bool):
        raise ConfigError(f"{source}: [flags] host_kdf = {legacy!r} is not true or false")
    if kdf is None:
        return "host" if legacy else "digest_key"
    if kdf not in KDF_LOCATIONS:
        raise ConfigError(
            f"{source}: [flags] kdf = {kdf!r} is not one of {', '.join(KDF_LOCATIONS)}"
        )
    if legacy is not None and legacy != (kdf == "host"):
        raise ConfigError(f"{source}: [flags] host_kdf = {legacy!r} contradicts kdf = {kdf!r}")
    return str(kdf)


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (``softhsm2``) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"HSM profile {name_or_path!r} not found (looked for {path})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"HSM profile {path}: not valid TOML: {exc}") from None
    source = str(path)
    raw_mechs = data.get("mechanisms", {})
    missing_jobs = [job for job in REQUIRED_JOBS if job not in raw_mechs]
    if missing_jobs:
        raise ConfigError(f"{source}: [mechanisms] lacks {', '.join(missing_jobs)}")
    flags = data.get("flags", {})
    kdf = _kdf_location(flags, source)
    gaps = data.get("gaps", {})
    meta = data.get("profile", {})
    return Profile(
        name=str(meta.get("name", path.stem)),
        description=str(meta.get("description", "")),
        mechanisms={job: _mechanism(v, job, source) for job, v in raw_mechs.items()},
        ak_on_host=bool(flags.get("ak_on_host", True)),
        host_kdf=kdf == "host",
        kdf=kdf,
        wrap_pad_unwrap_keeps_padding=bool(flags.get("wrap_pad_unwrap_keeps_padding", False)),
        # A named exception to invariant 1 is opt-in: a profile states it.
        dedicated_key_on_host=bool(flags.get("dedicated_key_on_host", False)),
        login_retries=int(flags.get("login_retries", 5)),
        missing=tuple(str(m) for m in gaps.get("missing", ())),
        source=source,
    )
