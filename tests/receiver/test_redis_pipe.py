"""The receiver's pipelined Redis connection: replies matched in order, every failure reported to
every waiting command, and the settings (password, database, TLS) taken from the redis-py client."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
import redis.asyncio as aioredis
import uvloop

from core.jobs import webhook_job_bytes
from core.keys import Keys
from core.redis_conn import connect
from receiver.enqueue import BatchEnqueuer, EnqueueError
from receiver.redis_pipe import RedisAddress, RedisPipe, RedisUnavailable
from shopsync.devredis import free_port, redis_server_binary


def call(pipe: RedisPipe, *command: Any) -> asyncio.Future[Any]:
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pipe.send(command, reply.set_result)
    return reply


def pipe_for(url: str, **options: Any) -> RedisPipe:
    return RedisPipe(RedisAddress.of_client(connect(url, **options)))


@contextmanager
def redis_server(*args: str, ready_url: str, **ready_options: Any) -> Iterator[None]:
    """A private redis-server with extra arguments (password, TLS), stopped afterwards."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server")
    proc = subprocess.Popen(
        [binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip(f"redis-server refused {args}")  # e.g. built without TLS
            try:
                client = redis.Redis.from_url(ready_url, socket_timeout=0.5, **ready_options)
                if client.ping():
                    client.close()
                    break
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_replies_come_back_in_order_on_both_event_loops(
    redis_url: str, keys: Keys, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    # The receiver runs on uvloop, whose transports are not asyncio.Transport instances.
    async def scenario() -> None:
        pipe = pipe_for(redis_url)
        key = f"{keys.prefix}:counter"
        replies = [call(pipe, "INCR", key) for _ in range(500)]  # all written before any reply
        assert await asyncio.gather(*replies) == list(range(1, 501))
        assert await call(pipe, "DEL", key) == 1
        error = await call(pipe, "NOSUCHCOMMAND")
        assert isinstance(error, hiredis.ReplyError)
        assert await call(pipe, "PING") == b"PONG"  # an error reply does not upset the order
        await pipe.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario())


async def test_password_and_database_come_from_the_url(keys: Keys) -> None:
    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/3"
    with redis_server("--port", str(port), "--requirepass", "s3cret", ready_url=url):
        pipe = pipe_for(url)
        assert await call(pipe, "SET", f"{keys.prefix}:k", "v") == b"OK"
        db3, db0 = redis.Redis.from_url(url), redis.Redis.from_url(url.replace("/3", "/0"))
        assert (db3.get(f"{keys.prefix}:k"), db0.get(f"{keys.prefix}:k")) == (b"v", None)
        db3.close()
        db0.close()
        await pipe.close()

        wrong = pipe_for(url.replace("s3cret", "wrong"))
        failure = await call(wrong, "PING")
        assert isinstance(failure, RedisUnavailable) and "AUTH" in str(failure)
        await wrong.close()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "redis.crt", folder / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=redis.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_rediss_with_a_self_signed_certificate_like_heroku(
    self_signed: tuple[Path, Path], keys: Keys
) -> None:
    cert, key = self_signed
    port = free_port()
    url = f"rediss://127.0.0.1:{port}/0"
    tls_args = ("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")  # fmt: skip
    with redis_server(*tls_args, ready_url=url, ssl_cert_reqs="none"):
        pipe = pipe_for(url)  # core.redis_conn.connect turns certificate checks off for rediss://
        assert await call(pipe, "SET", f"{keys.prefix}:tls", "yes") == b"OK"
        assert await call(pipe, "GET", f"{keys.prefix}:tls") == b"yes"
        await pipe.close()


async def start_fake(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_no_reply_within_the_timeout_fails_what_waits_and_the_next_command_reconnects() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await reader.read(1000)  # a hung Redis: takes the command, never answers
            await asyncio.sleep(5)
        else:
            await reader.read(1000)
            writer.write(b"+PONG\r\n")
            await writer.drain()
            await asyncio.sleep(1)
        writer.close()

    server, port = await start_fake(handle)
    async with server:
        pipe = pipe_for(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        started = time.monotonic()
        first, second = call(pipe, "PING"), call(pipe, "PING")
        failures = await asyncio.gather(first, second)
        assert all(isinstance(f, RedisUnavailable) for f in failures)
        assert "no reply" in str(failures[0])
        assert time.monotonic() - started < 3
        assert await call(pipe, "PING") == b"PONG"
        assert connections == 2
        await pipe.close()


async def test_a_connection_closed_mid_command_fails_it_and_garbage_is_not_taken_for_a_reply() -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.write(b"?not redis\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    for handler, reason in ((close_at_once, "connection"), (garbage, "unreadable")):
        server, port = await start_fake(handler)
        async with server:
            pipe = pipe_for(f"redis://127.0.0.1:{port}/0", timeout=2.0)
            failure = await asyncio.wait_for(call(pipe, "PING"), 5)
            assert isinstance(failure, RedisUnavailable) and reason in str(failure)
            await pipe.close()


async def test_a_reply_to_no_command_drops_the_connection_and_the_next_command_reconnects() -> None:
    connections = 0

    async def answers_twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await reader.read(1000):
            writer.write(b"+PONG\r\n+EXTRA\r\n" if connections == 1 else b"+PONG\r\n")
            await writer.drain()
        writer.close()

    server, port = await start_fake(answers_twice)
    async with server:
        pipe = pipe_for(f"redis://127.0.0.1:{port}/0", timeout=2.0)
        assert await call(pipe, "PING") == b"PONG"
        await asyncio.sleep(0.1)  # the extra reply arrives: the connection can no longer be trusted
        assert await call(pipe, "PING") == b"PONG"
        assert connections == 2
        await pipe.close()


async def test_nothing_listening_fails_every_queued_command() -> None:
    pipe = pipe_for(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    failures = await asyncio.gather(*(call(pipe, "PING") for _ in range(5)))
    assert all(isinstance(f, RedisUnavailable) and "cannot connect" in str(f) for f in failures)
    await pipe.close()
    after_close = await call(pipe, "PING")
    assert isinstance(after_close, RedisUnavailable)


async def test_a_failing_callback_does_not_shift_the_replies_behind_it(redis_url: str) -> None:
    pipe = pipe_for(redis_url)

    def explode(reply: Any) -> None:
        raise RuntimeError("callback bug")

    pipe.send(("PING",), explode)
    assert await call(pipe, "ECHO", "second") == b"second"
    await pipe.close()


# --- the enqueuer over the pipe ------------------------------------------------------------


def job(webhook_id: str) -> bytes:
    return webhook_job_bytes(
        "sync_customer", topic="customers/update", shop="s.myshopify.com", webhook_id=webhook_id,
        event_id=None, triggered_at=None, api_version="2024-10", received_at=time.time(), body="{}",
    )  # fmt: skip


async def test_enqueue_survives_a_flushed_script_cache(redis: aioredis.Redis, keys: Keys) -> None:
    enqueuer = BatchEnqueuer(RedisPipe(RedisAddress.of_client(redis)), keys, keys.realtime_queue)
    assert await enqueuer.enqueue("s:1", job("1")) is True
    await redis.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    results = await asyncio.gather(*(enqueuer.enqueue(f"s:{i}", job(str(i))) for i in range(1, 4)))
    assert results == [False, True, True]
    assert await redis.zcard(keys.realtime_queue) == 3
    await enqueuer.close()


async def test_redis_refusing_the_write_fails_the_batch(keys: Keys) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_server(
        "--port", str(port), "--maxmemory", "1", "--maxmemory-policy", "noeviction", ready_url=url
    ):
        client = aioredis.Redis.from_url(url)
        enqueuer = BatchEnqueuer(RedisPipe(RedisAddress.of_client(client)), keys, keys.realtime_queue)
        with pytest.raises(EnqueueError, match="OOM"):
            await enqueuer.enqueue("s:oom", job("oom"))
        await enqueuer.close()
        assert await client.zcard(keys.realtime_queue) == 0
        await client.aclose()


async def test_close_waits_for_every_delivery_taken(redis: aioredis.Redis, keys: Keys) -> None:
    enqueuer = BatchEnqueuer(
        RedisPipe(RedisAddress.of_client(redis)), keys, keys.realtime_queue, max_batch=4, max_in_flight=1
    )
    futures = [enqueuer.enqueue(f"s:c{i}", job(f"c{i}")) for i in range(40)]
    await enqueuer.close()
    assert all(f.done() and f.result() is True for f in futures)
    assert await redis.zcard(keys.realtime_queue) == 40
