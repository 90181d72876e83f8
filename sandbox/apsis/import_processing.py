"""Applying an import file's rows to the account, with the per-profile endpoints' own code.

Each row goes through `Account.patch_attributes` and `Account.post_consent`, exactly what
`PATCH .../attributes` and `POST /v2/.../consents` call, so the import means what those routes
mean. On top, what the import adds:

- `update_existing_profiles = false`: a profile that exists keeps its attributes (consents of the
  row still apply, under their own rule below).
- `clear_existing_attributes = true`: an empty cell clears the attribute (`null`); false: an empty
  cell leaves it.
- A consent column holding a yes value (`true`, `1`, `yes`, `y`, case-insensitive) gives the
  mapping's consent type; anything else gives nothing. An opt-in with
  `resubscribe_if_opted_out = false` never overrides an existing opt-out. Already that type: unchanged.
- A row APSIS would refuse is skipped whole, with nothing written and no word through the API:
  no profile key, a value over `MAX_VALUE_CHARS`, a value that does not fit its attribute's type
  (integer, double, boolean, date), a malformed email or mobile attribute, a consent address
  (email or E.164 phone) that does not fit the consent's channel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sandbox.apsis.account import Account
from sandbox.apsis.consents import OPTED_IN
from sandbox.apsis.definitions import EMAIL_CHANNEL
from sandbox.apsis.import_spec import ImportSpec
from sandbox.apsis.problems import ApiError
from sandbox.apsis.values import is_email, is_mobile, value_fits

MAX_VALUE_CHARS = 1000  # not documented by APSIS: the sandbox's assumption (docs/APSIS.md)
YES = frozenset({"true", "1", "yes", "y"})
IMPORT_SOURCE = "Import"
IMPORT_REASON = "Imported through the API"


class RowOutcome:
    """What the rows of one import did (and, summed, of every import)."""

    def __init__(self) -> None:
        self.applied = 0
        self.skipped: Counter[str] = Counter()  # reason -> rows
        self.consents: Counter[str] = Counter()  # written | unchanged | kept_opt_out

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def add(self, other: RowOutcome) -> None:
        self.applied += other.applied
        self.skipped.update(other.skipped)
        self.consents.update(other.consents)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_applied": self.applied,
            "rows_skipped": self.skipped_total,
            "skipped_by_reason": dict(self.skipped),
            "consents": dict(self.consents),
        }


def apply_row(
    account: Account, section: str, spec: ImportSpec, row: Mapping[str, str], out: RowOutcome
) -> None:
    key = (row.get(spec.key_field) or "").strip()
    if not key:
        out.skipped["no profile key"] += 1
        return
    index = account.sections[section]
    body: dict[str, Any] = {}
    for column, version in spec.attributes:
        value = row.get(column) or ""
        if value == "":
            if spec.clear_existing_attributes:
                body[version] = None
            continue
        if len(value) > MAX_VALUE_CHARS:
            out.skipped["value too long"] += 1
            return
        converted = _convert(index.attribute_types.get(version, "string"), value)
        if converted is None:
            out.skipped["value does not fit the attribute type"] += 1
            return
        body[version] = converted
    consents: list[tuple[str, str, str, bool]] = []  # channel, topic, type, resubscribe
    for group in spec.consents:
        address = (row.get(group.address_field) or "").strip()
        for rule in group.rules:
            if (row.get(rule.field) or "").strip().lower() not in YES:
                continue
            fits = is_email(address) if rule.channel == EMAIL_CHANNEL else is_mobile(address)
            if not fits:
                out.skipped["malformed consent address"] += 1
                return
            consents.append((rule.channel, rule.topic, rule.type, rule.resubscribe_if_opted_out))
    exists = (spec.keyspace, key) in account.profiles
    if exists and not spec.update_existing_profiles:
        body = {}
    if body or not exists:
        try:
            account.patch_attributes(spec.keyspace, key, section, body)
        except ApiError as exc:  # a malformed email or mobile attribute, as the PATCH refuses it
            out.skipped[_reason(exc)] += 1
            return
    for channel, topic, kind, resubscribe in consents:
        before = account.profile_consents(spec.keyspace, key, section).get((channel, topic))
        if kind in OPTED_IN and before is not None and before.type == "opt-out" and not resubscribe:
            out.consents["kept_opt_out"] += 1
            continue
        consent = {
            "topic_discriminator": topic,
            "channel_discriminator": channel,
            "type": kind,
            "reason": IMPORT_REASON,
            "source": IMPORT_SOURCE,
        }
        try:
            account.post_consent(spec.keyspace, key, section, consent)
        except ApiError as exc:
            if exc.status != 409:
                raise
            out.consents["unchanged"] += 1
            continue
        out.consents["written"] += 1
    out.applied += 1


def _reason(exc: ApiError) -> str:
    detail = exc.detail
    if "com.apsis1.attributes.email" in detail:
        return "malformed email"
    if "com.apsis1.attributes.mobile" in detail:
        return "malformed phone"
    return "refused by the attribute write"


def _convert(kind: str, value: str) -> Any:
    """A CSV cell as the attribute's JSON value; None when it does not fit the type."""
    converted: Any = value
    if kind == "integer":
        try:
            converted = int(value)
        except ValueError:
            return None
    elif kind == "double":
        try:
            converted = float(value)
        except ValueError:
            return None
    elif kind == "boolean":
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            return None
        converted = lowered == "true"
    return converted if value_fits(kind, converted) else None
