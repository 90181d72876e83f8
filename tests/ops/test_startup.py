"""The receiver and the worker refuse to start with an invalid installations file: exit 1, one line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core.keys import Keys
from tests.ops.helpers import DEMO, ROOT, cli_env, run_cli


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_worker_names_an_unreachable_redis_in_one_line(tmp_path: Path, keys: Keys) -> None:
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"  # nothing listens there
    done = await run_cli(["worker"], cli_env(url, keys, DEMO), timeout_s=60)
    assert done.code == 1
    last = done.stderr.strip().splitlines()[-1]  # after arq's own retry warnings
    assert last.startswith("shopsync worker: Redis at redis://***@127.0.0.1:") and "is not answering" in last
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


async def test_the_worker_names_a_missing_token_key_in_one_line(redis_url: str, keys: Keys) -> None:
    env = cli_env(redis_url, keys, ROOT / "mappings" / "example.toml", SHOPIFY_CLIENT_ID="a")
    env.update(SHOPIFY_CLIENT_SECRET="b", APSIS_CLIENT_ID="c", APSIS_CLIENT_SECRET="d")
    env.pop("SHOPSYNC_TOKEN_KEY", None)
    done = await run_cli(["worker"], env, timeout_s=60)
    assert done.code == 1
    assert done.stderr.strip().splitlines() == [
        "shopsync worker: SHOPSYNC_TOKEN_KEY is not set: shops that mint their Shopify tokens need it to"
        " encrypt them at rest (a Fernet key, or a random secret of at least 32 characters)"
    ]


@pytest.mark.parametrize(
    ("process", "extra", "line"),
    [
        (
            "worker",
            {"SHOPSYNC_SHUTDOWN_GRACE_S": "abc"},
            "SHOPSYNC_SHUTDOWN_GRACE_S must be an integer of at least 0, not 'abc'",
        ),
        (
            "status",
            {"REDIS_URL": "http://127.0.0.1:6379"},
            "REDIS_URL must start with redis://, rediss://, unix://",
        ),
        ("receiver", {"PORT": "99999"}, "PORT must be a port number from 0 to 65535, not '99999'"),
        (
            "status",
            {"LOG_LEVEL": "bogus"},
            "LOG_LEVEL must be one of debug, info, warning, error, critical, notset",
        ),
    ],
)
async def test_bad_settings_stop_a_command_with_one_line(
    process: str, extra: dict[str, str], line: str, redis_url: str, keys: Keys
) -> None:
    done = await run_cli([process], cli_env(redis_url, keys, DEMO, **extra), timeout_s=60)
    assert done.code == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"shopsync: {line}")


async def test_the_receiver_names_a_busy_port_in_one_line(redis_url: str, keys: Keys) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await run_cli(["receiver"], cli_env(redis_url, keys, DEMO, PORT=str(port)), timeout_s=60)
    assert done.code == 1
    assert done.stderr.strip().splitlines() == [
        f"shopsync receiver: cannot listen on 0.0.0.0:{port}: error while attempting to bind on address"
        f" ('0.0.0.0', {port}): address already in use"
    ]
