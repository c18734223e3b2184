"""The HTTP API of `elt serve` (FastAPI; its OpenAPI document at `/openapi.json`).

    app = create_app(Path("my-project"), environment="prod")   # any ASGI server runs it; `elt serve` uvicorn

Each endpoint parses, calls one library function and answers JSON; the rules live around them:

- a token (`Authorization: Bearer …`) with a role high enough: viewer reads, operator starts runs, admin
  reads the audit and manages tokens (401 without a valid token, 403 with too low a role). The token is
  checked before the body is even parsed, so a caller without one learns nothing from a 422;
- a body no larger than `serve.max_body_bytes` of elt.yml (413), and valid (422, with the reason);
- every call audited in the system database (`api_audit`), but answered health probes;
- secret values masked in every answer (`masking.py`);
- errors as `{"error": "…", "detail": …}`.

elt.yml is read again when it (or `.env`) changes, so a new pipeline or trigger needs no restart.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from elt.errors import EltError, StateError
from elt.logs import mask, mask_json
from elt.orchestrator.model import STEP_KINDS
from elt.orchestrator.variables import check_variables, pipeline_variables
from elt.project import Project, load_project
from elt.runs import RunLog, iter_logs, now
from elt.schedule.fire import fire_trigger
from elt.schedule.launch import LOG_NAME, RunRequest, start_run
from elt.schedule.status import schedule_statuses, trigger_statuses
from elt.server.audit import DEFAULT_KEEP_DAYS, AuditEntry, recent_calls, record_call
from elt.server.auth import ROLES, TokenInfo, allows, authenticate, create_token, list_tokens, revoke_token
from elt.server.hooks import hook_variables, needs_api_token, verify, webhook_trigger
from elt.server.masking import register_project_secrets
from elt.systemdb import Location

DEFAULT_MAX_BODY_BYTES = 1_048_576
_CALLER = "elt.caller"  # the scope key where authentication leaves who called, for the audit
_TAIL_LINES = 20  # of a run's own output, when it ended before it was recorded
_STARTED_KEPT = 1000  # runs started here that the server remembers, newest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """An answer other than success: its status, message and detail."""

    def __init__(
        self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


# -- bodies and answers ------------------------------------------------------------------------------


class RunBody(BaseModel):
    """A run to start."""

    model_config = ConfigDict(extra="forbid")
    pipeline: str = Field(description="a pipeline of elt.yml's `pipelines:`", examples=["daily"])
    variables: dict[str, Any] = Field(
        default_factory=dict,
        description="the pipeline's variables: strings, numbers, booleans or lists of them",
        examples=[{"since": "2024-06-01"}],
    )


class TokenBody(BaseModel):
    """A token to create."""

    model_config = ConfigDict(extra="forbid")
    role: str = Field(description=f"one of {', '.join(ROLES)}")
    name: str | None = None
    expires: str | None = Field(default=None, description="a duration such as 30d or 12h; none: never")


class RunStarted(BaseModel):
    """A run started: poll `/api/runs/{run_id}` for how it goes."""

    run_id: str
    pipeline: str
    status: str = "starting"


class RunCancelling(BaseModel):
    """A run asked to stop: it does within a second or so; `/api/runs/{run_id}` then says `cancelled`."""

    run_id: str
    pipeline: str
    status: str = "cancelling"
    by: str


# -- what the endpoints share ------------------------------------------------------------------------


class _Server:
    """The project (read again when its files change, its secrets registered for masking) and the runs
    started here, until their process records them."""

    def __init__(self, root: Path, environment: str | None) -> None:
        self.root, self.environment = root, environment
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[int, ...], Project] | None = None
        self.db_path = self.project().system_db
        self.started: dict[str, _Started] = {}

    def project(self) -> Project:
        with self._lock:
            stamp = self._stamp()
            if self._loaded is None or self._loaded[0] != stamp:
                project = load_project(self.root, self.environment)
                register_project_secrets(project)
                self._loaded = (stamp, project)
            return self._loaded[1]

    def remember(self, started: _Started) -> None:
        """Keep `started` to answer for it until its process records it (the latest runs only)."""
        self.started[started.run_id] = started
        while len(self.started) > _STARTED_KEPT:
            self.started.pop(next(iter(self.started)))

    def _stamp(self) -> tuple[int, ...]:
        stamps = []
        for name in ("elt.yml", "elt.yaml", "meltano.yml", ".env"):
            try:
                stamps.append((self.root / name).stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return tuple(stamps)


def _server(request: Request) -> _Server:
    server: _Server = request.app.state.server
    return server


def authorize(request: Request, token: str | None, role: str) -> TokenInfo:
    """The caller's token if it is valid and has `role` (or a higher one); else 401 or 403."""
    if token is None:
        raise ApiError(401, "missing token: send `Authorization: Bearer <token>`",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    info = authenticate(_server(request).db_path, token)
    if info is None:
        raise ApiError(401, "invalid token: unknown, revoked or expired",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
    request.scope.get(_CALLER, {}).update(token_id=info.id, role=info.role)
    if not allows(info.role, role):
        raise ApiError(403, f"this needs the {role} role; token {info.id} has the {info.role} role",
                       {"needed": role, "role": info.role})  # fmt: skip
    return info


_Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(HTTPBearer(auto_error=False, description="an API token: `elt tokens create --role ROLE`")),
]


def _viewer(request: Request, credentials: _Credentials) -> TokenInfo:
    return authorize(request, credentials.credentials if credentials else None, "viewer")


def _operator(request: Request, credentials: _Credentials) -> TokenInfo:
    return authorize(request, credentials.credentials if credentials else None, "operator")


def _admin(request: Request, credentials: _Credentials) -> TokenInfo:
    return authorize(request, credentials.credentials if credentials else None, "admin")


async def _parse(request: Request, model: type[Model]) -> Model:
    """The JSON body as `model`; 422 with every reason otherwise."""
    try:
        return model.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


async def _run_body(request: Request, caller: Annotated[TokenInfo, Depends(_operator)]) -> RunBody:
    return await _parse(request, RunBody)


async def _token_body(request: Request, caller: Annotated[TokenInfo, Depends(_admin)]) -> TokenBody:
    return await _parse(request, TokenBody)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that parses `model` itself (after checking the token)."""
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


Viewer, Operator, Admin = Depends(_viewer), Depends(_operator), Depends(_admin)


# -- the app -----------------------------------------------------------------------------------------


def create_app(
    project_root: Path, environment: str | None = None, *, max_body_bytes: int | None = None
) -> ASGIApp:
    """The API of the project at `project_root` (its environment `environment`), as an ASGI app.

    `max_body_bytes` overrides `serve.max_body_bytes` of elt.yml (default 1 MiB).
    """
    server = _Server(project_root, environment)
    limit = max_body_bytes or int(
        (server.project().data.get("serve") or {}).get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES
    )
    app = FastAPI(
        title="elt",
        summary="Pipelines, runs, logs and state of an elt project",
        version=_version(),
        docs_url=None,  # Swagger UI would load its scripts from a CDN; the document is at /openapi.json
        redoc_url=None,
    )
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, mask(exc.error), mask_json(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                     "reason": e.get("msg")} for e in exc.errors()]  # fmt: skip
        reason = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
        return _error(422, mask(f"invalid request: {reason}"), mask_json(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = f"no endpoint {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
        return _error(exc.status_code, str(error), None, dict(exc.headers or {}))

    @app.exception_handler(EltError)
    async def elt_error(request: Request, exc: EltError) -> JSONResponse:
        return _error(500, mask(str(exc)))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}", None)

    # -- reading ---------------------------------------------------------------------------------------

    @app.get("/api/health", tags=["server"], summary="Whether the server answers (no token needed)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/pipelines", tags=["pipelines"], dependencies=[Viewer], summary="The pipelines of elt.yml")
    def pipelines() -> dict[str, Any]:
        project = server.project()
        found = []
        for name, entry in (project.data.get("pipelines") or {}).items():
            steps = [{"name": s.get("name"), "kind": next((k for k in STEP_KINDS if k in s), None),
                      "needs": list(s.get("needs") or [])} for s in entry.get("steps") or []]  # fmt: skip
            found.append({"name": name, "description": entry.get("description"),
                          "variables": pipeline_variables(project, name), "steps": steps})  # fmt: skip
        return mask_json({"pipelines": found})

    @app.get("/api/schedules", tags=["pipelines"], dependencies=[Viewer], summary="The schedules of elt.yml")
    def schedules() -> dict[str, Any]:
        found = schedule_statuses(server.project(), datetime.now(UTC))
        return mask_json({"schedules": [s.to_json() for s in found]})

    @app.get("/api/triggers", tags=["pipelines"], dependencies=[Viewer], summary="The triggers of elt.yml")
    def triggers() -> dict[str, Any]:
        return mask_json({"triggers": [t.to_json() for t in trigger_statuses(server.project())]})

    @app.get("/api/runs", tags=["runs"], dependencies=[Viewer], summary="The latest runs, newest first")
    def runs(limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        return mask_json({"runs": [r.to_json() for r in RunLog(server.db_path).recent(limit)]})

    @app.get(
        "/api/runs/{run_id}", tags=["runs"], dependencies=[Viewer], summary="One run, its steps, attempts"
    )
    def run(run_id: str) -> dict[str, Any]:
        try:
            record = RunLog(server.db_path).get(run_id).to_json()
        except EltError as exc:
            started = server.started.get(run_id)
            if started is None:
                raise ApiError(404, str(exc).splitlines()[0]) from None
            record = started.record()
        return mask_json(record)

    @app.get(
        "/api/runs/{run_id}/logs", tags=["runs"], dependencies=[Viewer], response_class=PlainTextResponse,
        summary="The output of a run's attempts (of one step with ?step=), secrets masked",
    )  # fmt: skip
    def logs(run_id: str, step: str | None = None) -> PlainTextResponse:
        try:
            lines = list(iter_logs(server.db_path, run_id, step))
        except EltError as exc:
            started = server.started.get(run_id)
            if started is None:
                raise ApiError(404, str(exc).splitlines()[0]) from None
            lines = started.output().splitlines()
        return PlainTextResponse("".join(mask(line) + "\n" for line in lines))

    @app.get("/api/state", tags=["state"], dependencies=[Viewer], summary="State ids (matching ?pattern=)")
    def state_list(pattern: str | None = None) -> dict[str, Any]:
        from elt.state import open_state_store

        with open_state_store(server.project()) as store:
            rows = [(r, store.lock_holder(r.state_id)) for r in store.list(pattern)]
        found = [{"state_id": r.state_id, "updated_at": r.updated_at, "partial": r.partial is not None,
                  "locked_by": h.run_id if h else None} for r, h in rows]  # fmt: skip
        return mask_json({"states": found})

    @app.get("/api/state/{state_id:path}", tags=["state"], dependencies=[Viewer],
             summary="The state a sync of the state id would resume from")  # fmt: skip
    def state_get(state_id: str) -> dict[str, Any]:
        from elt.state import open_state_store

        with open_state_store(server.project()) as store:
            try:
                record = store.require(state_id)
            except StateError as exc:
                raise ApiError(404, str(exc).splitlines()[0]) from None
        return mask_json({"state_id": record.state_id, "updated_at": record.updated_at,
                            "state": record.effective, "partial": record.partial is not None})  # fmt: skip

    # -- running ---------------------------------------------------------------------------------------

    def checked(project: Project, pipeline: str, variables: dict[str, Any]) -> dict[str, Any]:
        """`variables` if they suit `pipeline`: 404 for an unknown pipeline, 422 naming a bad variable."""
        if pipeline not in (project.data.get("pipelines") or {}):
            raise ApiError(404, f"no pipeline named '{pipeline}'",
                           {"pipelines": sorted(project.data.get("pipelines") or {})})  # fmt: skip
        try:
            return check_variables(project, pipeline, variables)
        except EltError as exc:
            raise ApiError(422, str(exc).splitlines()[0]) from None

    @app.post("/api/runs", tags=["runs"], status_code=202, openapi_extra=_body_schema(RunBody),
              summary="Start a run of a pipeline; answers its run id at once")  # fmt: skip
    def start(request: Request, body: Annotated[RunBody, Depends(_run_body)]) -> RunStarted:
        project = server.project()
        variables = checked(project, body.pipeline, body.variables)
        by = {"by": "api", "token": request.scope.get(_CALLER, {}).get("token_id")}
        run = RunRequest((body.pipeline,), variables, by)
        process = start_run(project, run)
        # Reaped when it ends, so that it does not linger as a zombie that looks alive to `elt runs`.
        threading.Thread(target=process.wait, name=f"reap-{run.run_id}", daemon=True).start()
        server.remember(_Started(run.run_id, body.pipeline, project.system_dir, process))
        return RunStarted(run_id=run.run_id, pipeline=body.pipeline)

    @app.post("/api/runs/{run_id}/cancel", tags=["runs"], status_code=202,
              summary="Stop a running run; its running steps are killed and recorded cancelled")  # fmt: skip
    def cancel(run_id: str, caller: Annotated[TokenInfo, Depends(_operator)]) -> RunCancelling:
        log = RunLog(server.db_path)
        try:
            log.get(run_id)
        except EltError as exc:
            if run_id in server.started:
                raise ApiError(409, f"run {run_id} is starting: ask again in a moment") from None
            raise ApiError(404, str(exc).splitlines()[0]) from None
        by = f"API token {caller.id}" + (f" ({caller.name})" if caller.name else "")
        try:
            record = log.request_cancel(run_id, by)
        except EltError as exc:
            raise ApiError(409, str(exc).splitlines()[0]) from None
        return RunCancelling(run_id=record.run_id, pipeline=record.name, by=by)

    @app.post("/hooks/{trigger}", tags=["webhooks"], status_code=202,
              summary="Run a webhook trigger's pipeline (X-Elt-Token or X-Hub-Signature-256)")  # fmt: skip
    async def hook(trigger: str, request: Request) -> RunStarted:
        body = await request.body()
        # Off the event loop: reading elt.yml again may resolve secrets, starting a run forks.
        started: RunStarted = await anyio.to_thread.run_sync(fire_hook, trigger, request, body)
        return started

    def fire_hook(trigger: str, request: Request, body: bytes) -> RunStarted:
        project = server.project()
        found = webhook_trigger(project, trigger)
        if found is None:
            raise ApiError(404, f"no webhook trigger named '{trigger}'")
        if needs_api_token(found):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            authorize(request, token.strip() if scheme.lower() == "bearer" else None, "operator")
        else:
            request.scope.get(_CALLER, {}).update(role=f"webhook:{trigger}")
            refused = verify(found, {k.lower(): v for k, v in request.headers.items()}, body)
            if refused is not None:
                raise ApiError(401, refused)
        try:
            variables = hook_variables(project, found, body)
        except EltError as exc:
            raise ApiError(422, str(exc)) from None
        if found.target in (project.data.get("pipelines") or {}):
            variables = checked(project, found.target, variables)
        run_id = fire_trigger(project, trigger, variables)
        server.remember(_Started(run_id, found.target, project.system_dir))
        return RunStarted(run_id=run_id, pipeline=found.target)

    # -- administering ---------------------------------------------------------------------------------

    @app.get("/api/audit", tags=["admin"], dependencies=[Admin], summary="The latest calls, newest first")
    def audit(limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
        return {"calls": [c.to_json() for c in recent_calls(server.db_path, limit)]}

    @app.get("/api/tokens", tags=["admin"], dependencies=[Admin], summary="The API tokens (never the tokens)")
    def tokens() -> dict[str, Any]:
        return {"tokens": [t.to_json() for t in list_tokens(server.db_path)]}

    @app.post("/api/tokens", tags=["admin"], status_code=201, openapi_extra=_body_schema(TokenBody),
              summary="Create a token; the answer is the only place it is ever shown")  # fmt: skip
    def token_create(body: Annotated[TokenBody, Depends(_token_body)]) -> dict[str, Any]:
        from elt.orchestrator.model import parse_duration

        if body.role not in ROLES:
            raise ApiError(422, f"role: expected one of {', '.join(ROLES)}, got '{body.role}'")
        try:
            seconds = parse_duration(body.expires, "expires") if body.expires else None
        except EltError as exc:
            raise ApiError(422, str(exc)) from None
        new = create_token(server.db_path, body.role, name=body.name, expires_seconds=seconds)
        return {**new.info.to_json(), "token": new.token}

    @app.delete("/api/tokens/{token_id}", tags=["admin"], dependencies=[Admin], summary="Revoke a token")
    def token_revoke(token_id: str) -> dict[str, Any]:
        try:
            return revoke_token(server.db_path, token_id).to_json()
        except EltError as exc:
            raise ApiError(404, str(exc).splitlines()[0]) from None

    keep_days = float((server.project().data.get("serve") or {}).get("audit_days") or DEFAULT_KEEP_DAYS)
    return _Guard(app, server.db_path, limit, keep_days)


class _Guard:
    """Around the app: refuses a body over the limit (413) before the app reads it; audits every call."""

    def __init__(self, app: ASGIApp, db_path: Location, limit: int, keep_days: float) -> None:
        self.app, self.db_path, self.limit, self.keep_days = app, db_path, limit, keep_days

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        caller: dict[str, str] = {}
        scope[_CALLER] = caller
        audited = False

        async def audit(status: int) -> None:
            nonlocal audited
            audited = True
            if status == 200 and scope["path"] == "/api/health":
                return  # a probe every few seconds would fill the audit with nothing worth keeping
            client = scope.get("client")
            entry = AuditEntry(
                now(), caller.get("token_id"), caller.get("role"), scope["method"], scope["path"], status,
                client[0] if client else None, time.monotonic() - started,
            )  # fmt: skip
            await anyio.to_thread.run_sync(record_call, self.db_path, entry, self.keep_days)

        async def sending(message: Message) -> None:
            # Audited before the caller hears back, so that its next call finds this one in the audit.
            if message["type"] == "http.response.start":
                await audit(message["status"])
            await send(message)

        try:
            body = await self._body(scope, receive)
            if body is None:
                await _error(413, f"request body over the limit of {self.limit} bytes",
                             {"max_body_bytes": self.limit})(scope, receive, sending)  # fmt: skip
                return
            await self.app(scope, _replay(body, receive), sending)
        finally:
            if not audited:
                await audit(500)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once it is over the limit (a Content-Length over it: before reading)."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then what the client sends (its disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


@dataclass(frozen=True)
class _Started:
    """A run started here, which its process may not have recorded yet."""

    run_id: str
    pipeline: str
    system_dir: Path
    process: subprocess.Popen[bytes] | None = None  # None when elt.schedule started it (webhooks)

    def output(self) -> str:
        """What the run's process wrote (its launcher's log)."""
        path = self.system_dir / "logs" / self.run_id / LOG_NAME
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def record(self) -> dict[str, Any]:
        """What is known of it: starting; or failed, if its process ended without recording it."""
        code = self.process.poll() if self.process is not None else None
        status = "starting" if code is None else "failed"
        record: dict[str, Any] = {"run_id": self.run_id, "kind": "run", "name": self.pipeline,
                                  "status": status, "steps": []}  # fmt: skip
        if code is not None:
            tail = "\n".join(self.output().splitlines()[-_TAIL_LINES:])
            record["error"] = tail or f"the run's process exited with {code} before recording it"
        return record


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("elt")
    except PackageNotFoundError:
        return "0"
