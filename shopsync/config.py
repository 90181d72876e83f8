"""Load the installations file (I/O) and hand it to the pure parser in `mappings`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping

from mappings.installation import InstallationError, Installations, parse_installations


def load_installations(path: str, env: Mapping[str, str] | None = None) -> Installations:
    """Read and validate `path`; raise InstallationError with one line naming file, key, reason."""
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise InstallationError(path, "(file)", "no such file") from None
    except OSError as exc:
        raise InstallationError(path, "(file)", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InstallationError(path, "(syntax)", str(exc)) from None
    return parse_installations(document, os.environ if env is None else env, source=path)
