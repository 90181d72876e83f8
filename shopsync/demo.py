"""`make run`: the whole service on the sandboxes, then live traffic, until Ctrl-C.

1. the sandbox (a Shopify store with a few thousand customers and steady activity, an APSIS One
   account), the receiver and a worker, each a `shopsync` subprocess in its own process group;
   the store is connected through the client credentials grant, as the sandbox's Dev Dashboard
   app (`installation_file`), its token minted and kept encrypted in Redis;
2. `shopsync install` registers the webhooks in the sandbox store (and checks the installation);
3. a full sync with a progress bar;
4. what flows, live: webhooks in, profiles written, consent changes, email changes, purchase
   events; and where to look (`/admin`, `shopsync status`).

Ctrl-C (or SIGTERM) stops the children in order (worker, receiver, sandbox), each with SIGTERM to
its process group, then SIGKILL after a grace period; on Linux the children also get SIGTERM
should this process die without cleaning up (PR_SET_PDEATHSIG), so none is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from core import fullsync_control as control
from core.keys import Keys
from core.logging import mask_email
from core.redis_conn import connect
from core.shopify_auth import TokenCipher
from shopsync import fullsync_cli
from shopsync.demo_files import DEMO_BULK_EXPORT, installation_file

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "demo-store.myshopify.com"
ADMIN_TOKEN = "demo"
DEFAULT_PREFIX = "shopsync-demo"
STOP_GRACE_S = 25.0  # the worker lets running jobs finish for SHOPSYNC_SHUTDOWN_GRACE_S
LIVE_EVERY_S = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shopsync.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--activity", type=float, default=5.0, help="store changes per second")
    parser.add_argument("--port", type=int, default=8080, help="receiver port")
    parser.add_argument("--shopify-port", type=int, default=8081)
    parser.add_argument("--apsis-port", type=int, default=8082)
    return parser.parse_args(argv)


def say(text: str = "") -> None:
    print(text, flush=True)


# --- child processes --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo process dies (Linux), so no orphan stays."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Children:
    logs: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shopsync.cli", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C in the terminal reaches only the demo, which stops the
            # children in order (the worker first, while Redis and the sandboxes still answer).
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise DemoError(
                    f"the {name} exited with status {proc.returncode}; see {self.logs / name}.log"
                )

    async def stop_all(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is not None:
                continue
            say(f"  stopping the {name} (pid {proc.pid})")
            _signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(proc.wait), STOP_GRACE_S)
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            # Anything else left in its group (nothing, normally) goes too.
            _signal_group(proc, signal.SIGKILL)
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class DemoError(Exception):
    pass


# --- set-up -----------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def forget_previous_run(redis: aioredis.Redis, keys: Keys) -> None:
    """A fresh sandbox needs fresh sync state: drop the demo prefix's keys and queued jobs."""
    for queue in keys.queues:
        for job_id in await redis.zrange(queue, 0, -1):
            jid = job_id.decode()
            await redis.delete(
                f"arq:job:{jid}", f"arq:in-progress:{jid}", f"arq:retry:{jid}", f"arq:result:{jid}"
            )
    async for key in redis.scan_iter(match=f"{keys.prefix}:*", count=1000):
        await redis.delete(key)


async def wait_http(
    session: aiohttp.ClientSession, url: str, children: Children, limit_s: float = 60
) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        children.check_alive()
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(url) as r:
                if r.status == 200:
                    return
        if time.monotonic() > deadline:
            raise DemoError(f"{url} did not answer within {limit_s:.0f} s")
        await asyncio.sleep(0.2)


# --- live view --------------------------------------------------------------------------------


@dataclass
class Live:
    apsis_url: str
    receiver_url: str
    after: int = 0
    emails: dict[str, str] = field(default_factory=dict)  # profile key -> last email written
    totals: Counter[str] = field(default_factory=Counter)
    email_attribute: str = "1001"

    async def webhooks_in(self, session: aiohttp.ClientSession) -> int:
        async with session.get(f"{self.receiver_url}/metrics") as r:
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("shopsync_webhooks_total{") and 'outcome="enqueued"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    async def poll_writes(self, session: aiohttp.ClientSession, *, quiet: bool) -> list[str]:
        """Read the APSIS write log since last time; count kinds; describe email changes."""
        notes: list[str] = []
        while True:
            async with session.get(f"{self.apsis_url}/_sandbox/writes", params={"after": self.after}) as r:
                items = (await r.json())["items"]
            if not items:
                return notes
            for item in items:
                self.after = max(self.after, int(item["seq"]))
                kind = str(item["kind"])
                params = item.get("params") or {}
                self.totals[kind] += 1
                if kind != "attributes":
                    continue
                key = str(params.get("profile_key", "")) if isinstance(params, dict) else ""
                email = (item.get("summary") or {}).get(self.email_attribute)
                if not isinstance(email, str):
                    continue
                old = self.emails.get(key)
                self.emails[key] = email
                if old is not None and old != email:
                    self.totals["email_change"] += 1
                    if not quiet:
                        notes.append(
                            f"  email change   customer {key}: {mask_email(old)} -> {mask_email(email)}"
                            " (the new address got the old one's consents; the old one is opted out)"
                        )


async def show_live(live: Live, session: aiohttp.ClientSession, redis: aioredis.Redis, keys: Keys,
                    children: Children) -> None:  # fmt: skip
    await live.poll_writes(session, quiet=True)  # what the full sync wrote is the baseline
    base = Counter(live.totals)
    base_webhooks = await live.webhooks_in(session)
    say("Live (every 2 s; counts since the full sync ended):")
    while True:
        await asyncio.sleep(LIVE_EVERY_S)
        children.check_alive()
        notes = await live.poll_writes(session, quiet=False)
        for note in notes:
            say(note)
        now = live.totals - base
        queued = int(await redis.zcard(keys.realtime_queue))
        webhooks = await live.webhooks_in(session) - base_webhooks
        say(
            f"{time.strftime('%H:%M:%S')}  webhooks in {webhooks}  ·  profile writes {now['attributes']}"
            f"  ·  consent changes {now['consent']}  ·  email changes {now['email_change']}"
            f"  ·  purchase events {now['events']}  ·  deletions {now['delete']}  ·  queued {queued}"
        )


# --- the run ----------------------------------------------------------------------------------


async def run_demo(args: argparse.Namespace, children: Children, workdir: Path) -> int:
    redis_url = os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
    prefix = os.environ.get("SHOPSYNC_KEY_PREFIX") or DEFAULT_PREFIX
    keys = Keys(prefix)
    for name, port in (("receiver", args.port), ("Shopify sandbox", args.shopify_port),
                       ("APSIS sandbox", args.apsis_port)):  # fmt: skip
        if not _port_free(port):
            raise DemoError(f"port {port} (the {name}) is in use: is another `make run` running?")
    redis = connect(redis_url)
    try:
        try:
            await redis.ping()
        except Exception as exc:
            raise DemoError(f"Redis at {redis_url} does not answer: {exc}") from None
        await forget_previous_run(redis, keys)
        shops_file = installation_file(args, workdir)
        receiver_url = f"http://127.0.0.1:{args.port}"
        shopify_url = f"http://127.0.0.1:{args.shopify_port}"
        apsis_url = f"http://127.0.0.1:{args.apsis_port}"
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SHOPS_FILE": str(shops_file),
            "PORT": str(args.port),
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "SHOPSYNC_KEY_PREFIX": prefix,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info"),
            "PYTHONUNBUFFERED": "1",
            # Ctrl-C should not wait 20 s for full-sync batches: they are re-queued, and idempotent.
            "SHOPSYNC_SHUTDOWN_GRACE_S": "5",
            # The demo store connects through the client credentials grant: its minted token is
            # kept encrypted in Redis, with this run's key unless one is configured.
            "SHOPSYNC_TOKEN_KEY": os.environ.get("SHOPSYNC_TOKEN_KEY") or TokenCipher.generate_key(),
        }
        say(f"shopsync demo  (logs in {children.logs})")
        say(f"  sandbox: a Shopify store with {args.customers} customers, {args.activity:g} changes/s,")
        say("           and an APSIS One account; Shopify connected by the client credentials grant")
        children.start(
            "sandbox",
            ["sandbox", "--customers", str(args.customers), "--activity", str(args.activity),
             "--shopify-port", str(args.shopify_port), "--apsis-port", str(args.apsis_port)],
            env,
        )  # fmt: skip
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await wait_http(session, f"{shopify_url}/_sandbox/state", children)
            await wait_http(session, f"{apsis_url}/_sandbox", children)
            say(f"  receiver: {receiver_url}   worker: both queues")
            children.start("receiver", ["receiver"], env)
            children.start("worker", ["worker"], env)
            await wait_http(session, f"{receiver_url}/readyz", children)

            say("")
            say(f"$ shopsync install {DOMAIN} --address {receiver_url}/webhooks/shopify")
            install = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shopsync.cli", "install", DOMAIN,
                "--address", f"{receiver_url}/webhooks/shopify",
                env={**env, "LOG_LEVEL": "warning"}, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await install.communicate()
            for line in out.decode().splitlines():
                say(f"  {line}")
            if install.returncode != 0:
                raise DemoError("the installation check failed (see above)")

            say("")
            say(f"$ shopsync full-sync {DOMAIN} --wait")
            started = await control.start_full_sync(redis, keys, DOMAIN, bulk=DEMO_BULK_EXPORT)
            say(f"full sync {started.sync_id} started")
            record = await fullsync_cli.watch(redis, keys, started.sync_id)
            say(fullsync_cli.summary(record))

            say("")
            say("Where to look:")
            say(f"  status page   {receiver_url}/admin   (token: {ADMIN_TOKEN})")
            say(
                f"  from a shell  REDIS_URL={redis_url} SHOPSYNC_KEY_PREFIX={prefix} .venv/bin/shopsync status"
            )
            say(f"  metrics       {receiver_url}/metrics")
            say(f"  the sandboxes {shopify_url}/_sandbox/state   {apsis_url}/_sandbox/writes")
            say(f"  logs (JSON)   {children.logs}/worker.log, receiver.log, sandbox.log")
            say("  Ctrl-C stops everything.")
            say("")
            live = Live(apsis_url=apsis_url, receiver_url=receiver_url)
            await show_live(live, session, redis, keys, children)
    finally:
        await redis.aclose()
    return 0


async def amain(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="shopsync-demo-"))
    children = Children(logs=workdir)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run_demo(args, children, workdir))
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    stopper = asyncio.create_task(stop_requested.wait())
    code = 0
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            say("")
            say("Stopping…")
            task.cancel()
            # The children are stopped below whatever the task does with its cancellation.
            await asyncio.wait({task}, timeout=5)
        else:
            code = task.result()  # raises what the demo raised
    except DemoError as exc:
        print(f"shopsync demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stopper.cancel()
        await children.stop_all()
    say("stopped; every process the demo started has exited")
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
