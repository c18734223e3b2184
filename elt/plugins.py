"""Find a plugin in a project and work out how to run it.

A plugin's effective definition is its entry under `plugins:` (after `inherit_from`), with the
environment's override merged on top. Built-in connectors (`tap-files`, `target-duckdb`) run from elt's
own installation; a plugin with a `pip_url` runs from its venv under `.elt/plugins/<type>/<name>/`;
anything else must be an executable on PATH.
"""

from __future__ import annotations

import difflib
import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from elt.errors import PluginError, ProjectError
from elt.project import PLUGIN_TYPES, Project, deep_merge

# name -> plugin type; executables of the same name live next to elt's Python.
BUILTIN_PLUGINS: dict[str, str] = {
    "tap-files": "extractors",
    "tap-mysql": "extractors",
    "tap-postgres": "extractors",
    "target-duckdb": "loaders",
    "target-postgres": "loaders",
    "dbt": "utilities",
}

# Where the settings schema of each built-in connector is declared.
BUILTIN_CLASSES: dict[str, tuple[str, str]] = {
    "tap-files": ("taps.tap_files.tap", "TapFiles"),
    "tap-mysql": ("taps.tap_mysql.tap", "TapMySQL"),
    "tap-postgres": ("taps.tap_postgres.tap", "TapPostgres"),
    "target-duckdb": ("targets.target_duckdb.target", "TargetDuckDB"),
    "target-postgres": ("targets.target_postgres.target", "TargetPostgres"),
}

SECRET_WORDS = ("password", "secret", "token", "private_key", "ssl_key", "api_key", "apikey", "credentials")


@dataclass(frozen=True)
class Plugin:
    """A plugin's effective definition in the environment in force."""

    type: str
    name: str
    config: dict[str, Any]
    path: str  # key path of its entry in the project file, for messages
    variant: str | None = None
    pip_url: str | None = None
    namespace: str | None = None
    executable: str | None = None
    inherit_from: str | None = None
    builtin: str | None = None  # name of the built-in plugin it is (or inherits from)
    select: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def load_schema(self) -> str:
        """Schema its data lands in by default: the namespace, `tap-files` -> `tap_files`."""
        return (self.namespace or self.name).replace("-", "_").lower()


def declared_plugins(project: Project) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """name -> (type, index, raw entry) for every plugin in the project file."""
    found: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for ptype in PLUGIN_TYPES:
        for index, entry in enumerate((project.data.get("plugins") or {}).get(ptype) or []):
            found[entry["name"]] = (ptype, index, entry)
    return found


def find_plugin(project: Project, name: str, plugin_type: str | None = None) -> Plugin:
    """The effective plugin `name`; PluginError (with "did you mean") when it is unknown."""
    declared = declared_plugins(project)
    mapping = _find_mapping(project, name) if name not in declared else None
    if mapping is not None:
        mapper_name, config = mapping
        mapper = find_plugin(project, mapper_name, "mappers")
        from elt.secrets import resolve_secrets

        config = resolve_secrets(project, config, f"{mapper.path}.mappings")
        return replace(mapper, config=deep_merge(mapper.config, config))
    if name not in declared and name not in BUILTIN_PLUGINS:
        known = sorted(set(declared) | set(BUILTIN_PLUGINS) | set(_mapping_names(project)))
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean '{guess[0]}'?" if guess else f"known plugins: {', '.join(known)}"
        raise PluginError(f"{project.file.name}: unknown plugin '{name}'", hint=hint)
    plugin = _resolve(project, name, declared, seen=())
    if plugin_type and plugin.type != plugin_type:
        raise PluginError(
            f"{project.where(plugin.path)}: plugin '{name}' is one of the {plugin.type}, "
            f"expected one of the {plugin_type}"
        )
    _check_missing_variables(project, plugin)
    overrides = _settings_from_env(project, plugin)
    if overrides:
        plugin = replace(plugin, config=deep_merge(plugin.config, overrides))
    return _with_secrets(project, plugin)


def _with_secrets(project: Project, plugin: Plugin) -> Plugin:
    """`plugin` with the `${secret:…}` of its config, env and pip_url resolved (only a plugin a command
    uses reaches its secrets backend)."""
    from elt.secrets import resolve_secrets

    return replace(
        plugin,
        config=resolve_secrets(project, plugin.config, f"{plugin.path}.config"),
        env=resolve_secrets(project, plugin.env, f"{plugin.path}.env"),
        pip_url=resolve_secrets(project, plugin.pip_url, f"{plugin.path}.pip_url"),
    )


def _mapping_names(project: Project) -> list[str]:
    return [
        mapping["name"]
        for mapper in (project.data.get("plugins") or {}).get("mappers") or []
        for mapping in mapper.get("mappings") or []
    ]


def _find_mapping(project: Project, name: str) -> tuple[str, dict[str, Any]] | None:
    """(mapper name, mapping config) for a Meltano mapping called `name`, if there is one."""
    for mapper in (project.data.get("plugins") or {}).get("mappers") or []:
        for mapping in mapper.get("mappings") or []:
            if mapping.get("name") == name:
                return mapper["name"], dict(mapping.get("config") or {})
    return None


def _settings_from_env(project: Project, plugin: Plugin) -> dict[str, Any]:
    """Settings given as environment variables, Meltano's way: `TAP_POSTGRES_PASSWORD` sets `password`.

    The variable is the plugin's name in upper case with `_` for other characters, then the setting's
    name; `.env` counts, the process environment wins. Names with `__` are Meltano's extras (select,
    metadata…), not settings.
    """
    prefix = re.sub(r"[^A-Z0-9]", "_", plugin.name.upper()) + "_"
    found: dict[str, Any] = {}
    for variable, value in project.variables.items():
        if not variable.startswith(prefix) or "__" in variable[len(prefix) - 1 :]:
            continue
        setting = variable[len(prefix) :].lower()
        if not setting:
            continue
        try:
            parsed = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            parsed = value
        found[setting] = parsed if isinstance(parsed, bool | int | float | list | dict) else value
    return found


def _resolve(
    project: Project,
    name: str,
    declared: dict[str, tuple[str, int, dict[str, Any]]],
    seen: tuple[str, ...],
) -> Plugin:
    if name in seen:
        chain = " -> ".join((*seen, name))
        raise ProjectError(f"{project.file.name}: plugins inherit from each other in a loop: {chain}")
    if name not in declared:
        if name in BUILTIN_PLUGINS:
            return Plugin(type=BUILTIN_PLUGINS[name], name=name, config={}, path="plugins", builtin=name)
        raise PluginError(f"{project.file.name}: plugin '{seen[-1]}' inherits from unknown plugin '{name}'")
    ptype, index, entry = declared[name]
    path = f"plugins.{ptype}[{index}]"
    parent: Plugin | None = None
    override = _environment_override(project, ptype, name)
    # An environment may point the plugin at another parent: a `warehouse` loader that is
    # target-duckdb in dev and target-postgres in production keeps every pipeline the same.
    inherit_from = override.get("inherit_from") or entry.get("inherit_from")
    if inherit_from:
        parent = _resolve(project, inherit_from, declared, (*seen, name))
    merged = dict(entry)
    for key, value in override.items():
        if key == "config":
            merged["config"] = deep_merge(merged.get("config") or {}, value or {})
        elif key != "name":
            merged[key] = value
    config = deep_merge(parent.config if parent else {}, merged.get("config") or {})
    builtin = parent.builtin if parent else (name if name in BUILTIN_PLUGINS else None)
    if merged.get("pip_url"):
        builtin = None
    env = {
        **(parent.env if parent else {}),
        **{k: str(v) for k, v in (merged.get("env") or {}).items()},
    }
    return Plugin(
        type=ptype,
        name=name,
        config=config,
        path=path,
        variant=merged.get("variant") or (parent.variant if parent else None),
        pip_url=merged.get("pip_url") or (parent.pip_url if parent else None),
        namespace=merged.get("namespace") or (parent.namespace if parent else None),
        executable=merged.get("executable") or (parent.executable if parent else None),
        inherit_from=merged.get("inherit_from"),
        builtin=builtin,
        select=tuple(merged.get("select") or (parent.select if parent else ())),
        metadata=deep_merge(parent.metadata if parent else {}, merged.get("metadata") or {}),
        schema=deep_merge(parent.schema if parent else {}, merged.get("schema") or {}),
        env=env,
    )


def _environment_override(project: Project, ptype: str, name: str) -> dict[str, Any]:
    plugins = (project.environment_entry().get("config") or {}).get("plugins") or {}
    for entry in plugins.get(ptype) or []:
        if entry.get("name") == name:
            return dict(entry)
    return {}


def _check_missing_variables(project: Project, plugin: Plugin) -> None:
    prefix = f"{plugin.path}.config"
    env_name = project.environment
    env_index = next(
        (i for i, e in enumerate(project.data.get("environments") or []) if e.get("name") == env_name),
        None,
    )
    env_prefix = f"environments[{env_index}].config.plugins.{plugin.type}"
    for miss in project.missing:
        if miss.path.startswith(prefix) or (env_index is not None and miss.path.startswith(env_prefix)):
            raise ProjectError(
                f"{project.where(miss.path)}: key '{miss.path}': environment variable "
                f"'{miss.variable}' is not set",
                hint=f"set it, add it to .env, or give a default: ${{{miss.variable}:-value}}",
            )


def venv_owner(project: Project, plugin: Plugin) -> Plugin:
    """The plugin whose venv `plugin` runs from: itself, or the ancestor it inherits the same pip_url from.

    As in Meltano, `tap-x--eu` with `inherit_from: tap-x` and no pip_url of its own (or the same one)
    shares `tap-x`'s venv; a different pip_url gets a venv of its own.
    """
    declared = declared_plugins(project)
    owner = plugin
    while owner.inherit_from and owner.inherit_from in declared:
        parent = _resolve(project, owner.inherit_from, declared, seen=(owner.name,))
        if parent.pip_url != owner.pip_url:
            break
        owner = parent
    return owner


def plugin_dir(project: Project, plugin: Plugin) -> Path:
    """`.elt/plugins/<type>/<name>/` of the plugin owning `plugin`'s venv: the venv and its install record."""
    owner = venv_owner(project, plugin)
    return project.system_dir / "plugins" / owner.type / owner.name


def executable_name(project: Project, plugin: Plugin) -> str:
    """The program `plugin` runs: its `executable`, else the name at the root of its `inherit_from` chain."""
    if plugin.executable:
        return plugin.executable
    if plugin.builtin:
        return plugin.builtin
    declared = declared_plugins(project)
    name, seen = plugin.name, {plugin.name}
    while name in declared and declared[name][2].get("inherit_from") not in (None, "", *seen):
        name = declared[name][2]["inherit_from"]
        seen.add(name)
    return name


def executable_path(project: Project, plugin: Plugin) -> Path:
    """The program to run for `plugin`; PluginError saying how to fix it when there is none."""
    command = executable_name(project, plugin)
    if plugin.pip_url:
        venv = plugin_dir(project, plugin) / "venv"
        candidate = venv / "bin" / command
        if candidate.exists():
            return candidate
        if venv.is_dir():
            found = sorted(p.name for p in (venv / "bin").iterdir() if not _venv_tool(p.name))
            raise PluginError(
                f"{project.where(plugin.path)}: plugin '{plugin.name}' is installed in {venv} "
                f"but has no executable '{command}'",
                hint=f"set `executable:` to one of: {', '.join(found) or 'none installed'}",
            )
        raise PluginError(
            f"{project.where(plugin.path)}: plugin '{plugin.name}' is not installed",
            hint=f"run `elt install {plugin.name}`",
        )
    if plugin.builtin:
        candidate = Path(sys.executable).parent / command
        if candidate.exists():
            return candidate
    found_on_path = shutil.which(command)
    if found_on_path:
        return Path(found_on_path)
    raise PluginError(
        f"{project.where(plugin.path)}: no executable '{command}' for plugin '{plugin.name}'",
        hint="give it a pip_url and run `elt install`, or put the executable on PATH",
    )


def _venv_tool(name: str) -> bool:
    """Files every venv has in bin/ (interpreters, pip, activation scripts), not a plugin's programs."""
    return "." in name or name.startswith(("python", "pip", "activate", "Activate", "deactivate", "pydoc"))


def secret_values(config: dict[str, Any]) -> set[str]:
    """Values of settings whose names say they are secret, to be masked in logs and errors.

    The password inside a URL setting (`sqlalchemy_url: postgresql://user:pw@host/db`) counts too.
    """
    found: set[str] = set()
    for key, value in config.items():
        if isinstance(value, dict):
            found |= secret_values(value)
        elif isinstance(value, str) and len(value) >= 4:
            if any(w in key.lower() for w in SECRET_WORDS):
                found.add(value)
            elif "://" in value:
                password = urlsplit(value).password
                if password:
                    found.add(password)
                    found.add(unquote(password))
    return found


def check_builtin_config(project: Project, plugin: Plugin) -> None:
    """Validate a built-in connector's config before it runs, with the project file's lines.

    A wrong setting is the user's mistake in elt.yml: it is reported like any other validation error
    (exit 2), not as the connector's failure at run time.
    """
    if plugin.builtin not in BUILTIN_CLASSES:
        return
    import importlib

    from elt.errors import ValidationError
    from elt.validate import validate_settings
    from elt.yamlfile import LocatedDocument

    module, cls = BUILTIN_CLASSES[plugin.builtin]
    schema = getattr(importlib.import_module(module), cls).config_jsonschema
    lines = LocatedDocument(project.file, project.data, project.lines)
    base = plugin.path if plugin.path != "plugins" else f"plugins.{plugin.name}"
    problems = validate_settings(project.file.name, lines, f"{base}.config", plugin.config, schema)
    if problems:
        raise ValidationError(problems)


SHOWN_MASK = "********"


def effective_config(project: Project, name: str) -> dict[str, Any]:
    """What `elt config NAME` shows: the plugin's effective config and env in the environment in force,
    `${secret:…}` resolved, and every secret masked: settings whose names say they are secret and values
    that came from a secrets backend as `********`, a secret inside a longer value (a URL) as `****`."""
    from elt.logs import MASK, Redactor

    plugin = find_plugin(project, name)
    redact = Redactor(secret_values(plugin.config) | secret_values(plugin.env))

    def masked(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: masked(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [masked(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if value and any(w in key.lower() for w in SECRET_WORDS):
            return SHOWN_MASK
        shown = redact(value)
        return SHOWN_MASK if shown == MASK else shown

    return {
        "plugin": plugin.name,
        "type": plugin.type,
        "environment": project.environment,
        "config": masked(plugin.config, ""),
        "env": masked(plugin.env, ""),
    }
