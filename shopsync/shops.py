"""Load the installations file for a command: read it (`core.config`), parse it (`mappings`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

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
