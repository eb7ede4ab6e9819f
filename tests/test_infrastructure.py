"""The fixtures of tests/conftest.py do what they promise: a private token, an empty database.

Fixture types are imported from ``tests.conftest`` for the type checker only: at run time pytest
owns the conftest module, and importing it a second time would make a second copy of its state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from kms.config import Config
    from tests.conftest import DatabaseFactory, TestToken

SYSTEM_TOKEN_DIR = Path("/var/lib/softhsm")
ON_POSTGRESQL = os.environ.get("KMS_TEST_DATABASE", "").strip().lower() == "postgresql"


def _tokendir(softhsm2_conf: str) -> Path:
    for line in Path(softhsm2_conf).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "directories.tokendir":
            return Path(value.strip())
    raise AssertionError(f"{softhsm2_conf} names no directories.tokendir")


def test_softhsm2_conf_points_into_a_temporary_directory() -> None:
    conf = os.environ["SOFTHSM2_CONF"]
    tokendir = _tokendir(conf)
    assert tokendir.parent == Path(conf).parent
    assert tokendir.is_relative_to(Path(conf).parent)
    assert not tokendir.resolve().is_relative_to(SYSTEM_TOKEN_DIR)


def test_token_is_listed_by_softhsm2_util_in_the_sandbox(token: TestToken) -> None:
    assert token.softhsm2_conf == os.environ["SOFTHSM2_CONF"]
    result = subprocess.run(
        ["softhsm2-util", "--show-slots"],
        env={**os.environ, "SOFTHSM2_CONF": token.softhsm2_conf},
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert f"Label:            {token.label}" in result.stdout
    # Its files are in the sandbox's token directory, which is not the system one.
    tokendir = _tokendir(token.softhsm2_conf)
    assert any(tokendir.iterdir())
    assert not tokendir.resolve().is_relative_to(SYSTEM_TOKEN_DIR)


_LOGIN_PROBE = textwrap.dedent(
    """
    import os

    import pkcs11
    from pkcs11.exceptions import PinIncorrect

    lib = pkcs11.lib(os.environ["KMS_PKCS11_MODULE"])
    token = lib.get_token(token_label=os.environ["KMS_TOKEN_LABEL"])
    try:
        token.open(user_pin="not-the-pin").close()
    except PinIncorrect:
        print("wrong pin refused")
    with token.open(rw=True, user_pin=os.environ["KMS_USER_PIN"]) as session:
        key = session.generate_key(
            pkcs11.KeyType.AES, 128, store=False, template={pkcs11.Attribute.ENCRYPT: True}
        )
        print("logged in to", token.label, "made a key of", key.key_length, "bits")
    """
)


def test_python_pkcs11_opens_the_token_and_logs_in(token: TestToken) -> None:
    # In a child process, so that this test neither loads nor re-initialises the module in the
    # pytest process, where other tests' sessions may live.
    result = subprocess.run(
        [sys.executable, "-c", _LOGIN_PROBE],
        env={
            **os.environ,
            "SOFTHSM2_CONF": token.softhsm2_conf,
            "KMS_PKCS11_MODULE": token.module,
            "KMS_TOKEN_LABEL": token.label,
            "KMS_USER_PIN": token.user_pin,
        },
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "wrong pin refused",
        f"logged in to {token.label} made a key of 128 bits",
    ]


def test_each_test_gets_its_own_token(token: TestToken) -> None:
    assert token.label.startswith("kms-test-")
    assert len(token.label) == len("kms-test-") + 8
    assert token.user_pin != token.so_pin


def test_database_url_is_connectable_and_empty(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_database_url_is_of_the_kind_asked_for(database_url: str) -> None:
    url = make_url(database_url)
    if ON_POSTGRESQL:
        assert url.get_backend_name() == "postgresql"
        assert (url.database or "").startswith("kms_test_")
    else:
        assert url.get_backend_name() == "sqlite"
        assert url.database is not None and Path(url.database).is_absolute()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="KMS_TEST_DATABASE is not postgresql")
def test_postgresql_databases_are_created_and_dropped(database_factory: DatabaseFactory) -> None:
    url = database_factory.create()
    name = make_url(url).database
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_database()").scalar() == name
    finally:
        engine.dispose()
    database_factory.drop(url)
    admin = create_engine(make_url(url).set(database="postgres"))
    try:
        with admin.connect() as conn:
            names = conn.exec_driver_sql("SELECT datname FROM pg_database").scalars().all()
    finally:
        admin.dispose()
    assert name not in names


@pytest.mark.skipif(not ON_POSTGRESQL, reason="KMS_TEST_DATABASE is not postgresql")
def test_a_database_with_a_session_still_open_is_dropped(
    database_factory: DatabaseFactory,
) -> None:
    """A test that leaks a connection must not make the teardown fail."""
    url = database_factory.create()
    name = make_url(url).database
    leaked = create_engine(url, poolclass=NullPool).connect()
    try:
        leaked.exec_driver_sql("SELECT 1")
        database_factory.drop(url)
    finally:
        leaked.invalidate()
        leaked.close()
    admin = create_engine(make_url(url).set(database="postgres"), poolclass=NullPool)
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
    finally:
        admin.dispose()
    assert exists == 0


def test_kms_env_and_kms_config_describe_the_token_and_database(
    kms_env: dict[str, str], kms_config: Config, token: TestToken, database_url: str
) -> None:
    assert kms_env["SOFTHSM2_CONF"] == token.softhsm2_conf
    assert kms_env["KMS_PKCS11_MODULE"] == token.module
    assert kms_env["KMS_TOKEN_LABEL"] == token.label
    assert kms_env["KMS_USER_PIN"] == token.user_pin
    assert kms_env["KMS_DATABASE_URL"] == database_url
    assert kms_env["KMS_ACTOR"] == "pytest"
    assert Path(kms_env["KMS_CONFIG"]).is_file()
    assert "KMS_USER_PIN_FILE" not in kms_env

    assert kms_config.token_label == token.label
    assert kms_config.pkcs11_module == token.module
    assert kms_config.require_pin().reveal() == token.user_pin
    assert kms_config.database_url == database_url
    assert kms_config.actor == "pytest"


_SKIP_PROBE = """
def test_needs_a_token(token):
    pass
"""


@pytest.mark.parametrize(
    ("require_hsm", "outcome"), [("", "1 skipped"), ("1", "1 error")], ids=["skip", "require"]
)
def test_missing_softhsm_skips_unless_required(
    tmp_path: Path, require_hsm: str, outcome: str
) -> None:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(_SKIP_PROBE, encoding="utf-8")
    env = {
        **os.environ,
        "KMS_PKCS11_MODULE": str(tmp_path / "no-such-libsofthsm2.so"),
        "KMS_REQUIRE_HSM": require_hsm,
        "KMS_TEST_DATABASE": "sqlite",
        # The copied conftest imports its helpers (tests.postgres) from this checkout.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "no-such-libsofthsm2.so not found" in result.stdout
