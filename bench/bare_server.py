"""The baseline of the receiver benchmark: an aiohttp handler that reads the body and answers 200."""

from __future__ import annotations

import argparse

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application(client_max_size=5 * 1024 * 1024)
    app.router.add_post("/webhooks/shopify", handle)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
