"""The consent report export: `POST /audience/profiles/reports/consents`, then a polled download.

    POST /audience/profiles/reports/consents   201 {poll_url}; 1 request per second per account (429)
    GET  {poll_url}                            404 until ready, then 200 streaming the CSV
                                               (`text/csv;charset=UTF-8;header=present`, gzip on
                                               `Accept-Encoding: gzip`); 410 once it expired (1 day)
                                               or for an unknown id; 60 downloads a minute (429)

Body (the reference's fields, plus the sandbox's assumptions in docs/APSIS.md):
`section_discriminator`, `keyspace_discriminator` (whose profile keys the report lists),
`topic_discriminators` (non-empty), and either `channel_discriminator` (one column, named after the
channel's address attribute) or `channels: [{field_name, channel_discriminator}]` (one column per
entry); optional `attribute_version_ids` (one column each, named by version id). `segments` are not
simulated: every profile of the keyspace with data in the section is a row.

Columns: `profile_key`, the channel columns (the profile's address on that channel when it has an
opt-in or confirmed opt-in to any of the topics on that channel, else blank), the attribute
columns. The snapshot is taken when the report becomes ready (`report_delay_s` after the request,
real time) and written to a temporary file, so a large report costs disk, not memory.
"""

from __future__ import annotations

import asyncio
import csv
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sandbox.apsis.account import Account
from sandbox.apsis.consents import OPTED_IN
from sandbox.apsis.definitions import CHANNELS, EMAIL_ATTRIBUTE, EMAIL_CHANNEL, MOBILE_ATTRIBUTE, SectionIndex
from sandbox.apsis.limits import SlidingWindow, retry_after_header
from sandbox.apsis.problems import ApiError

REPORT_TTL_S = 86_400.0  # "returns a poll URL that is valid for 1 day"
CONTENT_TYPE = "text/csv;charset=UTF-8;header=present"


@dataclass(slots=True)
class ReportSpec:
    section: str
    keyspace: str
    topics: tuple[str, ...]
    channels: tuple[tuple[str, str], ...]  # (column, channel)
    attributes: tuple[str, ...]


@dataclass(slots=True)
class Report:
    report_id: str
    spec: ReportSpec
    created_at: float  # account clock
    path: Path | None = None
    rows: int = 0
    task: asyncio.Task[None] | None = None


class ReportService:
    def __init__(self, account: Account) -> None:
        self.account = account
        self.report_delay_s = 0.2
        self.export_window = SlidingWindow(1, 1.0)  # "exports: 1 request per second"
        self.download_window = SlidingWindow(60, 60.0)
        self.reports: dict[str, Report] = {}
        self.directory = Path(tempfile.mkdtemp(prefix="apsis-sandbox-reports-"))
        self.requested = 0
        self.downloads = 0

    def request(self, body: Any, base_url: str) -> dict[str, Any]:
        now = self.account.clock()
        wait = self.export_window.hit(None, now)
        if wait:
            raise ApiError(
                429,
                "export request limit exceeded (1 per second)",
                headers={"Retry-After": retry_after_header(wait)},
            )
        spec = self._parse(body)
        report = Report(secrets.token_hex(12), spec, now)
        self.reports[report.report_id] = report
        report.task = asyncio.get_running_loop().create_task(self._build(report))
        self.requested += 1
        return {"poll_url": f"{base_url}/audience/profiles/reports/consents/{report.report_id}"}

    def ready(self, report_id: str) -> Report:
        """The report to download; ApiError 410 (gone or unknown), 404 (not yet), 429 (too many)."""
        now = self.account.clock()
        wait = self.download_window.hit(None, now)
        if wait:
            raise ApiError(
                429,
                "download limit exceeded (60 per minute)",
                headers={"Retry-After": retry_after_header(wait)},
            )
        report = self.reports.get(report_id)
        if report is None or now >= report.created_at + REPORT_TTL_S:
            raise ApiError(410, f"report {report_id} is no longer available or the id is invalid")
        if report.path is None:
            raise ApiError(404, f"report {report_id} is not ready yet")
        self.downloads += 1
        return report

    def _parse(self, body: Any) -> ReportSpec:
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        section = body.get("section_discriminator")
        index = self.account.sections.get(section) if isinstance(section, str) else None
        if index is None:
            raise ApiError(404, f"section {section} does not exist")
        keyspace = body.get("keyspace_discriminator")
        if not isinstance(keyspace, str) or keyspace not in self.account.keyspaces:
            raise ApiError(404, f"keyspace {keyspace} does not exist")
        topics = body.get("topic_discriminators")
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise ApiError(400, "topic_discriminators must be a non-empty list of topic discriminators")
        for topic in topics:
            if topic not in index.topics:
                raise ApiError(404, f"topic {topic} does not exist in section {section}")
        channels = _channels(body)
        attributes = body.get("attribute_version_ids") or []
        if not isinstance(attributes, list):
            raise ApiError(400, "attribute_version_ids must be a list")
        for version in attributes:
            if version not in index.attribute_versions:
                raise ApiError(400, f"attribute version {version} does not exist in section {section}")
        return ReportSpec(index.section.discriminator, keyspace, tuple(topics), channels, tuple(attributes))

    async def _build(self, report: Report) -> None:
        await asyncio.sleep(self.report_delay_s)
        spec, account = report.spec, self.account
        index = account.sections[spec.section]
        path = self.directory / f"{report.report_id}.csv"
        keys = [
            k for (ks, k), meta in account.profiles.items() if ks == spec.keyspace and spec.section in meta[2]
        ]
        handle = await asyncio.to_thread(path.open, "w", newline="", encoding="utf-8")
        with handle:
            writer = csv.writer(handle)
            writer.writerow(["profile_key", *(column for column, _ in spec.channels), *spec.attributes])
            for n, key in enumerate(keys, 1):
                writer.writerow(_row(account, index, spec, key))
                if n % 5000 == 0:
                    await asyncio.sleep(0)
        report.rows = len(keys)
        report.path = path

    def reset(self) -> None:
        for report in self.reports.values():
            if report.task is not None:
                report.task.cancel()
            if report.path is not None:
                report.path.unlink(missing_ok=True)
        self.reports.clear()
        self.export_window.reset()
        self.download_window.reset()

    def summary(self) -> dict[str, Any]:
        ready = sum(1 for r in self.reports.values() if r.path is not None)
        return {"requested": self.requested, "ready": ready, "downloads": self.downloads}


def _channels(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    single = body.get("channel_discriminator")
    many = body.get("channels")
    if many is None and isinstance(single, str):
        if single not in CHANNELS:
            raise ApiError(400, f"channel {single!r} does not exist")
        return ((EMAIL_ATTRIBUTE if single == EMAIL_CHANNEL else MOBILE_ATTRIBUTE, single),)
    if not isinstance(many, list) or not many:
        raise ApiError(400, "give channel_discriminator or channels: [{field_name, channel_discriminator}]")
    out: list[tuple[str, str]] = []
    for n, item in enumerate(many):
        name = item.get("field_name") if isinstance(item, dict) else None
        channel = item.get("channel_discriminator") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or channel not in CHANNELS:
            raise ApiError(
                400, f"channels[{n}] must be {{field_name, channel_discriminator}} of a known channel"
            )
        assert isinstance(channel, str)
        out.append((name, channel))
    return tuple(out)


def _row(account: Account, index: SectionIndex, spec: ReportSpec, key: str) -> list[str]:
    values = account.attributes.get((spec.keyspace, key, spec.section)) or {}
    consents = account.profile_consents(spec.keyspace, key, spec.section)
    row = [key]
    for _, channel in spec.channels:
        versions = index.email_versions if channel == EMAIL_CHANNEL else index.mobile_versions
        address = next((values[v] for v in reversed(versions) if isinstance(values.get(v), str)), "")
        consented = any(
            (record := consents.get((channel, topic))) is not None and record.type in OPTED_IN
            for topic in spec.topics
        )
        row.append(address if consented else "")
    row.extend(_cell(values.get(v)) for v in spec.attributes)
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_SERVICES: WeakKeyDictionary[Account, ReportService] = WeakKeyDictionary()


def reports_of(account: Account) -> ReportService:
    service = _SERVICES.get(account)
    if service is None:
        service = _SERVICES[account] = ReportService(account)
    return service
