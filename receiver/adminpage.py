"""`GET /admin`: the operator's status page (static HTML + a little JS polling `/admin/status`).

Same secret as the admin API: a bearer token, or the `shopsync_admin` cookie that the login form
sets (HttpOnly, SameSite=Strict, Secure behind HTTPS), which `receiver.admin.require_token`
accepts. The page's data comes only from `/admin/status`; the static files hold no data.
"""

from __future__ import annotations

import hmac
from functools import cache
from pathlib import Path

from aiohttp import web

from receiver.appkeys import ADMIN_TOKEN
from receiver.problems import problem

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "shopsync_admin"
COOKIE_MAX_AGE_S = 12 * 3600
_TYPES = {".css": "text/css", ".js": "text/javascript", ".html": "text/html"}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


@cache
def _file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _token_ok(request: web.Request, given: str) -> bool:
    expected = request.app[ADMIN_TOKEN]
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _html(name: str, status: int = 200, message: str = "") -> web.Response:
    body = _file(name).replace(b"{{message}}", message.encode())
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS)


async def page(request: web.Request) -> web.StreamResponse:
    if not request.app[ADMIN_TOKEN]:
        return problem(503, "admin API disabled: set ADMIN_TOKEN")
    given = request.headers.get("Authorization", "")
    token = given[7:] if given.startswith("Bearer ") else request.cookies.get(COOKIE, "")
    if _token_ok(request, token):
        return _html("admin.html")
    return _html("login.html", 401 if token else 200, "Wrong or expired token." if token else "")


async def login(request: web.Request) -> web.StreamResponse:
    if not request.app[ADMIN_TOKEN]:
        return problem(503, "admin API disabled: set ADMIN_TOKEN")
    form = await request.post()
    token = str(form.get("token", ""))
    if not _token_ok(request, token):
        return _html("login.html", 401, "Wrong token.")
    response = web.Response(status=303, headers={"Location": "/admin"})
    secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.Response(status=303, headers={"Location": "/admin"})
    response.del_cookie(COOKIE, path="/admin")
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    suffix = Path(name).suffix
    if suffix not in (".css", ".js") or not (STATIC / name).is_file():
        return problem(404, "not found")
    return web.Response(body=_file(name), content_type=_TYPES[suffix], headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin", page)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_get(r"/admin/static/{name:[a-z0-9-]+\.(css|js)}", static)
