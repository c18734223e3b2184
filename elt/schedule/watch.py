"""The files a file trigger watches: a local glob (relative to the project) or `s3://bucket/prefix/*.csv`,
each with a fingerprint that changes when the file does.

Patterns read as shell globs: `*` and `?` stay within one folder, `**` crosses folders, `[abc]` is a
class. A local file's fingerprint is its size and modification time; an S3 object's, its ETag and size.
"""

from __future__ import annotations

import glob
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elt.errors import EltError

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class WatchedFile:
    """One file as the pipeline is given it, with what tells a new version."""

    path: str  # relative to the project (as the pattern was), absolute, or s3://bucket/key
    fingerprint: str
    age: float  # seconds since it last changed, as far as known (S3 objects: from LastModified)


def list_files(root: Path, pattern: str, s3: dict[str, Any] | None = None) -> list[WatchedFile]:
    """The files matching `pattern` now, sorted by path."""
    if pattern.startswith("s3://"):
        return _s3_files(pattern, s3 or {})
    return _local_files(root, pattern)


def _local_files(root: Path, pattern: str) -> list[WatchedFile]:
    absolute = Path(pattern).is_absolute()
    base = Path(pattern) if absolute else root / pattern
    found = []
    clock = time.time()
    for name in glob.glob(str(base), recursive=True):
        path = Path(name)
        try:
            stat = path.stat()
        except OSError:  # gone between the listing and now
            continue
        if not path.is_file():
            continue
        shown = str(path) if absolute else path.relative_to(root).as_posix()
        found.append(
            WatchedFile(shown, f"{stat.st_size}-{stat.st_mtime_ns}", max(0.0, clock - stat.st_mtime))
        )
    return sorted(found, key=lambda f: f.path)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell glob as a regular expression over `/`-separated keys."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _s3_files(url: str, options: dict[str, Any]) -> list[WatchedFile]:
    bucket, _, key_pattern = url[len("s3://") :].partition("/")
    cut = min((key_pattern.index(c) for c in _GLOB_CHARS if c in key_pattern), default=len(key_pattern))
    prefix = key_pattern[:cut]
    matcher = glob_regex(key_pattern)
    client = s3_client(options)
    found = []
    clock = time.time()
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/") or not matcher.match(key):
                    continue
                etag = str(item.get("ETag", "")).strip('"')
                modified = item.get("LastModified")
                age = clock - modified.timestamp() if modified is not None else 0.0
                found.append(
                    WatchedFile(f"s3://{bucket}/{key}", f"{etag}-{item.get('Size', 0)}", max(0.0, age))
                )
    except Exception as error:  # boto3's errors share no base class worth naming
        raise EltError(f"cannot list {url}: {error}") from error
    return sorted(found, key=lambda f: f.path)


def s3_client(options: dict[str, Any]) -> Any:
    """A boto3 S3 client from `s3:` options (aws_access_key_id, aws_secret_access_key, endpoint_url,
    region), else boto3's usual chain."""
    import boto3

    credentials = {k: options[k] for k in ("aws_access_key_id", "aws_secret_access_key") if options.get(k)}
    session = boto3.session.Session(**credentials)
    return session.client(
        "s3", endpoint_url=options.get("endpoint_url") or None, region_name=options.get("region") or None
    )
