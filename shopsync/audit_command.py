"""`shopsync audit DOMAIN [--json] [--repair] [--examples N] [--apsis-read auto|reports|profiles]`.

Does APSIS match the store?

Walks the store's customers and their APSIS profiles (`worker.audit`), prints the counts of
missing profiles, extra profiles, differing attributes and differing consents with the first N
examples of each by customer id (never an address), keeps the result for `shopsync status`,
`/admin/status` and `/metrics`, and with `--repair` enqueues ordinary sync jobs for the differing
customers (`worker.audit_repair`; the worker pool runs them). Exit 0 without drift, 1 with drift
or a failure it reports, 2 on bad usage. `--json` prints
`{"customers", "missing", "extra", "attributes", "consent", "examples", ...}` plus `old_address`
(attribute differences where an old address is still opted in), `apsis_read` (how APSIS was
read: `reports`, consent report exports, or `profiles`, one profile at a time) and `skipped`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from mappings.installation import Shop
from shopsync.command_support import fail, print_json
from shopsync.worker_session import CommandFailed, load_shop, with_worker

if TYPE_CHECKING:
    from worker.context import WorkerContext

# Report keys: the kinds as `mappings.audit` names them, and as the JSON report names them.
_JSON_NAMES = {"missing": "missing", "extra": "extra", "attribute": "attributes", "consent": "consent"}


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.examples < 0:
        return fail("--examples must be 0 or more", 2)
    try:
        installations, shop = load_shop(settings, args.domain, warn=not args.json)
        return with_worker(settings, installations, lambda app: _audit(app, shop, args))
    except CommandFailed as exc:
        return fail(str(exc))


async def _audit(app: WorkerContext, shop: Shop, args: argparse.Namespace) -> int:
    from worker.audit import run_audit, save_result
    from worker.audit_repair import repair
    from worker.errors import ApiError

    try:
        audit = await run_audit(
            app, shop, examples=args.examples, apsis_read=getattr(args, "apsis_read", "auto")
        )
        repaired = await repair(app, shop, audit) if args.repair else {}
    except ApiError as exc:
        return fail(f"audit of {shop.domain} stopped: {exc}")
    await save_result(app, shop, audit, repaired)
    output = report_json(audit.report.to_json(), repaired)
    output["old_address"] = audit.report.old_address
    output["apsis_read"] = audit.apsis_read
    output["skipped"] = audit.skipped
    if args.json:
        print_json(output)
    else:
        print_report(shop.domain, output, args.repair)
    return 1 if audit.report.drift else 0


def report_json(report: dict[str, Any], repaired: dict[str, int]) -> dict[str, Any]:
    """The report with the contract's key names, and what a repair enqueued."""
    out: dict[str, Any] = {"customers": report["customers"]}
    for kind, name in _JSON_NAMES.items():
        out[name] = report[kind]
    out["examples"] = {_JSON_NAMES[k]: v for k, v in report["examples"].items() if v}
    if repaired:
        out["repair"] = repaired
    return out


def print_report(domain: str, output: dict[str, Any], repair: bool) -> None:
    drift = sum(output[name] for name in _JSON_NAMES.values())
    print(
        f"{domain}: {output['customers']} customers audited, {drift} difference(s)"
        f" (APSIS read through {output.get('apsis_read', 'profiles')})"
    )
    for name in _JSON_NAMES.values():
        print(f"  {name:<11} {output[name]}")
    if output.get("old_address"):
        print(f"  of which    {output['old_address']} old address(es) still opted in after an email change")
    if output.get("skipped"):
        print(f"  unreadable  {output['skipped']} (see the worker log)")
    for name, rows in output["examples"].items():
        print(f"{name}:")
        for row in rows:
            where = " ".join(str(row[k]) for k in ("section", "detail") if k in row)
            print(f"  customer {row['customer_id']}" + (f": {where}" if where else ""))
    if repair:
        done = output.get("repair", {})
        print(
            f"repair enqueued: {done.get('resync', 0)} re-sync(s), {done.get('delete', 0)} delete(s), "
            f"{done.get('remove', 0)} removal(s) of profiles outside the conditions; "
            "run the audit again once the worker has run them"
        )
