"""Syncs with Singer executables found on PATH: failures are named, secrets never leak."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import duckdb

from tests.conftest import run_elt

SECRET = "pa55-word-never-shown"

# A minimal Singer tap: three records of one stream, then a STATE; with `fail_after` it writes
# that many records, complains on stderr (quoting its config, as careless taps do) and exits 1.
TAP = f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
config = json.load(open(args[args.index("--config") + 1]))
if "--discover" in args:
    print(json.dumps({{"streams": [{{"tap_stream_id": "things", "stream": "things",
        "key_properties": ["id"], "schema": {{"type": "object", "properties": {{
        "id": {{"type": "integer"}}, "name": {{"type": ["string", "null"]}}}}}},
        "metadata": [{{"breadcrumb": [], "metadata": {{"selected": True}}}}]}}]}}))
    sys.exit(0)
out = sys.stdout
out.write(json.dumps({{"type": "SCHEMA", "stream": "things", "key_properties": ["id"],
    "schema": {{"type": "object", "properties": {{"id": {{"type": "integer"}},
    "name": {{"type": ["string", "null"]}}}}}}}}) + "\\n")
for i in range(1, 4):
    if config.get("fail_after") == i - 1:
        out.flush()
        sys.stderr.write("connection refused with config " + json.dumps(config) + "\\n")
        sys.exit(1)
    record = {{"id": i, "name": "n%d" % i}}
    out.write(json.dumps({{"type": "RECORD", "stream": "things", "record": record}}) + "\\n")
out.write(json.dumps({{"type": "STATE", "value": {{"bookmarks": {{"things": {{"done": True}}}}}}}}) + "\\n")
"""


def make_project(root: Path, fail_after: int | None) -> dict[str, str]:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    tap = bin_dir / "tap-things"
    tap.write_text(TAP)
    tap.chmod(tap.stat().st_mode | stat.S_IXUSR)
    config = {"password": SECRET}
    if fail_after is not None:
        config["fail_after"] = fail_after  # type: ignore[assignment]
    (root / "elt.yml").write_text(
        "version: 1\nplugins:\n  extractors:\n    - name: tap-things\n"
        f"      config: {json.dumps(config)}\n"
        "  loaders:\n    - name: target-duckdb\n      config: {path: w.duckdb}\n"
    )
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_any_singer_tap_on_path_syncs_into_duckdb(tmp_path: Path) -> None:
    env = make_project(tmp_path, None)
    proc = run_elt("sync", "tap-things", "target-duckdb", "--format", "json", cwd=tmp_path, env=env)
    assert json.loads(proc.stdout)["streams"] == {"things": {"rows": 3}}
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        assert db.execute("select count(*), count(distinct id) from tap_things.things").fetchone() == (3, 3)
    state = json.loads(run_elt("state", "get", "default:tap-things-to-target-duckdb", cwd=tmp_path).stdout)
    assert state == {"bookmarks": {"things": {"done": True}}}


def test_failing_tap_is_named_and_its_secrets_are_masked(tmp_path: Path) -> None:
    env = make_project(tmp_path, fail_after=2)
    proc = run_elt("sync", "tap-things", "target-duckdb", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 1
    assert "tap-things failed (exit 1)" in proc.stderr
    assert "connection refused with config" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    assert "****" in proc.stderr
    logs = "".join(p.read_text() for p in (tmp_path / ".elt" / "logs").rglob("*.log"))
    assert "connection refused" in logs and SECRET not in logs
    history = run_elt("runs", "--format", "json", cwd=tmp_path).stdout
    assert "tap-things failed" in history and SECRET not in history
    assert not (tmp_path / ".elt" / "run").exists() or not any((tmp_path / ".elt" / "run").rglob("*.json"))
    # the two records before the failure were loaded; no state was claimed for them
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        assert db.execute("select count(*) from tap_things.things").fetchone() == (2,)
    listed = json.loads(run_elt("state", "list", "--format", "json", cwd=tmp_path).stdout)
    assert listed == []
