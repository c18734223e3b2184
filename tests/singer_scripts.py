"""Small real Singer programs for tests: a tap that says what its config tells it, a mapper, a target.

They run as separate processes through `elt`, exactly like connectors installed from PyPI.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

# Writes config["lines"] (objects as JSON, strings as they are), then, with config["endless"], records
# of stream "things" for ever; with config["exit"], exits with that code; with config["hang"], sleeps.
TAP = """
import json, sys, time
args = sys.argv[1:]
config = json.load(open(args[args.index("--config") + 1]))
if "--discover" in args:
    if config.get("discover_log"):
        with open(config["discover_log"], "a") as log:
            log.write("discovered\\n")
    print(json.dumps(config["catalog"]))
    sys.exit(0)
out = sys.stdout
for line in config.get("lines", []):
    out.write((line if isinstance(line, str) else json.dumps(line)) + "\\n")
out.flush()
if config.get("endless"):
    i = 0
    while True:
        i += 1
        out.write(json.dumps({"type": "RECORD", "stream": "things", "record": {"id": i}}) + "\\n")
if config.get("hang"):
    time.sleep(3600)
sys.exit(config.get("exit", 0))
"""

# Upper-cases the string field config["field"] of every record, passing everything else on.
MAPPER = """
import json, sys
args = sys.argv[1:]
config = json.load(open(args[args.index("--config") + 1]))
for line in sys.stdin:
    message = json.loads(line)
    if message.get("type") == "RECORD" and config["field"] in message["record"]:
        message["record"][config["field"]] = message["record"][config["field"]].upper()
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()
"""

# Reads config["read"] lines of its input (all if absent), then exits with config["exit"]; emits no STATE.
TARGET = """
import json, sys
args = sys.argv[1:]
config = json.load(open(args[args.index("--config") + 1]))
limit = config.get("read")
for count, line in enumerate(sys.stdin, 1):
    if limit is not None and count >= limit:
        break
sys.stderr.write("target-script: giving up\\n")
sys.exit(config.get("exit", 0))
"""


def install_scripts(bin_dir: Path) -> dict[str, str]:
    """Write tap-script, mapper-script and target-script into `bin_dir`; return env with it on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in (("tap-script", TAP), ("mapper-script", MAPPER), ("target-script", TARGET)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def catalog(*streams: str) -> dict[str, object]:
    """A catalog of streams with an integer `id` key and a string `name`."""
    return {
        "streams": [
            {
                "tap_stream_id": s,
                "stream": s,
                "key_properties": ["id"],
                "schema": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}},
                },
                "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["id"]}}],
            }
            for s in streams
        ]
    }


def schema(stream: str) -> dict[str, object]:
    entry = catalog(stream)["streams"][0]  # type: ignore[index]
    return {"type": "SCHEMA", "stream": stream, "schema": entry["schema"], "key_properties": ["id"]}


def record(stream: str, i: int, name: str | None = None) -> dict[str, object]:
    return {"type": "RECORD", "stream": stream, "record": {"id": i, "name": name or f"n{i}"}}


def state(**bookmarks: object) -> dict[str, object]:
    return {"type": "STATE", "value": {"bookmarks": bookmarks}}
