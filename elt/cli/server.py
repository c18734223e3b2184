"""`elt serve` (the HTTP API) and `elt tokens` (its tokens)."""

from __future__ import annotations

import click

from elt.cli.common import FORMAT, Context, print_json


@click.command()
@click.option("--host", help="Address to listen on (default: serve.host of elt.yml, else 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: serve.port of elt.yml, else 8765).")
@click.option("--max-body", type=click.IntRange(min=1), help="Largest request body in bytes (default 1 MiB).")
@click.pass_obj
def serve(obj: Context, host: str | None, port: int | None, max_body: int | None) -> None:
    """Serve the project's HTTP API: pipelines, runs, logs, state, webhooks (OpenAPI at /openapi.json)."""
    import uvicorn

    from elt.server.app import create_app

    project = obj.project()
    settings = project.data.get("serve") or {}
    host = host or str(settings.get("host") or "127.0.0.1")
    port = port if port is not None else int(settings.get("port") or 8765)
    app = create_app(project.root, project.environment, max_body_bytes=max_body)
    click.echo(f"elt API of {project.root} on http://{host}:{port} (OpenAPI: /openapi.json)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)


@click.group()
def tokens() -> None:
    """API tokens of `elt serve`: create (shown once), list, revoke."""


@tokens.command("create")
@click.option(
    "--role", type=click.Choice(["viewer", "operator", "admin"]), required=True,
    help="viewer reads; operator also starts runs; admin also reads the audit and manages tokens.",
)  # fmt: skip
@click.option("--name", help="What the token is for (shown by `elt tokens list`).")
@click.option("--expires", metavar="DURATION", help="Refuse it after this long (30d, 12h); default: never.")
@FORMAT
@click.pass_obj
def tokens_create(obj: Context, role: str, name: str | None, expires: str | None, fmt: str) -> None:
    """Create a token; it is printed this once and only its hash is kept."""
    from elt.orchestrator.model import parse_duration
    from elt.server.auth import create_token

    seconds = parse_duration(expires, "--expires") if expires else None
    new = create_token(obj.project().system_db, role, name=name, expires_seconds=seconds)
    if fmt == "json":
        print_json({**new.info.to_json(), "token": new.token})
        return
    click.echo(new.token)
    until = f", expires {new.info.expires_at}" if new.info.expires_at else ""
    click.echo(f"token {new.info.id} ({role}{until}): keep it now, elt cannot show it again", err=True)


@tokens.command("list")
@FORMAT
@click.pass_obj
def tokens_list(obj: Context, fmt: str) -> None:
    """The tokens: id, name, role, status, last use (never the tokens themselves)."""
    from elt.server.auth import list_tokens

    found = list_tokens(obj.project().system_db)
    if fmt == "json":
        print_json([t.to_json() for t in found])
        return
    if not found:
        click.echo("no API tokens (elt tokens create --role viewer|operator|admin)")
    for t in found:
        used = f"last used {t.last_used_at}" if t.last_used_at else "never used"
        click.echo(f"{t.id}  {t.role:8} {t.status:7}  {t.name or '-'}  created {t.created_at}, {used}")


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@click.pass_obj
def tokens_revoke(obj: Context, token_id: str) -> None:
    """Revoke the token ID: from now on the API refuses it."""
    from elt.server.auth import revoke_token

    info = revoke_token(obj.project().system_db, token_id)
    click.echo(f"token {info.id} ({info.role}) revoked at {info.revoked_at}")
