"""`elt state`, driven through the installed executable in real project folders."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from elt.project import load_project
from elt.state import open_state_store
from tests.conftest import run_elt

ORDERS = {"bookmarks": {"orders": {"replication_key_value": "2024-05-01"}, "customers": {"id": 7}}}
JULY = {"bookmarks": {"orders": {"replication_key_value": "2024-07-01"}}}
AUGUST = {"bookmarks": {"orders": {"replication_key_value": "2024-08-01"}}}

# Meltano's `state` table, as its migration 6828cc5b1a4f creates it in SQLite.
MELTANO_STATE_TABLE = """
CREATE TABLE state (
    state_id VARCHAR(900) NOT NULL,
    partial_state VARCHAR,
    completed_state VARCHAR,
    updated_at DATETIME,
    PRIMARY KEY (state_id),
    UNIQUE (state_id)
)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "elt.yml").write_text("version: 1\n", encoding="utf-8")
    return folder


def get(project: Path, state_id: str) -> dict:
    """What `elt state get` prints for STATE_ID."""
    return json.loads(run_elt("state", "get", state_id, "--format", "json", cwd=project).stdout)


def stored(project: Path, state_id: str) -> dict:
    """The effective state of STATE_ID, read with the library (quicker than one more `elt` process)."""
    with open_state_store(load_project(project)) as store:
        return store.require(state_id).effective


def test_set_merge_copy_move_and_clear_a_state(project: Path, tmp_path: Path) -> None:
    assert run_elt("state", "set", "dev:a-to-b", json.dumps(ORDERS), cwd=project).stdout.startswith(
        "state of dev:a-to-b set in systemdb"
    )
    assert get(project, "dev:a-to-b") == ORDERS

    june = {"bookmarks": {"orders": {"replication_key_value": "2024-06-01"}}}
    run_elt("state", "merge", "dev:a-to-b", json.dumps(june), cwd=project)
    (tmp_path / "extra.json").write_text('{"bookmarks": {"products": {"id": 3}}}')
    run_elt("state", "merge", "dev:a-to-b", "--input-file", str(tmp_path / "extra.json"), cwd=project)
    merged = stored(project, "dev:a-to-b")
    assert merged == {"bookmarks": {"orders": {"replication_key_value": "2024-06-01"}, "customers": {"id": 7},
                                    "products": {"id": 3}}}  # fmt: skip
    out = run_elt("state", "merge", "dev:c-to-d", "--from-state-id", "dev:a-to-b", cwd=project).stdout
    assert out.strip() == "merged from dev:a-to-b into the state of dev:c-to-d"
    assert stored(project, "dev:c-to-d") == merged

    run_elt("state", "copy", "dev:a-to-b", "dev:copy", cwd=project)
    run_elt("state", "move", "dev:copy", "prod:moved", cwd=project)
    assert stored(project, "prod:moved") == merged
    gone = run_elt("state", "get", "dev:copy", cwd=project, check=False)
    assert gone.returncode == 2 and "no state for state id 'dev:copy'" in gone.stderr

    run_elt("state", "clear", "prod:moved", "--stream", "orders", "--force", cwd=project)
    assert set(stored(project, "prod:moved")["bookmarks"]) == {"customers", "products"}

    listed = json.loads(run_elt("state", "list", "--format", "json", cwd=project).stdout)
    assert [s["state_id"] for s in listed] == ["dev:a-to-b", "dev:c-to-d", "prod:moved"]
    assert all(s["locked_by"] is None and s["partial"] is False for s in listed)
    assert run_elt("state", "list", "dev:*", cwd=project).stdout.count("\n") == 2

    run_elt("state", "clear", "prod:moved", "--force", cwd=project)
    assert run_elt("state", "clear", "prod:moved", "--force", cwd=project, check=False).returncode == 2


def test_a_state_given_in_the_wrong_shape_is_refused(project: Path) -> None:
    not_json = run_elt("state", "set", "dev:a-to-b", "{bookmarks", cwd=project, check=False)
    a_list = run_elt("state", "merge", "dev:a-to-b", "[1, 2]", cwd=project, check=False)
    both = run_elt("state", "merge", "dev:a-to-b", "{}", "--from-state-id", "x", cwd=project, check=False)

    assert not_json.returncode == 2 and "is not valid JSON" in not_json.stderr
    assert a_list.returncode == 2 and "must be a JSON object" in a_list.stderr
    assert both.returncode == 2 and "give one of" in both.stderr


def test_export_then_import_moves_every_state_to_another_backend(project: Path, tmp_path: Path) -> None:
    run_elt("state", "set", "dev:a-to-b", json.dumps(ORDERS), cwd=project)
    run_elt("state", "set", "prod:a-to-b", '{"bookmarks": {}}', cwd=project)
    with open_state_store(load_project(project)) as store:
        store.save_partial("dev:a-to-b", JULY)

    printed = json.loads(run_elt("state", "export", "dev:*", cwd=project).stdout)
    exported = run_elt("state", "export", "--output", str(tmp_path / "all.json"), cwd=project)

    assert printed == {"dev:a-to-b": {"completed": ORDERS, "partial": JULY}}
    assert "exported 2 state ids to" in exported.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "elt.yml").write_text("version: 1\nstate_backend:\n  uri: file://.elt/state\n", encoding="utf-8")

    imported = run_elt("state", "import", str(tmp_path / "all.json"), cwd=other)

    assert imported.stdout.strip() == f"imported 2 state ids from {tmp_path / 'all.json'}"
    assert json.loads(run_elt("state", "export", cwd=other).stdout) == json.loads(
        (tmp_path / "all.json").read_text()
    )
    assert (other / ".elt" / "state" / "dev%3Aa-to-b.json").is_file()
    again = run_elt("state", "import", str(tmp_path / "all.json"), cwd=other)
    assert "replaced dev:a-to-b, prod:a-to-b" in again.stdout


def _meltano_project(folder: Path) -> Path:
    """A Meltano project folder whose system database holds three state ids, one of them empty."""
    (folder / ".meltano").mkdir(parents=True)
    (folder / "meltano.yml").write_text("version: 1\n", encoding="utf-8")
    with closing(sqlite3.connect(folder / ".meltano" / "meltano.db")) as db, db:
        db.execute(MELTANO_STATE_TABLE)
        db.executemany(
            "INSERT INTO state (state_id, partial_state, completed_state, updated_at) VALUES (?, ?, ?, ?)",
            [
                ("dev:tap-github-to-target-postgres", "{}",
                 json.dumps({"singer_state": ORDERS}), "2024-05-01 10:00:00.000000"),
                ("prod:tap-github-to-target-postgres",
                 json.dumps({"singer_state": AUGUST}),
                 json.dumps({"singer_state": ORDERS}), "2024-05-02 10:00:00.000000"),
                ("dev:tap-empty-to-target-postgres", "{}", "{}", "2024-05-03 10:00:00.000000"),
            ],
        )  # fmt: skip
    return folder


def test_import_from_a_meltano_system_database(project: Path, tmp_path: Path) -> None:
    meltano = _meltano_project(tmp_path / "meltano-project")

    imported = run_elt("state", "import", "--from-meltano", str(meltano), cwd=project)

    assert imported.stdout.strip() == f"imported 2 state ids from {meltano}"
    assert get(project, "dev:tap-github-to-target-postgres") == ORDERS
    prod = stored(project, "prod:tap-github-to-target-postgres")
    assert prod["bookmarks"] == {"orders": {"replication_key_value": "2024-08-01"}, "customers": {"id": 7}}
    listed = json.loads(run_elt("state", "list", "--format", "json", cwd=project).stdout)
    assert [(s["state_id"], s["partial"]) for s in listed] == [
        ("dev:tap-github-to-target-postgres", False), ("prod:tap-github-to-target-postgres", True)
    ]  # fmt: skip

    database = meltano / ".meltano" / "meltano.db"
    one = run_elt("state", "import", "--from-meltano", str(database), "--state-id",
                  "dev:tap-github-to-target-postgres", "--force", cwd=project)  # fmt: skip
    assert one.stdout.startswith("imported 1 state id from")


def test_import_from_the_output_of_meltano_state_get(project: Path, tmp_path: Path) -> None:
    output = tmp_path / "state.json"
    output.write_text(json.dumps({"singer_state": ORDERS}), encoding="utf-8")

    without_id = run_elt("state", "import", "--from-meltano", str(output), cwd=project, check=False)
    imported = run_elt(
        "state", "import", "--from-meltano", str(output), "--state-id", "dev:gh-to-pg", cwd=project
    )

    assert without_id.returncode == 2 and "--state-id" in without_id.stderr
    assert imported.stdout.strip() == f"imported 1 state id from {output}"
    assert stored(project, "dev:gh-to-pg") == ORDERS

    # the state.json of Meltano's file and S3 backends
    backend_file = tmp_path / "backend.json"
    backend_file.write_text(json.dumps({"completed": {"singer_state": ORDERS}, "partial": {}}))
    run_elt("state", "import", "--from-meltano", str(backend_file), "--state-id", "prod:x", cwd=project)
    assert stored(project, "prod:x") == ORDERS


def test_a_state_command_fails_while_a_run_holds_the_lock(project: Path) -> None:
    run_elt("state", "set", "dev:a-to-b", json.dumps(ORDERS), cwd=project)
    with open_state_store(load_project(project)) as store, store.lock("dev:a-to-b", run_id="sync-run-42"):
        refused = run_elt("state", "clear", "dev:a-to-b", "--force", cwd=project, check=False)
        listed = run_elt("state", "list", cwd=project).stdout

    assert refused.returncode == 1
    assert (
        "state id 'dev:a-to-b' is locked by run sync-run-42" in refused.stderr and "--wait" in refused.stderr
    )
    assert "[locked by run sync-run-42" in listed
    assert stored(project, "dev:a-to-b") == ORDERS


def test_a_bad_backend_uri_is_reported_with_its_line(project: Path) -> None:
    (project / "elt.yml").write_text(
        "version: 1\nstate_backend:\n  uri: redis://localhost/0\n", encoding="utf-8"
    )

    failed = run_elt("state", "list", cwd=project, check=False)

    assert failed.returncode == 2
    assert "elt.yml:3: key 'state_backend.uri': unknown state backend 'redis://'" in failed.stderr
