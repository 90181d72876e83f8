"""The receiver and the worker refuse to start with an invalid installations file: exit 1, one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.keys import Keys
from tests.ops.helpers import DEMO, cli_env, run_cli


def _broken_files(tmp: Path) -> list[tuple[Path, dict[str, str], str]]:
    """(file, extra env, the one line after 'shopsync <process>: ')."""
    demo = DEMO.read_text()
    secret = tmp / "secret.toml"
    secret.write_text(demo.replace('"shpat_sandbox_token"', '"${SHOPIFY_ACCESS_TOKEN}"'))
    bad_op = tmp / "bad-op.toml"
    bad_op.write_text(demo.replace('op = "contains"', 'op = "like"'))
    syntax = tmp / "syntax.toml"
    syntax.write_text("[[shop]\n")
    missing = tmp / "missing.toml"
    return [
        (secret, {}, f"{secret}: shop[0].access_token: environment variable SHOPIFY_ACCESS_TOKEN is not set"),
        (
            bad_op,
            {},
            f"{bad_op}: shop[0].section[1].conditions[0].op: unknown condition operator 'like' (known: contains,"
            " eq, exists, gt, gte, in, lt, lte, ne, not_contains, not_in)",
        ),
        (missing, {}, f"{missing}: (file): no such file"),
        (syntax, {}, ""),  # the TOML parser's own words; checked for shape only
    ]


@pytest.mark.parametrize("process", ["receiver", "worker"])
async def test_refuses_to_start_with_a_bad_installations_file(
    process: str, tmp_path: Path, redis_url: str, keys: Keys
) -> None:
    for path, extra, expected in _broken_files(tmp_path):
        env = cli_env(redis_url, keys, path, PORT="0", **extra)
        env.pop("SHOPIFY_ACCESS_TOKEN", None)
        done = await run_cli([process], env, timeout_s=60)
        assert done.code == 1, (path, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        if expected:
            assert lines[0] == f"shopsync {process}: {expected}"
        else:
            assert lines[0].startswith(f"shopsync {process}: {path}: (syntax): ")
