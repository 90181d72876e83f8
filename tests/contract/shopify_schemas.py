"""Shopify's published Admin GraphQL schemas, fetched at test time and cached (never committed).

The npm package `@shopify/dev-mcp` ships `dist/data/admin_<version>.json.gz`, the introspection
result of each supported version. `admin_schema(version)` fetches the package once with the npm
client (`npm pack`, into `.cache/shopify-schema/`, ignored by git) and builds the schema with
`graphql.build_client_schema`. The published schemas carry deprecated interface fields that
graphql-core's schema validation rejects, so the schema is built with `assume_valid=True` and only
documents are validated (`graphql.validate`). Without npm or the registry the caller skips.
"""

from __future__ import annotations

import fcntl
import functools
import gzip
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from graphql import GraphQLSchema, build_client_schema

PACKAGE = "@shopify/dev-mcp"
# Pinned: a later release drops the versions Shopify no longer supports, and these tests must not
# change with the registry. Adding a version to SUPPORTED means moving the pin to a release that
# ships it (`npm view @shopify/dev-mcp version`).
PACKAGE_VERSION = "1.16.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "shopify-schema"
SUPPORTED = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
NEWEST = "2026-10"


class SchemaUnavailableError(RuntimeError):
    """npm or the registry could not provide the package; the reason is the message."""


class SchemaMissingError(RuntimeError):
    """The package came without a version of SUPPORTED (the tests fail: never a silent skip)."""


def _data_dir() -> Path:
    data = CACHE / "package" / "dist" / "data"
    if _complete(data):
        return data
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaUnavailableError("npm is not installed: cannot fetch @shopify/dev-mcp")
    CACHE.mkdir(parents=True, exist_ok=True)
    # Test processes (pytest-xdist) may all get here on a fresh clone: one fetches, the others
    # wait, and the files appear at once (extracted aside, then renamed), never half written.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(data):
            _fetch(npm)
    missing = [v for v in SUPPORTED if not (data / f"admin_{v}.json.gz").is_file()]
    if missing:  # the package came: a failure, not a skip (SUPPORTED and the pin disagree)
        raise SchemaMissingError(
            f"{PACKAGE}@{PACKAGE_VERSION} has no admin schema for {', '.join(missing)}: move the pin"
        )
    return data


def _complete(data: Path) -> bool:
    """The cache holds the pinned release (a cache of another is fetched again) and every version."""
    marker = data.parent.parent / "PINNED"
    pinned = marker.is_file() and marker.read_text().strip() == PACKAGE_VERSION
    return pinned and all((data / f"admin_{v}.json.gz").is_file() for v in SUPPORTED)


def _fetch(npm: str) -> None:
    try:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--json", "--pack-destination", str(CACHE)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SchemaUnavailableError(f"npm pack {PACKAGE} failed: {exc}") from exc
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SchemaUnavailableError(f"npm pack {PACKAGE} failed (registry unreachable?): {reason[0]}")
    filename = json.loads(done.stdout)[0]["filename"].replace("@", "").replace("/", "-")
    tarball = CACHE / filename
    aside = Path(tempfile.mkdtemp(dir=CACHE))
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith("package/dist/data/admin_")]
        archive.extractall(aside, members=members, filter="data")
    tarball.unlink()
    (aside / "package" / "PINNED").write_text(PACKAGE_VERSION)
    shutil.rmtree(CACHE / "package", ignore_errors=True)
    (aside / "package").rename(CACHE / "package")
    shutil.rmtree(aside, ignore_errors=True)


@functools.cache
def admin_schema(version: str) -> GraphQLSchema:
    raw = json.loads(gzip.decompress((_data_dir() / f"admin_{version}.json.gz").read_bytes()))
    return build_client_schema(raw.get("data", raw), assume_valid=True)
