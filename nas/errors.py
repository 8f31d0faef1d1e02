"""Errors a user can fix: each is caught once, at the CLI, printed as one line, exit code 2."""
from __future__ import annotations


class ConfigError(ValueError):
    """A study config or command-line value that cannot be used; the message names the field."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every package's user-facing exception type."""
    from evaluators.errors import DatasetError
    from search_space.errors import GenomeError

    return (ConfigError, GenomeError, DatasetError)
