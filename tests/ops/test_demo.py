"""`make run` (python -m shopsync.demo): it gets to the full sync, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import psutil

from core.keys import Keys
from sandbox.shopify.oauth import OAuthConfig
from sandbox.shopify.store import Store
from shopsync.demo import DOMAIN
from shopsync.demo_files import installation_file
from shopsync.devredis import free_port
from shopsync.shops import load_installations
from tests.ops.helpers import ROOT, cli_env


async def test_demo_runs_a_full_sync_and_ctrl_c_stops_every_child(redis_url: str, keys: Keys) -> None:
    ports = [str(free_port()) for _ in range(3)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopsync.demo", "--customers", "300", "--activity", "5",
        "--port", ports[0], "--shopify-port", ports[1], "--apsis-port", ports[2],
        env=cli_env(redis_url, keys, None), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    children: list[psutil.Process] = []
    try:
        async with asyncio.timeout(180):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo ended early:\n" + "".join(seen)
                seen.append(line)
                if line.startswith("full sync ") and line.rstrip().endswith("started"):
                    break
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert len(children) == 3 and all(word in names for word in ("sandbox", "receiver", "worker")), names
        assert "installation OK" in "".join(seen)

        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        async with asyncio.timeout(120):
            rest, _ = await proc.communicate()
        assert proc.returncode == 0, "".join(seen) + rest.decode()
        assert "every process the demo started has exited" in rest.decode()
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for child in children:
            if child.is_running():
                child.kill()


def test_the_demo_store_connects_through_the_client_credentials_grant(tmp_path: Path) -> None:
    args = argparse.Namespace(shopify_port=18081, apsis_port=18082)
    shop = load_installations(str(installation_file(args, tmp_path)), env={}).shops[DOMAIN]
    assert shop.admin_url == "http://127.0.0.1:18081" and shop.apsis.base_url == "http://127.0.0.1:18082"
    assert (shop.auth.mode, shop.auth.client_id) == ("client_credentials", OAuthConfig().client_id)
    assert (
        shop.access_token == "" and shop.auth.client_secret == shop.webhook_secret == Store().webhook_secret
    )
