"""Load the installations file for a command: read it (`core.config`), parse it (`mappings`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from core.config import ConfigFileError, read_config_file
from mappings.installation import InstallationError, Installations
from mappings.installation_parse import parse_installations_toml


def load_installations(path: str, env: Mapping[str, str] | None = None) -> Installations:
    """Read and validate `path`; raise InstallationError with one line naming file, key, reason."""
    try:
        text = read_config_file(path)
    except ConfigFileError as exc:
        raise InstallationError(exc.source, exc.key, exc.reason) from None
    return parse_installations_toml(text, os.environ if env is None else env, source=path)


def warn_installations(installations: Installations, out: TextIO | None = None) -> None:
    """One `shopsync: warning:` line per key the file has that is accepted but ignored (stderr)."""
    for line in installations.warnings:
        print(f"shopsync: warning: {line}", file=out or sys.stderr)


def unknown_shop(domain: str, path: str, installations: Installations) -> str:
    """The one line for a domain the installations file does not have, naming those it has."""
    known = ", ".join(sorted(installations.shops)) or "none"
    return f"no shop {domain!r} in {path} (shops: {known})"
