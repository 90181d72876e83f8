"""Read the installations file from disk (the I/O half; `mappings.installation_parse` parses it, purely).

`core` imports none of the other packages, so the two halves meet in the process entry points:
`parse_installations_toml(read_config_file(path), os.environ, source=path)`.
"""

from __future__ import annotations


class ConfigFileError(ValueError):
    """The file cannot be read; `str()` is one line in the installations file's format: file: key: reason."""

    def __init__(self, source: str, reason: str) -> None:
        self.source, self.key, self.reason = source, "(file)", reason
        super().__init__(f"{source}: (file): {reason}")


def read_config_file(path: str) -> str:
    """The file's text, or ConfigFileError naming the path and why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigFileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigFileError(path, exc.strerror or str(exc)) from None
