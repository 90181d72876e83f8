"""Security: the HMAC comparisons are constant-time, admin routes answer 401 without the token
and 503 when none is configured, and no log line of the whole run holds a secret, an access
token, or a raw email address or phone number."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import aiohttp

from receiver import admin, signature
from reliability.report import Result
from reliability.stack import DOMAIN, RunContext, StackConfig, stack

ADMIN_TOKEN = "reliability-admin-token-4f1c9a"
EMAIL = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+\d{8,15}")
ADMIN_ROUTES = (("GET", "/admin/status"), ("POST", f"/admin/shops/{DOMAIN}/full-sync"))


def compare_digest_calls(module: object) -> tuple[int, list[str]]:
    """`hmac.compare_digest` calls in the module, and any `==`/`!=` on a digest-looking name."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    calls = 0
    suspicious: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "compare_digest":
            calls += 1
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            text = ast.unparse(node)
            if re.search(r"(digest|hmac|signature|expected|token|given)", text, re.I) and "None" not in text:
                suspicious.append(text)
    return calls, suspicious


async def _admin_answers(url: str, token: str | None) -> dict[str, int]:
    answers: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for method, path in ADMIN_ROUTES:
            for label, headers in (
                ("none", {}),
                ("wrong", {"Authorization": "Bearer wrong-token"}),
                ("right", {"Authorization": f"Bearer {token}"} if token else {}),
            ):
                async with http.request(method, url + path, headers=headers) as response:
                    answers[f"{method} {path} {label}"] = response.status
    return answers


async def admin_and_hmac(run: RunContext) -> Result:
    result = Result("admin-and-hmac", faults="no/wrong admin token")
    for module in (signature, admin):
        calls, suspicious = compare_digest_calls(module)
        result.expect(calls > 0, f"{module.__name__} does not use hmac.compare_digest")
        for text in suspicious:
            result.fail(f"{module.__name__}: non-constant-time comparison {text}")
    config = StackConfig(customers=10, workers=0)
    async with stack(run, "admin-unset", config) as s:
        unset = await _admin_answers(s.receiver_url(), None)
    config = StackConfig(customers=10, workers=0, admin_token=ADMIN_TOKEN)
    async with stack(run, "admin-set", config) as s:
        configured = await _admin_answers(s.receiver_url(), ADMIN_TOKEN)
    for route, status in unset.items():
        result.expect(status == 503, f"without ADMIN_TOKEN {route} answered {status} (want 503)")
    for route, status in configured.items():
        want = 401 if not route.endswith("right") else (200, 202)
        ok = status == want if isinstance(want, int) else status in want
        result.expect(ok, f"with ADMIN_TOKEN {route} answered {status} (want {want})")
    result.inputs = len(unset) + len(configured)
    result.figures.update(admin_unset=unset, admin_set=configured)
    result.load = f"{result.inputs} admin requests"
    return result


def scan_logs(log_dir: Path, secrets: set[str], emails: set[str], phones: set[str]) -> tuple[int, list[str]]:
    """Every log line of every process: (lines read, findings)."""
    findings: list[str] = []
    lines = 0
    secret_re = re.compile(
        "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True) if len(s) >= 8)
    )
    for path in sorted(log_dir.rglob("*.log")):
        if path.parent.name.endswith("-redis"):
            continue
        with path.open("r", errors="replace") as f:
            for n, line in enumerate(f, 1):
                lines += 1
                where = f"{path.name}:{n}"
                if secrets and (m := secret_re.search(line)):
                    findings.append(f"{where}: secret {m.group(0)[:4]}...")
                for m in EMAIL.finditer(line):
                    known = " (a store customer's)" if m.group(0) in emails else ""
                    findings.append(f"{where}: raw email{known}")
                for m in PHONE.finditer(line):
                    known = " (a store customer's)" if m.group(0) in phones else ""
                    findings.append(f"{where}: raw phone{known}")
    return lines, findings


async def log_scan(run: RunContext) -> Result:
    """Last in the run: reads the logs of every process every scenario started."""
    result = Result("log-scan", faults="-")
    lines, findings = scan_logs(run.log_dir, run.secrets, run.emails, run.phones)
    result.inputs = lines
    result.load = f"{lines:,} log lines"
    result.figures.update(
        log_lines=lines,
        secrets_known=len(run.secrets),
        emails_known=len(run.emails),
        phones_known=len(run.phones),
        findings=len(findings),
    )
    result.expect(lines > 0, "no log lines to scan")
    for finding in findings[:10]:
        result.fail(finding)
    return result
