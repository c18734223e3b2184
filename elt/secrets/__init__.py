"""`${secret:NAME}` in project files: values kept in a secrets backend, resolved when used, masked everywhere.

    secrets:
      backend: env                  # env (default) | store | aws | vault
      aws: {region: eu-west-1, prefix: elt/}
      vault: {url: http://127.0.0.1:8200, mount: secret}

    password: ${secret:DB_PASSWORD}            # from the default backend
    password: ${secret:aws:prod/db#password}   # from AWS Secrets Manager, a field of a JSON secret
    password: ${secret:vault:db#password}      # from Vault KV v2: secret/data/db, field password

References stay as they are in the loaded project (`Project.data`); a value is fetched only where a command
uses the setting (`resolve_secrets`), once per process, and registered with `elt.logs.register_secret`, so
that logs, errors, run records and API answers show `****` in its place. docs/secrets.md tells more.
"""

from elt.secrets.resolve import (
    SecretReference,
    check_references,
    find_references,
    resolve_reference,
    resolve_secrets,
    secrets_settings,
)

__all__ = [
    "SecretReference",
    "check_references",
    "find_references",
    "resolve_reference",
    "resolve_secrets",
    "secrets_settings",
]
