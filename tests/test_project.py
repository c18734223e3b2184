"""The project file: validation messages with lines, interpolation, environments, plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from elt.cli import cli, main
from elt.errors import EltError, PluginError, ProjectError, ValidationError
from elt.plugins import find_plugin
from elt.project import load_project

VALID = """
    version: 1
    default_environment: dev
    plugins:
      extractors:
        - name: tap-files
          config:
            files: [{entity: a, path: a.csv}]
        - name: tap-orders
          inherit_from: tap-files
          config:
            files: [{entity: orders, path: orders.csv}]
      loaders:
        - name: target-duckdb
          config: {path: "${WAREHOUSE:-.elt/w.duckdb}", batch_size_rows: "${BATCH}"}
    environments:
      - name: dev
      - name: prod
        env: {BATCH: "500"}
        config:
          plugins:
            loaders:
              - name: target-duckdb
                config: {path: /data/prod.duckdb}
    pipelines:
      daily:
        steps:
          - {name: load, sync: tap-files target-duckdb}
          - {name: models, dbt: build --select marts+}
"""


def run_cli(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--project-dir", str(project), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        # errors are rendered by main(); emulate it for exit codes
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(project), *args])
        return int(exit_info.value.code or 0), str(result.exception)
    return result.exit_code, result.output


def test_valid_project_loads_with_default_environment(write_project) -> None:
    project = load_project(write_project(VALID))
    assert project.environment == "dev"
    assert project.data["pipelines"]["daily"]["steps"][1]["dbt"] == "build --select marts+"


def test_unknown_key_reports_line_and_did_you_mean(write_project) -> None:
    root = write_project(
        """
        version: 1
        plugins:
          extractor:
            - name: tap-files
        """
    )
    with pytest.raises(ValidationError) as info:
        load_project(root)
    assert str(info.value) == (
        "elt.yml:3: key 'plugins.extractor': unknown key, expected one of extractors, files, "
        "loaders, mappers, orchestrators, transformers, transforms, utilities; "
        "did you mean 'extractors'?"
    )


def test_wrong_type_reports_expected_and_got_with_line(write_project) -> None:
    root = write_project(
        """
        version: 1
        plugins:
          extractors:
            - name: tap-files
              select: customers.*
        """
    )
    with pytest.raises(ValidationError) as info:
        load_project(root)
    assert str(info.value) == (
        "elt.yml:5: key 'plugins.extractors[0].select': expected a list, got string 'customers.*'"
    )


def test_every_problem_is_reported_in_line_order(write_project) -> None:
    root = write_project(
        """
        version: one
        plugins:
          loaders:
            - config: {}
        pipelines:
          daily:
            steps:
              - {name: a, sync: x y, shell: "echo"}
              - {name: a, dbt: build}
        """
    )
    with pytest.raises(ValidationError) as info:
        load_project(root)
    assert info.value.problems == [
        "elt.yml:1: key 'version': expected an integer, got string 'one'",
        "elt.yml:4: key 'plugins.loaders[0].name': required key is missing",
        "elt.yml:8: key 'pipelines.daily.steps[0]': expected exactly one step type "
        "(sync, dbt, python, sql, export, pipeline, shell), got sync, shell",
        "elt.yml:9: key 'pipelines.daily.steps[1].name': expected a unique step name, got 'a' twice",
    ]


def test_bad_yaml_names_file_and_line(write_project) -> None:
    root = write_project("version: 1\nplugins:\n  extractors: [\n    - name: x\n")
    with pytest.raises(ProjectError) as info:
        load_project(root)
    assert str(info.value).startswith("elt.yml:4: invalid YAML:")


def test_duplicate_key_is_an_error(write_project) -> None:
    root = write_project("version: 1\nversion: 2\n")
    with pytest.raises(ProjectError, match=r"elt.yml:2: key 'version': duplicate key \(first at line 1\)"):
        load_project(root)


def test_missing_project_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no elt.yml"):
        load_project(tmp_path)


def test_interpolation_from_env_and_dotenv_with_types(write_project, monkeypatch) -> None:
    root = write_project(VALID)
    (root / ".env").write_text("WAREHOUSE=from-dotenv.duckdb\nBATCH=250\n")
    monkeypatch.setenv("BATCH", "1000")
    project = load_project(root)
    target = find_plugin(project, "target-duckdb", "loaders")
    assert target.config == {"path": "from-dotenv.duckdb", "batch_size_rows": 1000}


def test_environment_overrides_config_and_sets_variables(write_project, monkeypatch) -> None:
    monkeypatch.delenv("BATCH", raising=False)
    project = load_project(write_project(VALID), environment="prod")
    target = find_plugin(project, "target-duckdb", "loaders")
    assert target.config == {"path": "/data/prod.duckdb", "batch_size_rows": 500}


def test_elt_environment_variable_picks_the_environment(write_project, monkeypatch) -> None:
    monkeypatch.setenv("ELT_ENVIRONMENT", "prod")
    assert load_project(write_project(VALID)).environment == "prod"


def test_unset_variable_is_an_error_only_where_used(write_project, monkeypatch) -> None:
    monkeypatch.delenv("BATCH", raising=False)
    project = load_project(write_project(VALID))
    find_plugin(project, "tap-files", "extractors")  # does not use ${BATCH}
    with pytest.raises(ProjectError, match=r"elt.yml:14: .*'BATCH' is not set"):
        find_plugin(project, "target-duckdb", "loaders")


def test_inherit_from_takes_the_parent_definition(write_project) -> None:
    project = load_project(write_project(VALID))
    plugin = find_plugin(project, "tap-orders")
    assert plugin.builtin == "tap-files"
    assert plugin.config["files"] == [{"entity": "orders", "path": "orders.csv"}]


def test_unknown_plugin_suggests_the_closest(write_project) -> None:
    project = load_project(write_project(VALID))
    with pytest.raises(PluginError) as info:
        find_plugin(project, "tap-file")
    assert "unknown plugin 'tap-file'" in str(info.value)
    assert "did you mean 'tap-files'?" in str(info.value)


def test_validate_command_exit_codes(write_project) -> None:
    root = write_project(VALID)
    code, out = run_cli(root, "validate")
    assert code == 0 and "elt.yml is valid: 3 plugin(s), 1 pipeline(s)" in out
    (root / "elt.yml").write_text("version: 1\nplugins: []\n")
    code, message = run_cli(root, "validate")
    assert code == 2
    assert "elt.yml:2: key 'plugins': expected a mapping, got a list" in message


def test_meltano_project_is_found_when_there_is_no_elt_yml(write_project) -> None:
    root = write_project(
        """
        version: 1
        default_environment: dev
        project_id: 7f0e
        send_anonymous_usage_stats: false
        plugins:
          extractors:
            - name: tap-github
              variant: meltanolabs
              pip_url: meltanolabs-tap-github
              config: {start_date: 2024-01-01}
              select: [issues.*]
        environments:
          - name: dev
        """,
        name="meltano.yml",
    )
    project = load_project(root)
    assert project.file.name == "meltano.yml"
    plugin = find_plugin(project, "tap-github")
    assert plugin.config == {"start_date": "2024-01-01"}
    assert plugin.select == ("issues.*",)


def test_wrong_connector_setting_type_is_a_located_validation_error(write_project) -> None:
    from elt.plugins import check_builtin_config

    root = write_project(
        """
        version: 1
        plugins:
          extractors:
            - name: tap-files
              config:
                files:
                  - {entity: orders, path: orders.csv, keys: order_id}
          loaders:
            - name: target-duckdb
              config:
                path: w.duckdb
                batch_size_rows: lots
        """
    )
    project = load_project(root)
    with pytest.raises(ValidationError) as info:
        check_builtin_config(project, find_plugin(project, "tap-files"))
    assert str(info.value) == (
        "elt.yml:7: key 'plugins.extractors[0].config.files[0].keys': expected a list, got string 'order_id'"
    )
    with pytest.raises(ValidationError) as info:
        check_builtin_config(project, find_plugin(project, "target-duckdb"))
    assert str(info.value) == (
        "elt.yml:12: key 'plugins.loaders[0].config.batch_size_rows': expected an integer, got string 'lots'"
    )


def test_settings_from_environment_variables_the_meltano_way(write_project, monkeypatch) -> None:
    root = write_project(
        """
        version: 1
        plugins:
          extractors:
            - name: tap-postgres
              pip_url: meltanolabs-tap-postgres
              config: {host: 127.0.0.1, port: 5432}
        """
    )
    (root / ".env").write_text("TAP_POSTGRES_PASSWORD=from-dotenv\nTAP_POSTGRES_PORT=6543\n")
    monkeypatch.setenv("TAP_POSTGRES_FILTER_SCHEMAS", '["public", "sales"]')
    monkeypatch.setenv("TAP_POSTGRES__SELECT", "ignored")
    plugin = find_plugin(load_project(root), "tap-postgres")
    assert plugin.config == {
        "host": "127.0.0.1",
        "port": 6543,
        "password": "from-dotenv",
        "filter_schemas": ["public", "sales"],
    }


def test_a_mapping_name_runs_its_mapper_with_the_mapping_config(write_project) -> None:
    root = write_project(
        """
        version: 1
        plugins:
          mappers:
            - name: meltano-map-transformer
              pip_url: meltano-map-transform
              executable: meltano-map-transform
              mappings:
                - name: hash-emails
                  config:
                    stream_maps: {customers: {email: md5(email)}}
        """
    )
    project = load_project(root)
    plugin = find_plugin(project, "hash-emails", "mappers")
    assert plugin.name == "meltano-map-transformer"
    assert plugin.config == {"stream_maps": {"customers": {"email": "md5(email)"}}}
    from elt.orchestrator.model import pipeline_from_blocks

    with pytest.raises(EltError, match="mapper .hash-emails. must stand between"):
        pipeline_from_blocks(project, ["hash-emails"])
