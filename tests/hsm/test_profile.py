"""HSM profiles (kms/hsm/profile.py): validation on load, and the adapter's start-up check.

The negative profiles are written to temporary TOML files, each a copy of the reference
``hsm_profiles/softhsm2.toml`` with one thing changed, so a failure names exactly that change.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pkcs11 import Mechanism

from kms.config import Config, Pin
from kms.errors import ConfigError, KMSError, PinIncorrect, UnsupportedMechanism, UnsupportedReason
from kms.hsm import Hsm
from kms.hsm.profile import PROFILE_DIR, REQUIRED_JOBS, load_profile

REFERENCE = (PROFILE_DIR / "softhsm2.toml").read_text(encoding="utf-8")


def _with_mechanism(job: str, value: str | None) -> str:
    """The reference profile with one [mechanisms] line replaced (or removed, if None)."""
    pattern = re.compile(rf"^{job} = .*$", re.MULTILINE)
    assert len(pattern.findall(REFERENCE)) == 1, job
    return pattern.sub("" if value is None else f'{job} = "{value}"', REFERENCE)


def _write(tmp_path: Path, text: str, name: str = "profile.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_softhsm2_profile_names_an_offered_mechanism_for_every_job(hsm: Hsm) -> None:
    profile = load_profile("softhsm2")
    offered = set(hsm.mechanisms())
    for job in REQUIRED_JOBS:
        mechanism = profile.mechanism(job)
        assert isinstance(mechanism, Mechanism), job
        assert mechanism.name in offered, job


def test_the_gaps_the_softhsm2_profile_lists_are_truly_missing(hsm: Hsm) -> None:
    profile = load_profile("softhsm2")
    assert "AES_GMAC" in profile.missing
    offered = set(hsm.mechanisms())
    for name in profile.missing:
        assert name not in offered, name


def test_a_profile_loads_by_path_too(tmp_path: Path) -> None:
    profile = load_profile(str(_write(tmp_path, REFERENCE)))
    assert profile.mechanisms == load_profile("softhsm2").mechanisms


@pytest.mark.parametrize("job", REQUIRED_JOBS)
def test_a_profile_naming_a_nonexistent_mechanism_is_refused_naming_it(
    tmp_path: Path, job: str
) -> None:
    path = _write(tmp_path, _with_mechanism(job, "AES_NO_SUCH_MODE"))
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert "AES_NO_SUCH_MODE" in str(info.value)
    assert job in str(info.value)


@pytest.mark.parametrize("job", REQUIRED_JOBS)
def test_a_profile_lacking_a_job_is_refused_naming_it(tmp_path: Path, job: str) -> None:
    path = _write(tmp_path, _with_mechanism(job, None))
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert job in str(info.value)


def test_a_mechanism_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, REFERENCE.replace('gcm = "AES_GCM"', "gcm = 4231"))
    with pytest.raises(ConfigError, match="gcm"):
        load_profile(str(path))


def test_a_profile_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "[mechanisms\ngcm = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(str(path))


def test_an_unknown_profile_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such-profile"):
        load_profile("no-such-profile")
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_profile(str(tmp_path / "missing.toml"))


def _gmac_profile(tmp_path: Path) -> Path:
    text = _with_mechanism("gcm", "AES_GMAC").replace('name = "softhsm2"', 'name = "gmac-test"')
    return _write(tmp_path, text, "gmac.toml")


def test_a_profile_naming_a_mechanism_the_token_lacks_is_refused_at_start_up(
    hsm: Hsm, kms_config: Config, tmp_path: Path
) -> None:
    assert "AES_GMAC" in Mechanism.__members__
    assert "AES_GMAC" not in hsm.mechanisms()  # SoftHSM 2.6.1 offers GCM, not GMAC
    config = dataclasses.replace(kms_config, hsm_profile=str(_gmac_profile(tmp_path)))
    with pytest.raises(KMSError) as info:
        Hsm(config)
    assert type(info.value) is UnsupportedMechanism
    assert info.value.reason is UnsupportedReason.MISSING_FROM_TOKEN
    assert "AES_GMAC" in str(info.value)
    assert "gcm" in str(info.value)


def test_a_refused_profile_leaves_no_logged_in_session_behind(
    kms_config: Config, tmp_path: Path
) -> None:
    config = dataclasses.replace(kms_config, hsm_profile=str(_gmac_profile(tmp_path)))
    with pytest.raises(UnsupportedMechanism):
        Hsm(config)
    # Were the refused Hsm's session still logged in, C_Login would answer
    # CKR_USER_ALREADY_LOGGED_IN and the adapter would take a wrong PIN.
    with pytest.raises(PinIncorrect):
        Hsm(dataclasses.replace(kms_config, user_pin=Pin("wrong-pin-5f3c9a"))).close()


# --- key agreement: the KDF location and the optional jobs -------------------------------------

KEY_AGREEMENT_JOBS = ("ec_derive", "kdf_digest_256", "kdf_digest_384")


def _with_flags(flags: str) -> str:
    """The reference profile with its ``kdf`` flag line replaced by ``flags``."""
    assert REFERENCE.count('\nkdf = "digest_key"\n') == 1
    return REFERENCE.replace('\nkdf = "digest_key"\n', f"\n{flags}\n")


def test_the_softhsm2_profile_keeps_the_kdf_in_the_token_with_offered_mechanisms(
    hsm: Hsm,
) -> None:
    profile = load_profile("softhsm2")
    assert (profile.kdf, profile.host_kdf) == ("digest_key", False)
    offered = set(hsm.mechanisms())
    for job in KEY_AGREEMENT_JOBS:
        assert profile.optional_mechanism(job).name in offered, job
        assert job not in REQUIRED_JOBS


@pytest.mark.parametrize(
    ("flags", "kdf"),
    [
        ('kdf = "host"', "host"),
        ('kdf = "digest_key"', "digest_key"),
        ("host_kdf = true", "host"),  # the older flag still reads
        ("host_kdf = false", "digest_key"),
        ('kdf = "host"\nhost_kdf = true', "host"),
        ("", "digest_key"),  # reading Z onto the host is opt-in
    ],
)
def test_the_kdf_flag(tmp_path: Path, flags: str, kdf: str) -> None:
    profile = load_profile(str(_write(tmp_path, _with_flags(flags))))
    assert (profile.kdf, profile.host_kdf) == (kdf, kdf == "host")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ('kdf = "in_token"', "in_token"),
        ("kdf = 1", "kdf"),
        ('kdf = "digest_key"\nhost_kdf = true', "contradicts"),
        ('host_kdf = "yes"', "host_kdf"),
    ],
)
def test_a_bad_kdf_flag_is_refused_naming_it(tmp_path: Path, flags: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_profile(str(_write(tmp_path, _with_flags(flags))))


@pytest.mark.parametrize("job", KEY_AGREEMENT_JOBS)
def test_a_profile_may_leave_a_key_agreement_job_out(tmp_path: Path, job: str) -> None:
    profile = load_profile(str(_write(tmp_path, _with_mechanism(job, None))))
    with pytest.raises(UnsupportedMechanism) as info:
        profile.optional_mechanism(job)
    assert info.value.reason is UnsupportedReason.MISSING_FROM_PROFILE
    assert job in str(info.value)
