"""The `aws` backend: AWS Secrets Manager, through boto3.

    secrets:
      aws: {region: eu-west-1, prefix: elt/, profile: prod, endpoint_url: http://127.0.0.1:4566}

`${secret:aws:db}` reads the secret `elt/db` (its SecretString, or its SecretBinary as UTF-8);
`${secret:aws:db#password}` the field `password` of the JSON object it holds, as the console writes
key/value secrets. Credentials come from boto3's usual chain (environment, profile, instance role).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from elt.errors import SecretError
from elt.secrets.backend import select_field, split_field


class AwsBackend:
    name = "aws"
    cacheable = True

    def __init__(
        self,
        region: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "",
        profile: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        self.region = region
        self.endpoint_url = endpoint_url
        self.prefix = prefix
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            self.client = session.client(
                "secretsmanager",
                endpoint_url=endpoint_url,
                config=Config(
                    connect_timeout=5, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"}
                ),
            )
        except BotoCoreError as error:
            raise SecretError(
                f"AWS Secrets Manager: {error}",
                hint="set `secrets.aws.region` (and a profile or credentials) for the `aws` backend",
            ) from None
        self.region = self.client.meta.region_name

    @classmethod
    def from_settings(
        cls, root: Path, settings: Mapping[str, Any], variables: Mapping[str, str]
    ) -> AwsBackend:
        def text(key: str) -> str | None:
            value = settings.get(key)
            return str(value) if value not in (None, "") else None

        return cls(text("region"), text("endpoint_url"), text("prefix") or "", text("profile"))

    def get(self, name: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        secret_id, field = split_field(name)
        full = self.prefix + secret_id
        try:
            answer = self.client.get_secret_value(SecretId=full)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return None
            message = error.response.get("Error", {}).get("Message", "")
            raise SecretError(f"{self.describe()} refused to give '{full}': {code}: {message}") from None
        except BotoCoreError as error:
            raise SecretError(f"cannot read '{full}' from {self.describe()}: {error}") from None
        if "SecretString" in answer:
            text = str(answer["SecretString"])
        else:
            text = bytes(answer["SecretBinary"]).decode("utf-8", "replace")
        return select_field(text, field, f"AWS secret '{full}'")

    def describe(self) -> str:
        where = f"{self.region}" + (f", {self.endpoint_url}" if self.endpoint_url else "")
        return f"AWS Secrets Manager ({where})"

    def hint(self, name: str) -> str:
        secret_id, field = split_field(name)
        value = f'\'{{"{field}": "…"}}\'' if field else "…"
        name = f"{self.prefix}{secret_id}"
        return f"create it: aws secretsmanager create-secret --name {name} --secret-string {value}"
