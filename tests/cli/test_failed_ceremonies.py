"""``kms init`` and ``kms transport-key import`` make a token object before the database row that
records it; when the database refuses that row, the command exits 5 and the token holds nothing
new (black box: the database refuses the write itself, the token is read afterwards)."""

from __future__ import annotations

from kms.config import Config
from kms.hsm import Hsm
from tests.cli.helpers import Cli, describe, stderr_json, write_key_file
from tests.kms_fixtures import TRANSPORT_KEYS, refusing_inserts, token_objects


def _objects(config: Config) -> set[tuple[str, str]]:
    """The token's objects, read by a process of our own after the command ended."""
    hsm = Hsm(config)
    try:
        return token_objects(hsm)
    finally:
        hsm.close()


def test_a_refused_init_leaves_the_token_empty_and_the_next_init_works(
    cli: Cli, kms_config: Config
) -> None:
    cli.ok("db", "upgrade")
    with refusing_inserts(cli.database_url, "root_key"):
        proc = cli("init", "--json")
    assert proc.returncode == 5, describe(proc)
    assert stderr_json(proc)["error"] == "database"
    assert _objects(kms_config) == set(), "a refused init left root keys in the token"

    created = cli.json("init")
    assert [k["action"] for k in created["root_keys"]] == ["created"] * 3


def test_a_refused_transport_key_import_leaves_no_key_and_can_be_run_again(
    cli: Cli, kms_config: Config
) -> None:
    cli.ok("init")
    before = _objects(kms_config)
    label = "vendor-aes128"
    key_file = write_key_file(cli.cwd / "keys", label, TRANSPORT_KEYS[label])
    args = ("transport-key", "import", "--label", label, "--key-file", key_file, "--json")
    with refusing_inserts(cli.database_url, "audit_event"):
        proc = cli(*args)
    assert proc.returncode == 5, describe(proc)
    assert _objects(kms_config) == before, "a refused import left its key in the token"

    imported = cli.json(*args[:-1])
    assert imported["label"] == label and imported["action"] == "imported"
    assert {name for name, _ in _objects(kms_config) - before} == {label}
