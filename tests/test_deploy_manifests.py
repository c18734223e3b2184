"""The deployment example of docs/deploy.md, checked without a cluster.

deploy/kubernetes/*.yaml is what `kubectl apply -f deploy/kubernetes/` applies; each file of
alternatives/ replaces one of them. The standard objects are validated against the Kubernetes OpenAPI
schemas that `kubernetes-validate` bundles (strict: an unknown field is an error), KEDA's against the
fields KEDA defines (tests/keda_schemas.yaml). Then everything against everything else and the code:
selectors and Services find their pods, every env source, key and claim exists, every `elt` command line
(containers, Dockerfile, docs/deploy.md) parses with the real CLI, the worker pools consume exactly the
queues of deploy/elt.yml, KEDA reads them where the broker URL puts them, grace periods outlast what runs
inside, and deploy/elt.yml loads with nothing but what the pods are given.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from elt.cli import cli
from elt.orchestrator.executors import DEFAULT_QUEUE
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = DEPLOY / "kubernetes"
ALTERNATIVES = MANIFESTS / "alternatives"
DOCKERFILE = DEPLOY / "Dockerfile"
EXAMPLE = DEPLOY / "elt.yml"
GUIDE = ROOT / "docs" / "deploy.md"
KEDA = "keda.sh/v1alpha1"
KEDA_SCHEMAS = yaml.safe_load((Path(__file__).parent / "keda_schemas.yaml").read_text(encoding="utf-8"))
OLDEST_KUBERNETES = "1.27"  # the oldest docs/deploy.md claims; the newest bundled is checked too
SYSTEM_DB_CLAIM = "elt-system"


# -- the manifests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """One document of a manifest file."""

    file: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.file.relative_to(ROOT)}#{self.index} {self.kind}/{self.name}"


def load_manifests(folder: Path) -> list[Manifest]:
    found = []
    for file in sorted(folder.glob("*.yaml")):
        for index, body in enumerate(yaml.safe_load_all(file.read_text(encoding="utf-8"))):
            if body is not None:
                found.append(Manifest(file, index, body))
    return found


APPLIED = load_manifests(MANIFESTS)  # `kubectl apply -f deploy/kubernetes/`
SECRETS = load_manifests(MANIFESTS / "secrets")  # created by hand beside them (placeholders here)
MAIN = APPLIED + SECRETS
EVERYTHING = MAIN + load_manifests(ALTERNATIVES)


def manifest_sets() -> dict[str, list[Manifest]]:
    """What is applied together: deploy/kubernetes/, and each alternative file (with the main Secrets)."""
    sets = {"deploy/kubernetes (and secrets/)": MAIN}
    for file in sorted(ALTERNATIVES.glob("*.yaml")):
        sets[str(file.relative_to(ROOT))] = [m for m in EVERYTHING if m.file == file]
    return sets


def of_kind(kind: str, manifests: list[Manifest] = MAIN) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind]


def named(kind: str, name: str, manifests: list[Manifest] = MAIN) -> Manifest:
    matches = [m for m in manifests if m.kind == kind and m.name == name]
    assert matches, f"no {kind} named {name!r} among {sorted({str(m.file.name) for m in manifests})}"
    return matches[0]


def pod_spec(deployment: Manifest) -> dict[str, Any]:
    return deployment.body["spec"]["template"]["spec"]


def pod_labels(deployment: Manifest) -> dict[str, str]:
    return deployment.body["spec"]["template"]["metadata"]["labels"]


def containers(deployment: Manifest) -> list[dict[str, Any]]:
    return pod_spec(deployment)["containers"]


def all_containers() -> Iterator[tuple[Manifest, dict[str, Any]]]:
    for deployment in of_kind("Deployment"):
        for container in containers(deployment):
            yield deployment, container


def secret_data(secret: Manifest) -> dict[str, str]:
    return {**(secret.body.get("data") or {}), **(secret.body.get("stringData") or {})}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets (values as the manifests give them); fails on a missing source."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named("ConfigMap", source["configMapRef"]["name"]).body["data"])
        if "secretRef" in source:
            env.update(secret_data(named("Secret", source["secretRef"]["name"])))
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            env[entry["name"]] = named("ConfigMap", ref["name"]).body["data"][ref["key"]]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secret_data(named("Secret", ref["name"]))[ref["key"]]
    return env


# -- elt command lines, parsed by the real CLI -----------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """An `elt` command line as the CLI reads it: the command's path and its parameters."""

    path: tuple[str, ...]
    params: dict[str, Any]


def parse_elt(args: list[str]) -> Parsed:
    """Parse an `elt` command line as `elt` would, without running it.

    Raises click.UsageError for an unknown command or option, or a value of the wrong type.
    """

    def rest_of(ctx: click.Context) -> list[str]:
        with warnings.catch_warnings():  # click 8.2+ warns about protected_args; click 9 has args only
            warnings.simplefilter("ignore", DeprecationWarning)
            return [*getattr(ctx, "protected_args", []), *ctx.args]

    ctx = cli.make_context("elt", list(args))
    command: click.Command = cli
    path: list[str] = []
    rest = rest_of(ctx)
    while isinstance(command, click.Group) and rest:
        name, found, rest = command.resolve_command(ctx, rest)
        assert name is not None and found is not None
        path.append(name)
        ctx = found.make_context(name, rest, parent=ctx)
        command, rest = found, rest_of(ctx) if isinstance(found, click.Group) else []
    return Parsed(tuple(path), dict(ctx.params))


def check_elt_command_line(args: list[str], where: str) -> Parsed:
    """Fail the test unless `elt ARGS` parses; and `elt COMMAND --help` answers."""
    try:
        parsed = parse_elt(args)
    except click.UsageError as error:
        pytest.fail(f"{where}: elt {shlex.join(args)}: {error.format_message()}")
    result = CliRunner().invoke(cli, [*parsed.path, "--help"])
    assert result.exit_code == 0, f"{where}: elt {' '.join(parsed.path)} --help: {result.output}"
    return parsed


def elt_args(container: dict[str, Any]) -> Parsed:
    return parse_elt([str(a) for a in container["args"]])


# -- the example project and the Dockerfile --------------------------------------------------------------


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def default_queue() -> str:
    """The queue of the example's steps that name none: its celery executor's, else elt's default."""
    executors = [e["executor"] for e in example()["environments"] if "executor" in e]
    assert len(executors) == 1, "one environment of deploy/elt.yml runs on the workers"
    return str(executors[0].get("queue") or DEFAULT_QUEUE)


def example_queues() -> dict[str, list[dict[str, Any]]]:
    """Queue → the steps of the example's pipelines routed to it (the step's, the pipeline's, the default)."""
    routed: dict[str, list[dict[str, Any]]] = {}
    for pipeline in example()["pipelines"].values():
        for step in pipeline["steps"]:
            queue = step.get("queue") or pipeline.get("queue") or default_queue()
            routed.setdefault(queue, []).append(step)
    return routed


def workers() -> dict[str, set[str]]:
    """Deployment name → the queues its `elt worker` consumes."""
    pools: dict[str, set[str]] = {}
    for deployment, container in all_containers():
        parsed = elt_args(container)
        if parsed.path == ("worker",):
            queues = parsed.params["queues"] or default_queue()
            pools.setdefault(deployment.name, set()).update(q.strip() for q in queues.split(","))
    return pools


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def dockerfile_value(instruction: str) -> str:
    (value,) = [arguments for i, arguments in dockerfile() if i == instruction]
    return value


# -- every document parses, and validates against Kubernetes' schemas -----------------------------------


@pytest.fixture(scope="module")
def kubernetes_validate() -> ModuleType:
    try:
        import kubernetes_validate
    except ImportError:
        if IN_CI:
            pytest.fail("kubernetes-validate is not installed (a dev dependency); CI must not skip")
        pytest.skip("kubernetes-validate is not installed (a dev dependency)")
    return kubernetes_validate


def test_every_manifest_document_parses_and_names_itself() -> None:
    assert len(of_kind("Deployment")) == 4 and len(manifest_sets()) == 3
    for manifest in EVERYTHING:
        assert manifest.body.get("apiVersion") and manifest.body.get("kind"), manifest
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest.name), manifest
        assert "namespace" not in manifest.body["metadata"], f"{manifest}: applied with `kubectl -n`"
    for where, group in manifest_sets().items():
        keys = [(m.kind, m.name) for m in group]
        assert len(keys) == len(set(keys)), f"an object is defined twice in {where}"
    assert not of_kind("Secret", APPLIED), "an apply of the folder would write placeholders over secrets"
    assert [m.kind for m in SECRETS] == ["Secret"]


@pytest.mark.parametrize("manifest", [m for m in EVERYTHING if m.body["apiVersion"] != KEDA], ids=str)
def test_standard_objects_validate_against_the_kubernetes_schemas(
    manifest: Manifest, kubernetes_validate: ModuleType
) -> None:
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        try:
            kubernetes_validate.validate(manifest.body, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{manifest}: Kubernetes {version}: {'.'.join(map(str, error.path))}: {error.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{manifest}: {error.message}")


def test_the_kubernetes_validation_rejects_a_broken_deployment(kubernetes_validate: ModuleType) -> None:
    broken = copy.deepcopy(named("Deployment", "elt-scheduler").body)
    broken["spec"]["template"]["spec"]["containers"][0]["terminationGracePeriod"] = 30  # the pod's field
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)
    broken = copy.deepcopy(named("Deployment", "elt-scheduler").body)
    broken["spec"]["replicas"] = "1"
    with pytest.raises(kubernetes_validate.ValidationError, match="'1' is not of type 'integer'"):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def test_labels_are_well_formed_and_each_selector_finds_its_own_pods_only() -> None:
    for manifest in EVERYTHING:
        labels = dict(manifest.body["metadata"].get("labels") or {})
        if manifest.kind == "Deployment":
            labels.update(pod_labels(manifest))
        for key, value in labels.items():
            assert LABEL_KEY.fullmatch(key) and LABEL_VALUE.fullmatch(str(value)), f"{manifest}: {key}"
    for deployment in of_kind("Deployment"):
        selector = deployment.body["spec"]["selector"]["matchLabels"]
        for other in of_kind("Deployment"):
            selects = selector.items() <= pod_labels(other).items()
            assert selects == (other is deployment), f"{deployment}'s selector and {other}'s pods"


# -- KEDA ------------------------------------------------------------------------------------------------


def keda_problems(body: dict[str, Any]) -> list[str]:
    """Every way a KEDA object departs from the fields KEDA defines, as `path: message`."""
    if body["kind"] not in ("ScaledObject", "TriggerAuthentication"):
        return [f"kind {body['kind']} of {KEDA} is not checked here"]

    def problems(schema: dict[str, Any], value: Any, prefix: str = "") -> list[str]:
        validator = jsonschema.Draft202012Validator({"$defs": KEDA_SCHEMAS["$defs"], **schema})
        return [f"{prefix}{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(value)]

    found = problems(KEDA_SCHEMAS[body["kind"]], body)
    if body["kind"] == "ScaledObject" and not found:
        for i, trigger in enumerate(body["spec"]["triggers"]):
            schema = KEDA_SCHEMAS["triggers"].get(trigger["type"])
            if schema is None:
                found.append(f"spec.triggers.{i}.type: no schema for {trigger['type']!r} here")
            else:
                found += problems(schema, trigger["metadata"], f"spec.triggers.{i}.metadata.")
    return found


@pytest.mark.parametrize("manifest", [m for m in EVERYTHING if m.body["apiVersion"] == KEDA], ids=str)
def test_keda_objects_use_only_the_fields_keda_defines(
    manifest: Manifest, kubernetes_validate: ModuleType
) -> None:
    assert keda_problems(manifest.body) == []
    behavior = (
        manifest.body["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    )
    if behavior is not None:  # KEDA hands it to the HPA it makes: Kubernetes' schema applies
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": manifest.name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": manifest.name},
                "maxReplicas": 1,
                "behavior": behavior,
            },
        }
        kubernetes_validate.validate(hpa, OLDEST_KUBERNETES, strict=True)


def test_the_keda_check_rejects_broken_objects() -> None:
    scaled = named("ScaledObject", "elt-worker-sync").body
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["listLength"] = 2  # KEDA's metadata values are strings
    assert any("listLength" in p for p in keda_problems(broken))
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["queueName"] = "sync"  # rabbitmq's, not redis's
    assert any("queueName" in p for p in keda_problems(broken))
    broken = copy.deepcopy(scaled)
    broken["spec"]["minReplicas"] = 0  # the HPA's word, not KEDA's
    assert any("minReplicas" in p for p in keda_problems(broken))


def test_keda_authenticates_from_existing_secrets_with_parameters_its_scalers_take() -> None:
    for where, manifests in manifest_sets().items():
        pool = manifests + of_kind("Secret")
        for scaled in of_kind("ScaledObject", manifests):
            for trigger in scaled.body["spec"]["triggers"]:
                auth = named("TriggerAuthentication", trigger["authenticationRef"]["name"], pool)
                for target in auth.body["spec"]["secretTargetRef"]:
                    assert target["parameter"] in KEDA_SCHEMAS["authentication"][trigger["type"]], (
                        where,
                        target,
                    )
                    secret = named("Secret", target["name"], pool)
                    assert target["key"] in secret_data(secret), f"{where}: no {target['key']} in {secret}"


# -- the pods find what they refer to --------------------------------------------------------------------


def test_every_env_source_volume_claim_and_mount_exists() -> None:
    for deployment, container in all_containers():
        assert container_env(container), deployment
        volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{deployment}: a mount of no volume, {mount['name']}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                named("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def test_each_service_points_at_a_port_of_one_deployment() -> None:
    for service in of_kind("Service"):
        selector = service.body["spec"]["selector"]
        targets = [d for d in of_kind("Deployment") if selector.items() <= pod_labels(d).items()]
        assert len(targets) == 1, f"{service} selects {len(targets)} Deployments"
        ports = [p for c in containers(targets[0]) for p in c.get("ports", [])]
        for port in service.body["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (service, target)


def asgi_get(app: Any, path: str) -> tuple[int, bytes]:
    """GET `path` from an ASGI app in this process: (status, body)."""
    import anyio

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 40000),
        "server": ("localhost", 8765),
    }
    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_probes_ask_elt_serve_on_its_port_what_it_answers_without_a_token(tmp_path: Path) -> None:
    from elt.server.app import create_app

    (tmp_path / "elt.yml").write_text("version: 1\n", encoding="utf-8")
    app = create_app(tmp_path)
    assert asgi_get(app, "/api/runs")[0] == 401 and asgi_get(app, "/api/nothing-here")[0] == 404
    probes = 0
    for deployment, container in all_containers():
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind, {}).get("httpGet")
            if probe is None:
                continue
            probes += 1
            assert asgi_get(app, probe["path"]) == (200, b'{"status":"ok"}'), f"{deployment}: {kind}"
            port = next(p for p in container["ports"] if probe["port"] in (p.get("name"), p["containerPort"]))
            parsed = elt_args(container)
            assert parsed.path == ("serve",) and parsed.params["port"] == port["containerPort"], deployment
            assert parsed.params["host"] == "0.0.0.0", (
                f"{deployment}: elt serve listens on 127.0.0.1 by default"
            )
    assert probes == 2, "the API has a readiness and a liveness probe"


def test_one_image_everywhere_the_one_the_dockerfile_builds() -> None:
    images = {container["image"] for _, container in all_containers()}
    assert len(images) == 1, images
    (image,) = images
    assert re.findall(r"docker build -f deploy/Dockerfile -t (\S+) \.", DOCKERFILE.read_text()) == [image]
    assert f"docker build -f deploy/Dockerfile -t {image} ." in GUIDE.read_text(encoding="utf-8")


# -- every elt command line is one the CLI takes ---------------------------------------------------------


@pytest.mark.parametrize(
    "deployment,container", [pytest.param(d, c, id=f"{d.name}/{c['name']}") for d, c in all_containers()]
)
def test_container_args_are_command_lines_of_the_real_cli(
    deployment: Manifest, container: dict[str, Any]
) -> None:
    entrypoint = json.loads(dockerfile_value("ENTRYPOINT"))
    assert "command" not in container, f"{deployment}: the image's ENTRYPOINT {entrypoint} runs elt"
    assert entrypoint[:2] == ["tini", "--"] and Path(entrypoint[-1]).name == "elt"
    check_elt_command_line([str(a) for a in container["args"]], str(deployment))


def guide_command_lines() -> list[list[str]]:
    """The `elt …` command lines of docs/deploy.md's code blocks (first word, after `--`, `ExecStart=`)."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            try:
                words = shlex.split(line.replace("ExecStart=", ""), comments=True)
            except ValueError:  # YAML, not a shell line
                continue
            for i, word in enumerate(words):
                if Path(word).name == "elt" and (i == 0 or words[i - 1] in ("--", "&&", ";")):
                    lines.append(words[i + 1 :])
                    break
    return lines


def test_the_guides_commands_are_command_lines_of_the_real_cli() -> None:
    lines = guide_command_lines()
    assert {"scheduler", "tokens", "runs", "schedule"} <= {args[0] for args in lines}, lines
    for args in lines:
        check_elt_command_line(args, "docs/deploy.md")


def test_the_guides_prose_names_only_real_elt_commands_and_options() -> None:
    """`elt …` in the text's code spans, with placeholders (`NAME`, `…`) for values: names only."""
    text = re.sub(r"```.*?```", "", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    spans = [part for span in re.findall(r"`(elt [^`]+)`", text) for part in span.split("&&")]
    assert len(spans) >= 8, spans
    for span in spans:
        words = shlex.split(span)[1:]
        command: click.Command = cli
        for i, word in enumerate(words):
            if word.startswith("-"):
                known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
                assert word.split("=")[0] in known, f"docs/deploy.md: `{span}`: elt has no {word} there"
            elif isinstance(command, click.Group) and (i == 0 or not words[i - 1].startswith("-")):
                found = command.get_command(click.Context(command), word)
                assert found is not None, f"docs/deploy.md: `{span}`: no command {word!r}"
                command = found


# -- queues, pools and autoscaling -----------------------------------------------------------------------


def test_worker_pools_consume_exactly_the_queues_of_the_example_pipelines() -> None:
    pools = workers()
    assert set(pools) == {"elt-worker-sync", "elt-worker-dbt"}
    consumed = [q for queues in pools.values() for q in queues]
    assert len(consumed) == len(set(consumed)), f"a queue is consumed by two pools: {pools}"
    assert set(consumed) == set(example_queues()), f"pools {pools}, pipelines use {sorted(example_queues())}"


def test_autoscalers_watch_the_queues_of_the_worker_pools_and_own_their_replicas() -> None:
    pools = workers()
    for where, manifests in manifest_sets().items():
        scalers = of_kind("ScaledObject", manifests) + of_kind("HorizontalPodAutoscaler", manifests)
        targets = [s.body["spec"]["scaleTargetRef"]["name"] for s in scalers]
        assert sorted(targets) == sorted(pools), f"{where}: one autoscaler per pool, got {targets}"
        for scaled in of_kind("ScaledObject", manifests):
            triggers = scaled.body["spec"]["triggers"]
            watched = {t["metadata"].get("listName") or t["metadata"].get("queueName") for t in triggers}
            assert watched == pools[scaled.name], f"{where}: {scaled} watches {watched}"
            assert scaled.name == scaled.body["spec"]["scaleTargetRef"]["name"]  # an alternative replaces it
        for hpa in of_kind("HorizontalPodAutoscaler", manifests):
            pool = named("Deployment", hpa.body["spec"]["scaleTargetRef"]["name"])
            assert all("cpu" in c["resources"]["requests"] for c in containers(pool)), (
                f"{hpa}: no CPU request"
            )
    for name in pools:
        assert "replicas" not in named("Deployment", name).body["spec"], (
            f"{name}: the autoscaler owns replicas"
        )


def test_keda_reads_the_queues_where_the_celery_broker_keeps_them() -> None:
    for deployment, container in all_containers():
        if deployment.name not in workers():
            continue
        broker = urlsplit(container_env(container)["CELERY_BROKER_URL"])
        assert broker.scheme == "redis"
        for trigger in named("ScaledObject", deployment.name).body["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            assert trigger["metadata"]["address"] == f"{broker.hostname}:{broker.port}", deployment
            assert trigger["metadata"].get("databaseIndex", "0") == (broker.path.strip("/") or "0"), (
                deployment
            )
            # a pod for every `concurrency` waiting steps
            assert int(trigger["metadata"]["listLength"]) == elt_args(container).params["concurrency"]


# -- the system database, volumes, users and grace periods -----------------------------------------------


def test_the_system_database_is_postgres_and_the_run_logs_volume_is_on_one_node() -> None:
    prod = next(e for e in example()["environments"] if e["name"] == "prod")
    assert prod["system_db"].startswith("postgresql://"), "history, slots, tokens, state: shared by every pod"
    assert "state_backend" not in prod, "the state goes with the system database"
    claim = named("PersistentVolumeClaim", SYSTEM_DB_CLAIM)
    assert claim.body["spec"]["accessModes"] == ["ReadWriteOnce"], "the run logs are on one node's volume"
    sharing = []
    for deployment, container in all_containers():
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(deployment).get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        mounts = [m for m in container.get("volumeMounts", []) if claims.get(m["name"]) == SYSTEM_DB_CLAIM]
        if not mounts:
            continue
        sharing.append(deployment.name)
        assert [m["mountPath"] for m in mounts] == [f"{dockerfile_value('WORKDIR')}/.elt"], deployment
        terms = pod_spec(deployment)["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert any(
            t["topologyKey"] == "kubernetes.io/hostname"
            and t["labelSelector"]["matchLabels"].items() <= pod_labels(deployment).items()
            for t in terms
        ), f"{deployment}: not kept on the node of the others"
    assert sorted(sharing) == ["elt-api", "elt-scheduler"]


def test_sync_workers_read_the_shop_files_where_elt_yml_looks_for_them() -> None:
    assert all("sync" in step for step in example_queues()["sync"])
    for name, queues in workers().items():
        for container in containers(named("Deployment", name)):
            files = container_env(container)["SHOP_FILES"]
            mounted = [m for m in container.get("volumeMounts", []) if m["mountPath"] == files]
            assert bool(mounted) == ("sync" in queues), f"{name}: {files}"
            assert all(m.get("readOnly") for m in mounted), name


def test_grace_periods_outlast_what_runs_in_the_pods() -> None:
    from elt.orchestrator.model import parse_duration
    from elt.schedule.scheduler import _KILL_AFTER

    scheduler = named("Deployment", "elt-scheduler")
    (container,) = containers(scheduler)
    grace = elt_args(container).params["grace"]
    assert pod_spec(scheduler)["terminationGracePeriodSeconds"] >= grace + _KILL_AFTER
    routed = example_queues()
    for name, queues in workers().items():
        longest = max(parse_duration(step["timeout"], "timeout") for q in queues for step in routed[q])
        assert pod_spec(named("Deployment", name))["terminationGracePeriodSeconds"] > longest, name


def test_pods_run_as_the_user_the_image_makes() -> None:
    user = dockerfile_value("USER")
    for deployment in of_kind("Deployment"):
        context = pod_spec(deployment)["securityContext"]
        assert str(context["runAsUser"]) == user and context["runAsNonRoot"], deployment
        writes = [
            v
            for v in pod_spec(deployment).get("volumes", [])
            if "persistentVolumeClaim" in v and not v["persistentVolumeClaim"].get("readOnly")
        ]
        if writes:
            assert str(context.get("fsGroup")) == user, f"{deployment}: its volume must be writable by {user}"


# -- the Dockerfile and the example project --------------------------------------------------------------


def test_the_dockerfile_copies_files_that_exist_and_runs_real_commands() -> None:
    ignore = DEPLOY / "Dockerfile.dockerignore"
    ignored = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    instructions = dockerfile()
    assert instructions[0][0] == "FROM"
    copies = [[w for w in shlex.split(a) if not w.startswith("--")] for i, a in instructions if i == "COPY"]
    assert ["deploy/elt.yml", "elt.yml"] in copies, "the example project is the image's elt.yml"
    for *sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context (the repository root)"
            excluded = [p for p in ignored if fnmatch(source, p.removeprefix("**/"))]
            assert not excluded, f"COPY {source}: left out of the build context by {excluded}"
    commands = [shlex.split(part) for i, a in instructions if i == "RUN" for part in re.split(r"&&|;", a)]
    elt_commands = [words[1:] for words in commands if words[:1] == ["elt"]]
    assert [args[0] for args in elt_commands] == ["validate", "install"]
    for args in elt_commands:
        check_elt_command_line(args, "deploy/Dockerfile")


def test_the_example_project_validates_in_both_environments(tmp_path: Path) -> None:
    (tmp_path / "elt.yml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    for environment in ("dev", "prod"):
        result = CliRunner().invoke(cli, ["--project-dir", str(tmp_path), "-e", environment, "validate"])
        assert result.exit_code == 0, result.output


def test_the_example_project_loads_with_nothing_but_what_the_pods_are_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elt.orchestrator.executors import executor_settings
    from elt.orchestrator.model import parse_duration
    from elt.project import load_project
    from elt.state.settings import open_state_store

    text = EXAMPLE.read_text(encoding="utf-8")
    (tmp_path / "elt.yml").write_text(text, encoding="utf-8")
    environments = {tuple(sorted(container_env(c).items())) for _, c in all_containers()}
    assert len(environments) == 1, "every elt pod is configured alike"
    referenced = set(re.findall(r"\$\{(?:secret:)?([A-Za-z_][A-Za-z0-9_]*)", text))
    for name in referenced | {v for v in os.environ if v.startswith("ELT_")}:
        monkeypatch.delenv(name, raising=False)  # only what the pods get counts
    for key, value in environments.pop():
        monkeypatch.setenv(key, value)

    project = load_project(tmp_path)
    assert project.environment == "prod"
    assert [m.variable for m in project.missing] == []
    assert (project.data.get("secrets") or {}).get("backend", "env") == "env"
    for reference in project.secrets:  # the env backend reads the pods' variables
        assert reference.backend in (None, "env") and reference.name.split("#")[0] in os.environ, reference
    assert project.system_db == "postgresql://elt@postgres:5432/shop"
    assert "PGPASSWORD" in os.environ, "libpq reads the system database's password from PGPASSWORD"
    assert open_state_store(project).label == "systemdb (postgresql://elt@postgres:5432/shop)"
    executor = executor_settings(project)
    assert (executor.kind, executor.broker_url, executor.queue) == (
        "celery",
        os.environ["CELERY_BROKER_URL"],
        default_queue(),
    )
    # A step keeps its task unacknowledged until it ends, and elt stops it at its timeout: a timeout
    # above the visibility timeout would let Redis hand a step still running to a second worker.
    for queue, steps in example_queues().items():
        for step in steps:
            assert parse_duration(step["timeout"], "timeout") < executor.visibility_timeout, (queue, step)


# -- the guide -------------------------------------------------------------------------------------------


def contained(part: Any, whole: Any) -> bool:
    """Whether `part` is an excerpt of `whole`: mappings with fewer keys, lists with fewer items."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and contained(v, whole[k]) for k, v in part.items())
    if isinstance(part, list) and part and isinstance(part[0], dict):
        return isinstance(whole, list) and all(any(contained(p, w) for w in whole) for p in part)
    return bool(part == whole)


def test_the_guides_yaml_is_an_excerpt_of_the_example_project() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        assert contained(yaml.safe_load(block), example()), (
            f"docs/deploy.md shows what deploy/elt.yml is not:\n{block}"
        )
    assert not contained({"pipelines": {"daily": {"steps": [{"name": "load", "queue": "dbt"}]}}}, example())


def test_the_guide_creates_the_secret_with_the_keys_the_pods_read() -> None:
    text = re.sub(r"\\\n", " ", GUIDE.read_text(encoding="utf-8"))
    (command,) = [
        line for line in text.splitlines() if re.search(r"secret generic elt-secrets\s+--from", line)
    ]
    created = set(re.findall(r"--from-literal=(\w+)=", command))
    assert created == set(secret_data(named("Secret", "elt-secrets"))), command


def test_the_guide_links_every_file_of_the_example_and_names_only_files_that_exist() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for file in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        relative = file.relative_to(ROOT).as_posix()
        assert f"(../{relative})" in text, f"docs/deploy.md does not link {relative}"
    # paths of the repository, not Deployments (`kubectl exec deploy/elt-api`)
    for mentioned in set(re.findall(r"(?<!exec )(?<!logs )\bdeploy/[\w./-]*\w", text)):
        assert (ROOT / mentioned).exists(), f"docs/deploy.md names {mentioned}, which does not exist"
    assert "docs/deploy.md" in (ROOT / "README.md").read_text(encoding="utf-8")
