"""The one exception family of elt.

A user error (bad project file, unknown plugin, wrong arguments) exits with code 2; a failure at run time
(a connector or dbt model failed) exits with code 1. Every message names the file/line/key/stream at fault
and what was expected, so that it can be acted on without a traceback.
"""

from __future__ import annotations


class EltError(Exception):
    """Base of every error elt reports to a user."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ProjectError(EltError):
    """The project file is missing, unreadable or invalid."""


class ValidationError(ProjectError):
    """One or more problems found by validating the project file; each is a located message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PluginError(EltError):
    """A plugin is unknown, not installed or misconfigured."""


class StateError(EltError):
    """A state id or state document is unknown or malformed."""


class RunError(EltError):
    """A step failed while running (connector exited non-zero, dbt model failed, shell step failed)."""

    exit_code = 1


class LockedError(RunError):
    """Another run holds the lock of the same state id."""


class SecretError(EltError):
    """A `${secret:…}` cannot be resolved: unknown backend, missing secret, wrong key, backend unreachable."""
