"""How the import verification compares a consent report's row with a customer's expected state.

Pure: the state in its JSON form (`SyncState.to_dict`, as saved or as an import row holds it),
the report's row as its CSV gives it (`worker.apsis_reports`), and the reason they differ, if
they do. The I/O around it is `worker.fullsync.import_verify`'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from mappings.audit import same_value
from mappings.state import consent_of
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey

# A customer's expected state in its JSON form (`SyncState.to_dict`, as saved or as a row holds it).
Expected = Mapping[str, Any]
ADDRESS = "address"  # the report's channel column (the consented address, or blank)
# Report rows compared a chunk at a time: one HMGET and one MGET of the chunk's saved states. Redis
# serves nothing else while it answers an MGET: 500 states (about 750 KB) took 1.2 ms, 3.3 ms at
# worst, on a slow shared machine, and the webhooks' calls wait behind it.
CHUNK = 200


def in_files(held: Any, completed: set[int]) -> bool:
    """A section index entry ("3,7": the files holding the customer's rows) names a completed file."""
    text = held.decode() if isinstance(held, bytes) else str(held or "")
    return any(int(n) in completed for n in text.split(",") if n)


def differs(
    state: Expected, section: str, channel: str, topic: str, row: dict[str, str], attributes: list[str]
) -> str | None:
    """Why APSIS's row (`row`: the report's cells) differs from `state`, or None: the topic's
    consent (when the report is on one) and the `attributes` columns the state has a value for."""
    if topic:
        decision = consent_of(state, ConsentKey(section, channel, topic))
        opted_in = bool(row.get(ADDRESS))
        if decision == OPT_IN and not opted_in:
            return f"{channel} {topic}: not opted in"
        if decision == OPT_OUT and opted_in:
            return f"{channel} {topic}: still opted in"
    want = state.get("attributes", {}).get(section, {})
    for version in attributes:
        if version not in want:
            continue
        if not same_value(_reported(row.get(version) or None, want[version]), want[version]):
            return f"attribute {version} differs"
    return None


def _reported(cell: str | None, want: Any) -> Any:
    """A report's CSV cell in the JSON type of the value it is compared with: a boolean may come
    back as True / true, a number as 795.0 for 795."""
    if cell is None:
        return None
    if isinstance(want, bool):
        return cell.lower()
    if isinstance(want, int | float):
        try:
            return float(cell)
        except ValueError:
            return cell
    return cell


async def chunks(rows: AsyncIterator[dict[str, str]]) -> AsyncIterator[list[dict[str, str]]]:
    """The report's rows, `CHUNK` at a time (each chunk's states are read in one round trip)."""
    chunk: list[dict[str, str]] = []
    async for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["ADDRESS", "CHUNK", "Expected", "chunks", "differs", "in_files"]
