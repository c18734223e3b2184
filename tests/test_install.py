"""`elt install`: venvs per plugin, reinstalled only when needed, never half-built; offline.

Plugins here are a tiny real package written into the test's folder: a module whose console script is
a Singer tap, built by an in-tree PEP 517 backend, so that installing it needs no index and no network.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import duckdb
import pytest

from elt.install import install_plugins
from elt.project import load_project
from tests.conftest import run_elt

# Installs must not reach an index: the packages are local and need nothing to build.
OFFLINE = {"UV_OFFLINE": "1", "PIP_NO_INDEX": "1"}

BACKEND = '''
"""Builds a wheel of one module with one console script (or, editable, a .pth); needs nothing installed."""
import base64, hashlib, pathlib, zipfile

HERE = pathlib.Path(__file__).parent


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {{"{module}.py": (HERE / "{module}.py").read_bytes()}})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {{"{module}.pth": str(HERE).encode() + b"\\n"}})


def _wheel(wheel_directory, files):
    dist = "{module}-{version}"
    files[dist + ".dist-info/METADATA"] = b"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
    files[dist + ".dist-info/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n" \\
        b"Tag: py3-none-any\\n"
    files[dist + ".dist-info/entry_points.txt"] = b"[console_scripts]\\n{script} = {module}:main\\n"
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{{path}},sha256={{digest}},{{len(data)}}\\n"
    record += dist + ".dist-info/RECORD,,\\n"
    wheel = dist + "-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(dist + ".dist-info/RECORD", record)
    return wheel
'''

# A Singer tap: `rows` records of stream `things` after the bookmarked id, then a STATE.
TAP = """
import json, sys

ROWS, VERSION = {rows}, "{version}"
SCHEMA = {{"type": "object", "properties": {{"id": {{"type": "integer"}}, "version": {{"type": "string"}}}}}}


def main():
    args = sys.argv[1:]
    if "--discover" in args:
        stream = {{"tap_stream_id": "things", "stream": "things", "key_properties": ["id"], "schema": SCHEMA,
                   "metadata": [{{"breadcrumb": [], "metadata": {{"selected": True}}}}]}}
        print(json.dumps({{"streams": [stream]}}))
        return
    state = {{}}
    if "--state" in args:
        with open(args[args.index("--state") + 1]) as handle:
            state = json.load(handle)
    last = state.get("bookmarks", {{}}).get("things", {{}}).get("id", 0)
    messages = [{{"type": "SCHEMA", "stream": "things", "schema": SCHEMA, "key_properties": ["id"]}}]
    for i in range(last + 1, ROWS + 1):
        messages.append({{"type": "RECORD", "stream": "things", "record": {{"id": i, "version": VERSION}}}})
    messages.append({{"type": "STATE", "value": {{"bookmarks": {{"things": {{"id": ROWS}}}}}}}})
    print("\\n".join(json.dumps(m) for m in messages))
"""


def make_package(
    folder: Path, *, name: str = "local-tap", version: str = "0.1.0", rows: int = 3, script: str = ""
) -> Path:
    """A real installable package in `folder`: pyproject, build backend, the tap module."""
    module = name.replace("-", "_")
    script = script or name
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
    )
    (folder / "backend.py").write_text(
        BACKEND.format(module=module, name=name, version=version, script=script)
    )
    (folder / f"{module}.py").write_text(TAP.format(rows=rows, version=version))
    return folder


def write_project(root: Path, extractors: str) -> Path:
    (root / "elt.yml").write_text(
        "version: 1\nplugins:\n  extractors:\n"
        + textwrap.indent(textwrap.dedent(extractors).strip(), "    ")
        + "\n  loaders:\n    - name: target-duckdb\n      config: {path: w.duckdb}\n"
    )
    return root


def install(root: Path, *args: str, check: bool = True) -> tuple[dict[str, dict], str]:
    """Run `elt install --format json ARGS`: results by plugin name, and stderr."""
    proc = run_elt("install", "--format", "json", *args, cwd=root, env=OFFLINE, check=check)
    results = json.loads(proc.stdout)["plugins"] if proc.stdout.strip() else []
    return {r["name"]: r for r in results}, proc.stderr


def rows(root: Path, table: str) -> list[tuple[int, str]]:
    with duckdb.connect(str(root / "w.duckdb"), read_only=True) as db:
        return db.execute(f"select id, version from {table} order by id").fetchall()


def venv_of(root: Path, name: str, ptype: str = "extractors") -> Path:
    return root / ".elt" / "plugins" / ptype / name / "venv"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_package(tmp_path / "pkg")
    return write_project(tmp_path, "- {name: local-tap, pip_url: ./pkg}")


def test_install_builds_a_venv_whose_tap_syncs_into_duckdb(project: Path) -> None:
    results, stderr = install(project)

    assert results["local-tap"]["status"] == "installed"
    assert results["local-tap"]["venv"] == str(venv_of(project, "local-tap"))
    assert "local-tap==0.1.0" in results["local-tap"]["packages"]
    assert results["target-duckdb"]["status"] == "builtin"
    events = [json.loads(line)["event"] for line in stderr.splitlines()]
    assert events == ["install_started", "install_finished"]
    record = json.loads((project / ".elt/plugins/extractors/local-tap/install.json").read_text())
    assert record["pip_url"] == "./pkg" and record["python"].startswith("3.")
    assert record["installer"] == "uv" and "local-tap" in record["executables"]

    synced = run_elt("sync", "local-tap", "target-duckdb", "--format", "json", cwd=project)
    assert json.loads(synced.stdout)["streams"] == {"things": {"rows": 3}}
    assert rows(project, "local_tap.things") == [(1, "0.1.0"), (2, "0.1.0"), (3, "0.1.0")]


def test_text_output_names_each_plugin_and_what_happened(project: Path) -> None:
    first = run_elt("install", cwd=project, env=OFFLINE)
    second = run_elt("install", cwd=project, env=OFFLINE)

    assert "local-tap      installed in" in first.stdout
    assert "target-duckdb  built in, nothing to install" in first.stdout
    assert "local-tap      already installed" in second.stdout


def test_second_install_is_unchanged_and_keeps_the_venv(project: Path) -> None:
    install(project)
    before = venv_of(project, "local-tap").stat().st_ino

    results, stderr = install(project)

    assert results["local-tap"]["status"] == "unchanged"
    assert venv_of(project, "local-tap").stat().st_ino == before
    assert [json.loads(line)["event"] for line in stderr.splitlines()] == ["install_unchanged"]


def test_changed_pip_url_reinstalls_and_the_new_version_runs(project: Path) -> None:
    install(project)
    run_elt("sync", "local-tap", "target-duckdb", cwd=project)
    make_package(project / "pkg-v2", version="0.2.0", rows=5)
    write_project(project, "- {name: local-tap, pip_url: ./pkg-v2}")

    results, _ = install(project)

    assert results["local-tap"]["status"] == "installed"
    assert "local-tap==0.2.0" in results["local-tap"]["packages"]
    record = json.loads((project / ".elt/plugins/extractors/local-tap/install.json").read_text())
    assert record["pip_url"] == "./pkg-v2"
    synced = run_elt("sync", "local-tap", "target-duckdb", "--format", "json", cwd=project)
    assert json.loads(synced.stdout)["rows"] == 2
    assert rows(project, "local_tap.things")[-2:] == [(4, "0.2.0"), (5, "0.2.0")]


def test_force_reinstalls_an_unchanged_plugin(project: Path) -> None:
    install(project)
    before = venv_of(project, "local-tap").stat().st_ino

    results, _ = install(project, "--force", "local-tap")

    assert list(results) == ["local-tap"]
    assert results["local-tap"]["status"] == "installed"
    assert venv_of(project, "local-tap").stat().st_ino != before
    run_elt("sync", "local-tap", "target-duckdb", cwd=project)


def test_failed_install_names_the_plugin_exits_1_and_leaves_nothing_installed(tmp_path: Path) -> None:
    root = write_project(tmp_path, "- {name: local-tap, pip_url: ./no-such-folder}")

    results, stderr = install(root, check=False)
    proc = run_elt("install", cwd=root, env=OFFLINE, check=False)

    assert proc.returncode == 1
    assert results["local-tap"]["status"] == "failed"
    assert "no-such-folder" in results["local-tap"]["error"]
    assert "error: 1 of 2 plugin(s) could not be installed:\nlocal-tap: uv could not install" in proc.stderr
    assert "no-such-folder" in proc.stderr
    folder = root / ".elt/plugins/extractors/local-tap"
    assert not (folder / "venv").exists() and not (folder / "install.json").exists()
    assert not list(folder.glob(".building-*"))
    synced = run_elt("sync", "local-tap", "target-duckdb", cwd=root, check=False)
    assert synced.returncode == 2
    assert "plugin 'local-tap' is not installed" in synced.stderr


def test_failed_reinstall_keeps_the_previous_venv(project: Path) -> None:
    install(project)
    write_project(project, "- {name: local-tap, pip_url: ./no-such-folder}")

    results, _ = install(project, check=False)

    assert results["local-tap"]["status"] == "failed"
    assert results["local-tap"]["error"].endswith("(the previous install is kept)")
    record = json.loads((project / ".elt/plugins/extractors/local-tap/install.json").read_text())
    assert record["pip_url"] == "./pkg"
    run_elt("sync", "local-tap", "target-duckdb", cwd=project)
    assert len(rows(project, "local_tap.things")) == 3


def test_inheriting_plugin_shares_its_parents_venv(project: Path) -> None:
    write_project(
        project,
        """
        - {name: local-tap, pip_url: ./pkg}
        - {name: local-tap--eu, inherit_from: local-tap}
        """,
    )

    results, stderr = install(project)

    assert results["local-tap"]["status"] == results["local-tap--eu"]["status"] == "installed"
    assert results["local-tap--eu"]["venv"] == str(venv_of(project, "local-tap"))
    assert not (project / ".elt/plugins/extractors/local-tap--eu").exists()
    assert len([line for line in stderr.splitlines() if "install_finished" in line]) == 1
    # the child runs its parent's executable from the shared venv
    run_elt("sync", "local-tap--eu", "target-duckdb", cwd=project)
    assert len(rows(project, "local_tap__eu.things")) == 3


def test_inheriting_plugin_with_its_own_pip_url_gets_its_own_venv(project: Path) -> None:
    make_package(project / "pkg-v2", version="0.2.0", rows=5)
    write_project(
        project,
        """
        - {name: local-tap, pip_url: ./pkg}
        - {name: local-tap--next, inherit_from: local-tap, pip_url: ./pkg-v2}
        """,
    )

    results, _ = install(project, "local-tap--next")

    assert list(results) == ["local-tap--next"]
    assert results["local-tap--next"]["venv"] == str(venv_of(project, "local-tap--next"))
    assert not venv_of(project, "local-tap").exists()
    run_elt("sync", "local-tap--next", "target-duckdb", cwd=project)
    assert rows(project, "local_tap__next.things")[-1] == (5, "0.2.0")


def test_plugin_not_installed_says_to_run_elt_install(project: Path) -> None:
    proc = run_elt("sync", "local-tap", "target-duckdb", cwd=project, check=False)

    assert proc.returncode == 2
    assert "elt.yml:4: plugin 'local-tap' is not installed" in proc.stderr
    assert "hint: run `elt install local-tap`" in proc.stderr


def test_installed_venv_without_the_executable_names_the_ones_it_has(project: Path) -> None:
    write_project(project, "- {name: my-tap, pip_url: ./pkg}")
    install(project)

    proc = run_elt("sync", "my-tap", "target-duckdb", cwd=project, check=False)
    assert proc.returncode == 2
    assert "plugin 'my-tap' is installed in" in proc.stderr and "no executable 'my-tap'" in proc.stderr
    assert "hint: set `executable:` to one of: local-tap" in proc.stderr

    write_project(project, "- {name: my-tap, pip_url: ./pkg, executable: local-tap}")
    assert install(project)[0]["my-tap"]["status"] == "unchanged"
    run_elt("sync", "my-tap", "target-duckdb", cwd=project)


def test_builtin_plugins_need_no_install(project: Path) -> None:
    results, stderr = install(project, "tap-files", "target-duckdb")

    assert {name: r["status"] for name, r in results.items()} == {
        "tap-files": "builtin",
        "target-duckdb": "builtin",
    }
    assert stderr == ""
    assert not (project / ".elt" / "plugins").exists()


def test_unknown_plugin_or_type_is_a_user_error_and_installs_nothing(project: Path) -> None:
    unknown = run_elt("install", "local-tap", "locl-tap", cwd=project, env=OFFLINE, check=False)
    wrong_type = run_elt("install", "--plugin-type", "loaders", "local-tap", cwd=project, check=False)
    bad_type = run_elt("install", "--plugin-type", "taps", cwd=project, check=False)

    assert unknown.returncode == wrong_type.returncode == bad_type.returncode == 2
    assert "unknown plugin 'locl-tap'" in unknown.stderr and "did you mean 'local-tap'?" in unknown.stderr
    assert "is one of the extractors, expected one of the loaders" in wrong_type.stderr
    assert "unknown plugin type 'taps'" in bad_type.stderr
    assert not (project / ".elt" / "plugins").exists()


def test_plugin_type_limits_the_install(project: Path) -> None:
    results, _ = install(project, "--plugin-type", "loader")

    assert list(results) == ["target-duckdb"]
    assert not venv_of(project, "local-tap").exists()


def test_several_plugins_install_in_parallel_each_in_its_own_venv(tmp_path: Path) -> None:
    for name in ("tap-one", "tap-two", "tap-three"):
        make_package(tmp_path / name, name=name)
    write_project(
        tmp_path,
        """
        - {name: tap-one, pip_url: ./tap-one}
        - {name: tap-two, pip_url: ./tap-two}
        - {name: tap-three, pip_url: ./tap-three}
        """,
    )

    results, stderr = install(tmp_path)

    assert [r["status"] for r in results.values()] == ["installed"] * 3 + ["builtin"]
    events = [json.loads(line) for line in stderr.splitlines()]
    # all three started before the first one finished
    assert [e["event"] for e in events[:3]] == ["install_started"] * 3
    for name in ("tap-one", "tap-two", "tap-three"):
        assert (venv_of(tmp_path, name) / "bin" / name).exists()
    run_elt("sync", "tap-three", "target-duckdb", cwd=tmp_path)


def test_unset_variable_in_config_does_not_block_install_but_one_in_pip_url_does(project: Path) -> None:
    write_project(project, "- {name: local-tap, pip_url: ./pkg, config: {password: '${UNSET_SECRET}'}}")
    assert install(project)[0]["local-tap"]["status"] == "installed"

    write_project(project, "- {name: local-tap, pip_url: '${UNSET_PACKAGE_PATH}'}")
    proc = run_elt("install", cwd=project, env=OFFLINE, check=False)
    assert proc.returncode == 2
    assert "key 'plugins.extractors[0].pip_url': environment variable 'UNSET_PACKAGE_PATH'" in proc.stderr


def test_without_uv_next_to_python_the_venv_is_built_with_pip(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("elt.install.uv_executable", lambda: None)
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)

    [result] = install_plugins(load_project(project), ["local-tap"])

    assert result.status == "installed", result.error
    record = json.loads((project / ".elt/plugins/extractors/local-tap/install.json").read_text())
    assert record["installer"] == "pip"
    assert "building" not in (venv_of(project, "local-tap") / "bin" / "local-tap").read_text()
    run_elt("sync", "local-tap", "target-duckdb", cwd=project)
    assert len(rows(project, "local_tap.things")) == 3


def test_pip_url_is_split_like_a_shell_with_paths_from_the_project_root(project: Path) -> None:
    make_package(project / "more taps" / "tap-two", name="tap-two")
    write_project(
        project,
        """
        - {name: local-tap, pip_url: "-e ./pkg './more taps/tap-two'"}
        - {name: tap-two, inherit_from: local-tap, executable: tap-two}
        """,
    )
    (project / "sub").mkdir()

    results, _ = install(project / "sub")

    assert results["local-tap"]["status"] == results["tap-two"]["status"] == "installed"
    assert {"local-tap==0.1.0", "tap-two==0.1.0"} <= set(results["local-tap"]["packages"])
    # -e: the tap runs from its source folder, so an edit shows without reinstalling
    module = project / "pkg" / "local_tap.py"
    module.write_text(module.read_text().replace("ROWS, VERSION = 3,", "ROWS, VERSION = 4,"))
    run_elt("sync", "local-tap", "target-duckdb", cwd=project)
    run_elt("sync", "tap-two", "target-duckdb", cwd=project)
    assert len(rows(project, "local_tap.things")) == 4
    assert len(rows(project, "tap_two.things")) == 3


def test_credentials_in_pip_url_are_masked_in_output_record_and_log(project: Path) -> None:
    secret_url = "https://elt-user:s3cret-token@127.0.0.1:9/simple"
    write_project(project, f"- {{name: local-tap, pip_url: './pkg --extra-index-url {secret_url}'}}")
    (project / "failing").mkdir()
    write_project(project / "failing", f"- {{name: bad-tap, pip_url: 'bad-tap --index-url {secret_url}'}}")

    results, stderr = install(project)
    failed = run_elt("install", cwd=project / "failing", env=OFFLINE, check=False)

    assert results["local-tap"]["status"] == "installed"
    record = json.loads((project / ".elt/plugins/extractors/local-tap/install.json").read_text())
    assert record["pip_url"] == "./pkg --extra-index-url https://****@127.0.0.1:9/simple"
    log = (project / ".elt/plugins/extractors/local-tap/install.log").read_text()
    assert failed.returncode == 1 and "bad-tap" in failed.stderr and "https://****@127.0.0.1" in failed.stderr
    for text in (stderr, log, failed.stdout, failed.stderr):
        assert "s3cret-token" not in text
