"""One pipelined Redis connection for the webhook hot path.

Why not redis-py here: its asyncio client cost the receiver 9-20 us of CPU per webhook at full
load in side-by-side runs (a pool checkout, a Task and a timeout scope per call, health checks),
the largest share of its gap to a bare aiohttp handler (`make bench BENCH_ARGS=receiver`). Redis answers
the commands of one connection in order, so a connection that writes each command at once and
hands the replies to callbacks first in, first out needs no lock, no task and no pool. Replies are
parsed by hiredis, the C parser redis-py uses as well. The settings (address, TLS, password,
database, timeouts) are read from the redis-py client the rest of the receiver uses, so both talk
to the same Redis in the same way.

Failure semantics, which the receiver's "nothing acknowledged that is not stored" rests on: every
command's callback is called exactly once, with the reply, with a `hiredis.ReplyError`, or with a
`RedisUnavailable` when no reply will come (connection refused or lost, or no reply within the
socket timeout, after which the connection is dropped so later replies cannot be mismatched).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
import structlog

log = structlog.get_logger("receiver")

OnReply = Callable[[Any], None]


class RedisUnavailable(ConnectionError):
    """No reply will come for a command: Redis could not be reached, or the connection broke."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int
    unix_path: str | None
    db: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    connect_timeout: float
    reply_timeout: float

    @classmethod
    def of_client(cls, client: aioredis.Redis) -> RedisAddress:
        # A connection object of the client's own pool, never connected: redis-py has already
        # parsed the URL and options (rediss:// certificate settings included) into it.
        conn = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        tls = conn.ssl_context.get() if isinstance(conn, aioredis.SSLConnection) else None
        reply_timeout = float(getattr(conn, "socket_timeout", None) or 5.0)
        return cls(
            host=str(getattr(conn, "host", "localhost")),
            port=int(getattr(conn, "port", 6379)),
            unix_path=getattr(conn, "path", None),
            db=int(conn.db or 0),
            username=conn.username,
            password=conn.password,
            tls=tls,
            connect_timeout=float(getattr(conn, "socket_connect_timeout", None) or reply_timeout),
            reply_timeout=reply_timeout,
        )


class _Connection(asyncio.Protocol):
    """One socket: writes commands, matches replies to callbacks in order."""

    def __init__(self, reply_timeout: float, on_lost: Callable[[_Connection], None]) -> None:
        self._reply_timeout = reply_timeout
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[float, OnReply]] = deque()  # (deadline, callback), in send order
        self._timer: asyncio.TimerHandle | None = None
        self._broken_because = "connection closed"
        self.transport: asyncio.Transport | None = None
        self.lost = False  # set once aborted or closed: nothing more is written here
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            # Notice a silently dropped idle connection (NAT, failover) before a webhook waits on it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def send(self, data: bytes, on_reply: OnReply) -> None:
        if self.lost or self.transport is None:
            on_reply(RedisUnavailable(self._broken_because))
            return
        self.transport.write(data)
        deadline = self._loop.time() + self._reply_timeout
        self._waiting.append((deadline, on_reply))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(f"unreadable reply from Redis: {exc}")
                return
            if reply is False:
                return
            if not self._waiting:
                self.abort("a reply from Redis to no command")
                return
            _, on_reply = self._waiting.popleft()
            _call(on_reply, reply)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        deadline = self._waiting[0][0]
        if self._loop.time() >= deadline:
            # Replies are matched by order only: a late one can no longer be placed. Drop the
            # connection; every command waiting on it fails (and is answered 503 upstream).
            self.abort(f"no reply from Redis within {self._reply_timeout:g} s")
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def abort(self, reason: str) -> None:
        if self.lost:
            return
        self._broken_because = reason
        self.lost = True
        self._on_lost(self)  # the next command opens a new connection at once
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows, which fails what is waiting
        else:
            self._fail_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.lost:
            self._broken_because = f"connection lost: {exc}"
        self.lost = True
        self._on_lost(self)
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = RedisUnavailable(self._broken_because)
        while self._waiting:
            _, on_reply = self._waiting.popleft()
            _call(on_reply, error)


def _call(on_reply: OnReply, reply: Any) -> None:
    # One failing callback must not leave the replies behind it unmatched.
    try:
        on_reply(reply)
    except Exception:
        log.exception("redis_reply_callback_failed")


def _setup_commands(address: RedisAddress) -> list[tuple[Any, ...]]:
    commands: list[tuple[Any, ...]] = []
    if address.password:
        user = (address.username,) if address.username else ()
        commands.append(("AUTH", *user, address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    return commands


class RedisPipe:
    """Sends commands over one connection, (re)connecting on demand.

    `send` never waits: while a connection is being made, commands queue and go out once it is
    ready, or fail together if it cannot be made. A lost connection fails what was in flight and
    the next command connects again."""

    def __init__(self, address: RedisAddress) -> None:
        self._address = address
        self._conn: _Connection | None = None
        self._queued: list[tuple[bytes, OnReply]] = []
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False

    def send(self, command: tuple[Any, ...], on_reply: OnReply) -> None:
        data = hiredis.pack_command(command)
        conn = self._conn
        if conn is not None:
            conn.send(data, on_reply)
            return
        if self._closed:
            on_reply(RedisUnavailable("pipe closed"))
            return
        self._queued.append((data, on_reply))
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            conn = await self._open()
        except Exception as exc:  # whatever it was, the queued commands must hear of it
            reason = f"cannot connect to Redis: {exc or type(exc).__name__}"
            queued, self._queued = self._queued, []
            for _, on_reply in queued:
                _call(on_reply, RedisUnavailable(reason))
            return
        finally:
            self._connecting = None
        self._conn = conn
        queued, self._queued = self._queued, []
        for data, on_reply in queued:
            conn.send(data, on_reply)

    async def _open(self) -> _Connection:
        address, loop = self._address, asyncio.get_running_loop()

        def protocol() -> _Connection:
            return _Connection(address.reply_timeout, self._lost)

        conn: _Connection | None = None
        try:
            async with asyncio.timeout(address.connect_timeout + address.reply_timeout):
                if address.unix_path is not None:
                    _, conn = await loop.create_unix_connection(protocol, address.unix_path)
                else:
                    _, conn = await loop.create_connection(
                        protocol, address.host, address.port, ssl=address.tls
                    )
                for command in _setup_commands(address):
                    reply: asyncio.Future[Any] = loop.create_future()
                    conn.send(hiredis.pack_command(command), reply.set_result)
                    answer = await reply
                    if isinstance(answer, Exception):
                        raise OSError(f"{command[0]} failed: {answer}")
        except BaseException:
            if conn is not None:
                conn.abort("connection setup failed")
            raise
        return conn

    def _lost(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()  # writes what is buffered first
            self._conn = None
