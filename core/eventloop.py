"""The event loop every long-running process uses: uvloop where installed, else asyncio's own."""

from __future__ import annotations

import asyncio


def use_uvloop() -> None:
    """Set uvloop's policy before `asyncio.run` (a faster loop; optional)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
