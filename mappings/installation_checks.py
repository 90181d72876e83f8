"""Reading one value of the installations file: type checks, `${NAME}` interpolation, error keys.

`ParseContext` carries the file's name and the environment through a parse, so every mistake it
reports is one `InstallationError` naming the file, the full key and the reason; its readers
(`string`, `number`, `boolean`, `choice`, `table`, `only`) check one value each and interpolate
`${NAME}` references from the environment. `join_key` builds the dotted key an error names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mappings.installation import InstallationError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ParseContext:
    """Carries the source name and environment through the parse so errors can name both."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source, self.env = source, env
        self.warnings: list[str] = []

    def warn(self, key: str, reason: str) -> None:
        """A key that is accepted but has no effect: one line, in the same form as an error."""
        self.warnings.append(f"{self.source}: {key}: {reason}")

    def fail(self, key: str, reason: str) -> InstallationError:
        return InstallationError(self.source, key, reason)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a table, not {type_name(value)}")
        return value

    def only(self, table: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
        for name in table:
            if name not in allowed:
                raise self.fail(join_key(key, name), f"unknown key (allowed: {', '.join(allowed)})")

    def string(self, table: Mapping[str, Any], key: str, name: str, default: str | None = None) -> str:
        full = join_key(key, name)
        if name not in table:
            if default is not None:
                return default
            raise self.fail(full, "missing required key")
        value = table[name]
        if not isinstance(value, str):
            raise self.fail(full, f"must be a string, not {type_name(value)}")
        value = self.interpolate(value, full)
        if not value.strip():
            raise self.fail(full, "must not be empty")
        return value

    def number(
        self, table: Mapping[str, Any], key: str, name: str, default: float, minimum: float = 0
    ) -> float:
        full = join_key(key, name)
        value = table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(full, f"must be a number, not {type_name(value)}")
        if value <= minimum:
            raise self.fail(full, f"must be greater than {minimum:g}")
        return float(value)

    def boolean(self, table: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(join_key(key, name), f"must be true or false, not {type_name(value)}")
        return value

    def choice(self, table: Mapping[str, Any], key: str, name: str, options: Sequence[str]) -> str:
        value = self.string(table, key, name, default=options[0])
        if value not in options:
            raise self.fail(join_key(key, name), f"must be one of {', '.join(options)}, not {value!r}")
        return value

    def interpolate(self, value: str, key: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.env:
                raise self.fail(key, f"environment variable {name} is not set")
            return self.env[name]

        return _ENV_REF.sub(replace, value)


def join_key(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
