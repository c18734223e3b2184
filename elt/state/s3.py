"""State as objects in an S3 bucket (`state_backend.uri: s3://bucket/prefix`).

One JSON object per state id, `prefix/<state id>.json` (the id percent-encoded), and one lock object,
`prefix/<state id>.lock`. S3 conditional writes make the lock atomic: a run creates the lock object with
`If-None-Match: *` (fails if it exists), takes over an expired one with `If-Match: <its ETag>` (only one
of several runs racing for it wins), refreshes it with `If-Match` on its own ETag, and deletes it with
`If-Match` too. The store must support conditional writes (AWS S3 does; so do MinIO and moto).

A lock's age is the server's `Date` minus the object's `Last-Modified`, both from the server's clock, so
clients need not agree on the time; both have whole seconds, so keep lock_timeout_seconds well above 2.

Credentials: `state_backend.s3.aws_access_key_id` / `aws_secret_access_key` (or `s3://KEY:SECRET@bucket`),
else boto3's usual chain (AWS_* variables, profiles, instance roles). The endpoint: the
`state_backend.s3.endpoint_url` setting, else `AWS_ENDPOINT_URL`(`_S3`).
"""

from __future__ import annotations

import json
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

from elt.errors import StateError
from elt.state.backend import LockHolder, StateBackend, StateRecord, file_name

STATE_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
# Someone else's conditional write won, or the object changed or went away under us: look again.
_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"}


class S3Backend(StateBackend):
    """State and lock objects under `prefix` in `bucket`."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        label: str,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.label = label
        self._credentials = {
            k: v
            for k, v in (
                ("aws_access_key_id", aws_access_key_id),
                ("aws_secret_access_key", aws_secret_access_key),
            )
            if v
        }
        self._endpoint_url = endpoint_url or None
        self._client: Any = None
        self._client_mutex = threading.Lock()
        self._etags: dict[str, str] = {}  # lock token -> ETag of the lock object we last wrote

    @property
    def client(self) -> Any:
        with self._client_mutex:
            if self._client is None:
                import boto3
                from botocore.config import Config

                session = boto3.session.Session(**self._credentials)
                config = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3})
                self._client = session.client("s3", endpoint_url=self._endpoint_url, config=config)
            return self._client

    def _key(self, state_id: str, suffix: str) -> str:
        name = file_name(state_id) + suffix
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, operation: str, *, expected: set[str] | frozenset[str] = frozenset(),
              **kwargs: Any) -> Any:  # fmt: skip
        """Call `operation` on the client; errors whose code is in `expected` are re-raised as they are."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in expected:
                raise
            message = error.get("Message") or code
            raise StateError(f"state backend {self.label}: {what} failed: {code}: {message}") from None
        except BotoCoreError as exc:
            raise StateError(
                f"state backend {self.label}: {what} failed: {exc}",
                hint="set state_backend.s3.aws_access_key_id/aws_secret_access_key or AWS_* variables, "
                "and state_backend.s3.endpoint_url (or AWS_ENDPOINT_URL) for an S3-compatible store",
            ) from None

    def read(self, state_id: str) -> StateRecord | None:
        return self._read_key(self._key(state_id, STATE_SUFFIX))

    def _read_key(self, key: str) -> StateRecord | None:
        from botocore.exceptions import ClientError

        try:
            response = self._call(f"reading {key}", "get_object", expected={"NoSuchKey", "404"}, Key=key)
        except ClientError:
            return None
        body = response["Body"].read()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateError(f"s3://{self.bucket}/{key} is not valid JSON: {exc}") from None
        return StateRecord.from_json(data, f"s3://{self.bucket}/{key}")

    def write(self, record: StateRecord) -> None:
        key = self._key(record.state_id, STATE_SUFFIX)
        body = json.dumps(record.to_json(), indent=2).encode()
        self._call(f"writing {key}", "put_object", Key=key, Body=body, ContentType="application/json")

    def delete(self, state_id: str) -> bool:
        from botocore.exceptions import ClientError

        key = self._key(state_id, STATE_SUFFIX)
        try:
            self._call(f"reading {key}", "head_object", expected={"NoSuchKey", "404"}, Key=key)
        except ClientError:
            return False
        self._call(f"deleting {key}", "delete_object", Key=key)
        return True

    def records(self) -> list[StateRecord]:
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(STATE_SUFFIX)]
        except (ClientError, BotoCoreError) as exc:
            raise StateError(f"state backend {self.label}: listing {prefix or '/'} failed: {exc}") from None
        found = (self._read_key(k) for k in keys if "/" not in k[len(prefix) :])
        return [r for r in found if r is not None]

    # -- locks ---------------------------------------------------------------------------------------

    def _lock_body(self, holder: LockHolder) -> bytes:
        return json.dumps({**holder.to_json(), "heartbeat": time.time()}).encode()

    def acquire_lock(self, holder: LockHolder, timeout: float) -> LockHolder | None:
        from botocore.exceptions import ClientError

        key = self._key(holder.state_id, LOCK_SUFFIX)
        for _ in range(100):  # each turn sees the lock change hands; bounded so we never spin forever
            try:
                written = self._call(f"locking {key}", "put_object", expected=_LOST_RACE, Key=key,
                                     Body=self._lock_body(holder), IfNoneMatch="*")  # fmt: skip
            except ClientError:
                pass
            else:
                self._etags[holder.token] = written["ETag"]
                return None
            found = self._read_lock_object(holder.state_id)
            if found is None:
                continue  # released in between
            current, etag = found
            if (current.heartbeat_age or 0) <= timeout:
                return current
            try:
                written = self._call(f"taking over {key}", "put_object", expected=_LOST_RACE, Key=key,
                                     Body=self._lock_body(holder), IfMatch=etag)  # fmt: skip
            except ClientError:
                continue  # another run took it over first
            self._etags[holder.token] = written["ETag"]
            return None
        found = self._read_lock_object(holder.state_id)
        return found[0] if found else None

    def refresh_lock(self, holder: LockHolder) -> bool:
        from botocore.exceptions import ClientError

        etag = self._etags.get(holder.token)
        if etag is None:
            return False
        key = self._key(holder.state_id, LOCK_SUFFIX)
        try:
            written = self._call(f"refreshing {key}", "put_object", expected=_LOST_RACE, Key=key,
                                 Body=self._lock_body(holder), IfMatch=etag)  # fmt: skip
        except ClientError:
            self._etags.pop(holder.token, None)
            return False
        self._etags[holder.token] = written["ETag"]
        return True

    def release_lock(self, holder: LockHolder) -> None:
        from botocore.exceptions import ClientError

        etag = self._etags.pop(holder.token, None)
        if etag is None:
            return
        key = self._key(holder.state_id, LOCK_SUFFIX)
        try:
            self._call(f"unlocking {key}", "delete_object", expected=_LOST_RACE | {"NotImplemented", "501"},
                       Key=key, IfMatch=etag)  # fmt: skip
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NotImplemented", "501"):
                # A store without conditional deletes: check, then delete (a narrow race, best effort).
                found = self._read_lock_object(holder.state_id)
                if found is not None and found[1] == etag:
                    self._call(f"unlocking {key}", "delete_object", Key=key)

    def read_lock(self, state_id: str) -> LockHolder | None:
        found = self._read_lock_object(state_id)
        return found[0] if found else None

    def _read_lock_object(self, state_id: str) -> tuple[LockHolder, str] | None:
        from botocore.exceptions import ClientError

        key = self._key(state_id, LOCK_SUFFIX)
        try:
            response = self._call(f"reading {key}", "get_object", expected={"NoSuchKey", "404"}, Key=key)
        except ClientError:
            return None
        raw = response["Body"].read()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        return LockHolder.from_json(data, state_id, _age(response, data)), response["ETag"]


def _age(response: dict[str, Any], data: dict[str, Any]) -> float:
    """Seconds since the lock object was written, by the server's clock when it tells its time."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    modified = response.get("LastModified")
    if date and modified is not None:
        try:
            return max(0.0, (parsedate_to_datetime(date) - modified).total_seconds())
        except (TypeError, ValueError):
            pass
    heartbeat = data.get("heartbeat")
    return max(0.0, time.time() - float(heartbeat)) if isinstance(heartbeat, int | float) else 0.0
